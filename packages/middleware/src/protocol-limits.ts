/**
 * Protocol limits (PR.SS-1): what the MQTT specification allows, bounded so that it holds under
 * attack.
 *
 * - Topics (PUBLISH names, SUBSCRIBE filters, wills): at most `maxTopicLength` UTF-8 bytes and
 *   `maxTopicLevels` levels; no U+0000 [MQTT-1.5.3-2], no invalid UTF-8 (mqtt-packet decodes it to
 *   U+FFFD, which is therefore refused too) and, unless allowed, no C0/C1 control characters. A bad
 *   PUBLISH closes the connection (3.1.1 has no negative acknowledgement), a bad filter gets SUBACK
 *   0x80.
 * - Client ids: at most `clientId.maxLength` characters, no control characters, and the whole id
 *   matching `clientId.pattern` when given (CONNACK 2 otherwise).
 * - Subscriptions per client: a SUBSCRIBE beyond `maxSubscriptionsPerClient` gets SUBACK 0x80.
 * - QoS 1/2 messages kept per client with a persistent session (`maxQueuedPerClient`): counted in a
 *   wrapper around the Aedes persistence (`limitQueues`); beyond it, new messages for an offline
 *   client are dropped and an online one (not acknowledging) is disconnected as a slow consumer.
 * - In flight and slow consumers, enforced by the core once bound (`bindCore`): inbound QoS 2
 *   awaiting PUBREL (`maxInflightInbound`), bytes waiting to be written (`slowConsumer.maxBacklog`),
 *   QoS 0 dropped for a full socket (`slowConsumer.dropQoS0`), and `slowConsumer.drainTimeout`.
 */
import type { BrokerContext, ClientInfo, ConnectionLimits, ConnectPacketInfo, Middleware, PublishPacket, Subscription, Verdict } from '@bastion/core';
import { BastionError, deny, hasSubscription } from '@bastion/core';

export interface ProtocolLimitsOptions {
  /** UTF-8 bytes (default 4096). */
  maxTopicLength?: number;
  /** Default 64. */
  maxTopicLevels?: number;
  /** Refuse U+0001–U+001F and U+007F–U+009F in topics (default true). */
  refuseControlCharacters?: boolean;
  /** Default 1000. */
  maxSubscriptionsPerClient?: number;
  /** QoS 1/2 messages kept per client with a persistent session (default 10000). */
  maxQueuedPerClient?: number;
  /** Inbound QoS 2 awaiting PUBREL per client (default 1000). */
  maxInflightInbound?: number;
  clientId?: { maxLength?: number; pattern?: string | RegExp | undefined };
  slowConsumer?: { maxBacklog?: number; dropQoS0?: boolean; drainTimeout?: number };
}

export interface ProtocolLimitSettings {
  maxTopicLength: number;
  maxTopicLevels: number;
  refuseControlCharacters: boolean;
  maxSubscriptionsPerClient: number;
  maxQueuedPerClient: number;
  maxInflightInbound: number;
  clientId: { maxLength: number; pattern: RegExp | undefined };
  slowConsumer: { maxBacklog: number; dropQoS0: boolean; drainTimeout: number };
}

/** The part of an Aedes persistence whose queues are counted (every Aedes persistence has it). */
export interface QueuePersistence {
  outgoingEnqueue(sub: { clientId: string }, packet: unknown): Promise<unknown> | unknown;
  outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: unknown): Promise<unknown> | unknown;
  outgoingClearMessageId(client: { id: string }, packet: unknown): Promise<unknown> | unknown;
}

export interface ProtocolLimits extends Middleware {
  readonly settings: Readonly<ProtocolLimitSettings>;
  /**
   * Change limits while running; keys given replace (with `replace`, keys not given return to their
   * defaults, a client-id pattern included). Throws BASTION_ERR_PROTOCOL_LIMITS on a bad value,
   * changing nothing. Open connections meet the new topic, subscription-count, queue, in-flight and
   * slow-consumer limits from their next packet (subscriptions already held are kept); client-id
   * rules are checked at CONNECT, so they apply to new connections.
   */
  update(options: ProtocolLimitsOptions, mode?: { replace?: boolean }): Readonly<ProtocolLimitSettings>;
  /** Hand the in-flight and slow-consumer limits to the core (now and on every update). */
  bindCore(core: { setConnectionLimits(limits: ConnectionLimits): void }): void;
  /** Count QoS 1/2 queues in this persistence (wrapped in place) and enforce `maxQueuedPerClient`. */
  limitQueues(persistence: QueuePersistence): void;
  /** Messages kept for a client according to the count (undefined when none). */
  queued(clientId: string): number | undefined;
}

const TOPIC_TOO_LONG = deny('topic-invalid', 'topic longer than the limit', 'disconnect');
const TOPIC_TOO_DEEP = deny('topic-invalid', 'topic has more levels than the limit', 'disconnect');
const TOPIC_BAD_CHAR = deny('topic-invalid', 'topic has invalid UTF-8 or a control character', 'disconnect');
const FILTER_TOO_LONG = deny('topic-invalid', 'topic filter longer than the limit');
const FILTER_TOO_DEEP = deny('topic-invalid', 'topic filter has more levels than the limit');
const FILTER_BAD_CHAR = deny('topic-invalid', 'topic filter has invalid UTF-8 or a control character');
const TOO_MANY_SUBSCRIPTIONS = deny('quota-exceeded', 'too many subscriptions for one client');
const ID_TOO_LONG = deny('client-id-rejected', 'client id longer than the limit');
const ID_BAD_CHAR = deny('client-id-rejected', 'client id has invalid UTF-8 or a control character');
const ID_NO_MATCH = deny('client-id-rejected', 'client id does not match the required pattern');

const enum Problem {
  None = 0,
  TooLong = 1,
  TooDeep = 2,
  BadChar = 3,
}

/** One pass over the characters, no allocation. */
function topicProblem(topic: string, maxBytes: number, maxLevels: number, refuseControls: boolean): Problem {
  const n = topic.length;
  // a UTF-16 unit is at most 3 UTF-8 bytes: measure only when it could be too long
  if (n > maxBytes || (n * 3 > maxBytes && Buffer.byteLength(topic, 'utf8') > maxBytes)) return Problem.TooLong;
  let levels = 1;
  for (let i = 0; i < n; i++) {
    const c = topic.charCodeAt(i);
    if (c === 47) {
      if (++levels > maxLevels) return Problem.TooDeep;
    } else if (c < 32 || (c >= 0x7f && c <= 0x9f)) {
      if (c === 0 || refuseControls) return Problem.BadChar;
    } else if (c === 0xfffd) {
      return Problem.BadChar;
    }
  }
  return Problem.None;
}

function badIdChar(id: string): boolean {
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c < 32 || (c >= 0x7f && c <= 0x9f) || c === 0xfffd) return true;
  }
  return false;
}

function fail(message: string): never {
  throw new BastionError('BASTION_ERR_PROTOCOL_LIMITS', message);
}

function normalize(o: ProtocolLimitsOptions, base?: ProtocolLimitSettings): ProtocolLimitSettings {
  const int = (k: string, v: number | undefined, fallback: number, min = 1): number => {
    if (v === undefined) return fallback;
    if (!Number.isInteger(v) || v < min) fail(`protocol limit ${k} must be an integer of at least ${min}, got ${String(v)}`);
    return v;
  };
  let pattern = base?.clientId.pattern;
  const p = o.clientId?.pattern;
  if (p !== undefined) {
    try {
      pattern = typeof p === 'string' ? new RegExp(p, 'u') : p;
    } catch (err) {
      fail(`clientId.pattern is not a valid regular expression: ${(err as Error).message}`);
    }
  }
  const sc = o.slowConsumer;
  const b = base?.slowConsumer;
  return {
    maxTopicLength: int('maxTopicLength', o.maxTopicLength, base?.maxTopicLength ?? 4096),
    maxTopicLevels: int('maxTopicLevels', o.maxTopicLevels, base?.maxTopicLevels ?? 64),
    refuseControlCharacters: o.refuseControlCharacters ?? base?.refuseControlCharacters ?? true,
    maxSubscriptionsPerClient: int('maxSubscriptionsPerClient', o.maxSubscriptionsPerClient, base?.maxSubscriptionsPerClient ?? 1000),
    maxQueuedPerClient: int('maxQueuedPerClient', o.maxQueuedPerClient, base?.maxQueuedPerClient ?? 10_000),
    maxInflightInbound: int('maxInflightInbound', o.maxInflightInbound, base?.maxInflightInbound ?? 1000),
    clientId: { maxLength: int('clientId.maxLength', o.clientId?.maxLength, base?.clientId.maxLength ?? 256), pattern },
    slowConsumer: {
      maxBacklog: int('slowConsumer.maxBacklog', sc?.maxBacklog, b?.maxBacklog ?? 8 * 2 ** 20, 0),
      dropQoS0: sc?.dropQoS0 ?? b?.dropQoS0 ?? true,
      drainTimeout: int('slowConsumer.drainTimeout', sc?.drainTimeout, b?.drainTimeout ?? 60_000),
    },
  };
}

export function protocolLimits(options: ProtocolLimitsOptions = {}): ProtocolLimits {
  let s = normalize(options);
  let ctx: BrokerContext | undefined;
  let core: { setConnectionLimits(limits: ConnectionLimits): void } | undefined;
  /** Topic filters approved per client, with when: pruned against the live subscriptions when full. */
  const approved = new WeakMap<ClientInfo, Map<string, number>>();
  /** QoS 1/2 messages kept per client id (persistent sessions), as counted by limitQueues. */
  const queues = new Map<string, number>();
  /** One queue event per client id and second at most. */
  const queueEvents = new Map<string, { at: number; suppressed: number }>();

  const coreLimits = (): ConnectionLimits => ({
    maxOutboundBacklog: s.slowConsumer.maxBacklog,
    dropQoS0WhenBacklogged: s.slowConsumer.dropQoS0,
    drainTimeout: s.slowConsumer.drainTimeout,
    maxInflightInbound: s.maxInflightInbound,
  });

  const queueFull = (clientId: string) => {
    const now = Date.now();
    const live = ctx?.client(clientId);
    // online and not acknowledging: a slow consumer; offline: the message is not kept for it
    if (live) ctx?.disconnect(clientId, 'slow-consumer', `${s.maxQueuedPerClient} QoS 1/2 messages not acknowledged`);
    const last = queueEvents.get(clientId);
    if (last !== undefined && now - last.at < 1000) {
      last.suppressed++;
      return;
    }
    if (queueEvents.size > 10_000) queueEvents.clear();
    queueEvents.set(clientId, { at: now, suppressed: 0 });
    ctx?.events.emit({
      type: 'limit.exceeded',
      time: now,
      control: 'PR.SS-1',
      source: 'protocol-limits',
      clientId,
      username: live?.username,
      remoteAddress: live?.remoteAddress,
      listener: live?.listener,
      reason: 'quota-exceeded',
      message: live ? 'QoS 1/2 queue full: slow consumer disconnected' : 'QoS 1/2 queue full: message not kept for the offline client',
      detail: { limit: 'maxQueuedPerClient', max: s.maxQueuedPerClient, consequence: live ? 'disconnect' : 'drop', suppressed: last?.suppressed ?? 0 },
    });
  };

  const admit = (clientId: string): boolean => {
    const n = queues.get(clientId) ?? 0;
    if (n >= s.maxQueuedPerClient) {
      queueFull(clientId);
      return false;
    }
    queues.set(clientId, n + 1);
    return true;
  };

  const mw: ProtocolLimits = {
    name: 'protocol-limits',
    controls: ['PR.SS-1'],

    get settings() {
      return s;
    },

    setup(context) {
      ctx = context;
    },

    update(next, mode) {
      s = normalize(next, mode?.replace ? undefined : s);
      core?.setConnectionLimits(coreLimits());
      ctx?.logger.info({ protocolLimits: { ...s, clientId: { maxLength: s.clientId.maxLength, pattern: s.clientId.pattern?.source } } }, 'protocol limits changed');
      return s;
    },

    bindCore(c) {
      core = c;
      c.setConnectionLimits(coreLimits());
    },

    limitQueues(p) {
      if (typeof p?.outgoingEnqueue !== 'function' || typeof p.outgoingEnqueueCombi !== 'function' || typeof p.outgoingClearMessageId !== 'function') {
        ctx?.logger.warn('protocol-limits: this persistence has no outgoing queue methods; maxQueuedPerClient is not enforced');
        return;
      }
      const enqueue = p.outgoingEnqueue.bind(p);
      const combi = p.outgoingEnqueueCombi.bind(p);
      const clear = p.outgoingClearMessageId.bind(p);
      p.outgoingEnqueue = (sub, packet) => (admit(sub.clientId) ? enqueue(sub, packet) : Promise.resolve());
      p.outgoingEnqueueCombi = (subs, packet) => {
        let kept: Array<{ clientId: string }> | undefined;
        for (let i = 0; i < subs.length; i++) {
          const sub = subs[i] as { clientId: string };
          if (admit(sub.clientId)) kept?.push(sub);
          else if (kept === undefined) kept = subs.slice(0, i);
        }
        return combi(kept ?? subs, packet);
      };
      p.outgoingClearMessageId = async (client, packet) => {
        const cleared = await clear(client, packet);
        if (cleared) {
          const n = (queues.get(client.id) ?? 1) - 1;
          if (n <= 0) queues.delete(client.id);
          else queues.set(client.id, n);
        }
        return cleared;
      };
    },

    queued(clientId) {
      return queues.get(clientId);
    },

    onConnect(_client: ClientInfo, packet: ConnectPacketInfo): Verdict {
      const id = packet.clientId;
      if (id === '') return undefined; // the broker assigns one
      if (id.length > s.clientId.maxLength) return ID_TOO_LONG;
      if (badIdChar(id)) return ID_BAD_CHAR;
      const pattern = s.clientId.pattern;
      if (pattern !== undefined) {
        pattern.lastIndex = 0;
        const m = pattern.exec(id);
        if (m === null || m.index !== 0 || m[0].length !== id.length) return ID_NO_MATCH;
      }
      return undefined;
    },

    authorizePublish(_client: ClientInfo, packet: PublishPacket): Verdict {
      switch (topicProblem(packet.topic, s.maxTopicLength, s.maxTopicLevels, s.refuseControlCharacters)) {
        case Problem.None:
          return undefined;
        case Problem.TooLong:
          return TOPIC_TOO_LONG;
        case Problem.TooDeep:
          return TOPIC_TOO_DEEP;
        default:
          return TOPIC_BAD_CHAR;
      }
    },

    authorizeSubscribe(client: ClientInfo, sub: Subscription): Verdict {
      switch (topicProblem(sub.topic, s.maxTopicLength, s.maxTopicLevels, s.refuseControlCharacters)) {
        case Problem.None:
          break;
        case Problem.TooLong:
          return FILTER_TOO_LONG;
        case Problem.TooDeep:
          return FILTER_TOO_DEEP;
        default:
          return FILTER_BAD_CHAR;
      }
      const now = Date.now();
      let mine = approved.get(client);
      if (mine === undefined) {
        mine = new Map();
        approved.set(client, mine);
      }
      if (!mine.has(sub.topic) && mine.size >= s.maxSubscriptionsPerClient) {
        // forget filters that were unsubscribed (or refused later in the chain); the grace second
        // spares approvals of this very SUBSCRIBE that are not in place yet
        for (const [topic, at] of mine) if (now - at > 1000 && !hasSubscription(client, topic)) mine.delete(topic);
        if (mine.size >= s.maxSubscriptionsPerClient) return TOO_MANY_SUBSCRIPTIONS;
      }
      mine.set(sub.topic, now);
      return undefined;
    },
  };
  return mw;
}
