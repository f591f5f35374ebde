/**
 * Rate limits (PR.SS-5): budgets per remote address, per connection, per user, per listener and in
 * total, each with its consequence (drop, delay, refuse, disconnect after strikes, ban).
 *
 * Two kinds of counters, chosen by where they are consulted:
 * - PUBLISH and SUBSCRIBE budgets of a connection, a listener and the process are local token
 *   buckets (GCRA, one number each, state on a WeakMap keyed by the ClientInfo): every PUBLISH is
 *   checked synchronously with no allocation while the client is within budget;
 * - budgets that several broker processes must share (new connections per address, per listener,
 *   in total; per-user budgets) live in rate-limiter-flexible's memory or Redis store: consulted per
 *   new connection (a Promise is fine there) or, for per-user budgets, in batches (see shared.ts).
 *
 * Exceeding a budget is a `rate.limited` security event (at most one per second per client or
 * address and limit, with the count held back in between); the core emits none per packet.
 */
import type {
  BrokerContext,
  ClientInfo,
  ConnectionInfo,
  ConnectionLimits,
  Denial,
  Middleware,
  PublishPacket,
  Subscription,
  Verdict,
} from '@bastion/core';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { newBucket, take, waitFor } from './bucket.js';
import type { Bucket } from './bucket.js';
import { normalizeRateLimits } from './options.js';
import type { Consequence, PublishBudget, RateLimitOptions, RateLimitSettings, RateSpec } from './options.js';
import { BatchedBudget, openStore, overBudget } from './shared.js';
import type { SharedStore } from './shared.js';

export { normalizeRateLimits, CONSEQUENCES } from './options.js';
export type { Consequence, RateSpec, RateSpecInput, RateLimitOptions, RateLimitSettings, RateStoreOptions, PublishBudget, PublishBudgetInput } from './options.js';
export { newBucket, take as takeFromBucket, waitFor as bucketWait } from './bucket.js';
export type { Bucket } from './bucket.js';

/** What the `ban` consequence uses: the `bans` middleware fits (`controls.get('bans')`). */
export interface Banner {
  ban(target: { ip: string }, spec: { duration?: number; reason?: string; actor?: string }): unknown;
}

/** The part of the core broker that enforces open-connection caps (BastionBroker fits). */
export interface ConnectionCaps {
  setConnectionLimits(limits: ConnectionLimits): void;
}

export interface RateLimit extends Middleware {
  /** The limits in force (normalized). */
  readonly settings: RateLimitSettings;
  /** 'memory' or 'redis': where shared budgets are counted. */
  readonly store: 'memory' | 'redis';
  /**
   * Change limits while running, no restart: each top-level key given (connections, concurrent,
   * publish, subscribe) replaces that part. Throws BASTION_ERR_RATE_LIMIT on a bad setting (and
   * keeps the old limits).
   */
  update(options: Omit<RateLimitOptions, 'store' | 'flushInterval'>): RateLimitSettings;
  /** Where `ban` bans (the `bans` middleware); without one, a small ban list of its own is used. */
  setBanner(banner: Banner | undefined): void;
  /** Hand the `concurrent` caps to the core (now and on every update). */
  bindCore(core: ConnectionCaps): void;
  /** Resolves once the store is usable (Redis connected). */
  ready(): Promise<void>;
}

/** Per-connection state, made on its first PUBLISH or SUBSCRIBE. */
interface ClientState {
  readonly msg: Bucket;
  readonly bytes: Bucket;
  readonly sub: Bucket;
  strikes: number;
  strikeAt: number;
  /** Throttle of this client's rate.limited events. */
  eventAt: number;
  suppressed: number;
}

interface ListenerBuckets {
  readonly msg: Bucket;
  readonly bytes: Bucket;
}

const DROP: Denial = Object.freeze({ denied: true as const, reason: 'rate-limited' as const, message: 'rate limit exceeded: QoS 0 message dropped', action: 'drop' as const, silent: true });
const REFUSE: Denial = Object.freeze({ denied: true as const, reason: 'rate-limited' as const, message: 'rate limit exceeded', silent: true });
const REFUSE_CONNECTION: Denial = Object.freeze({ denied: true as const, reason: 'connection-rate-exceeded' as const, message: 'too many new connections', silent: true });
const BANNED: Denial = Object.freeze({ denied: true as const, reason: 'banned' as const, message: 'the address is banned for exceeding rate limits' });
const NO_BUDGET: PublishBudget = Object.freeze({ messages: undefined, bytes: undefined });

type LimitName =
  | 'publish.perClient.messages'
  | 'publish.perClient.bytes'
  | 'publish.perListener.messages'
  | 'publish.perListener.bytes'
  | 'publish.total.messages'
  | 'publish.total.bytes'
  | 'publish.perUser.messages'
  | 'publish.perUser.bytes'
  | 'subscribe.perClient'
  | 'subscribe.perUser'
  | 'connections.perIp'
  | 'connections.perListener'
  | 'connections.total';

interface Shared {
  connections: Array<{ name: LimitName; spec: RateSpec; limiter: RateLimiterAbstract; key: (c: ConnectionInfo) => string }>;
  userMessages: BatchedBudget | undefined;
  userBytes: BatchedBudget | undefined;
  userSubscribe: BatchedBudget | undefined;
}

/** Count a PUBLISH in every budget it belongs to (module scope: no closure on the hot path). */
function commitPublish(
  st: ClientState,
  lb: ListenerBuckets | undefined,
  pc: PublishBudget,
  pl: PublishBudget,
  pt: PublishBudget,
  tb: ListenerBuckets,
  um: BatchedBudget | undefined,
  ub: BatchedBudget | undefined,
  user: string | undefined,
  size: number,
  now: number,
): void {
  if (pc.messages !== undefined) take(st.msg, pc.messages, 1, now);
  if (pc.bytes !== undefined) take(st.bytes, pc.bytes, size, now);
  if (lb !== undefined) {
    if (pl.messages !== undefined) take(lb.msg, pl.messages, 1, now);
    if (pl.bytes !== undefined) take(lb.bytes, pl.bytes, size, now);
  }
  if (pt.messages !== undefined) take(tb.msg, pt.messages, 1, now);
  if (pt.bytes !== undefined) take(tb.bytes, pt.bytes, size, now);
  if (user !== undefined) {
    um?.add(user, 1);
    ub?.add(user, size);
  }
}

const sleep = (ms: number): Promise<undefined> => new Promise((resolve) => setTimeout(resolve, ms, undefined));

export function rateLimit(options: RateLimitOptions = {}): RateLimit {
  let input: RateLimitOptions = { ...options };
  let s = normalizeRateLimits(input);
  const flushInterval = options.flushInterval ?? 100;
  let ctx: BrokerContext | undefined;
  let store: SharedStore | undefined;
  let shared: Shared = { connections: [], userMessages: undefined, userBytes: undefined, userSubscribe: undefined };
  let flusher: NodeJS.Timeout | undefined;
  let banner: Banner | undefined;
  let core: ConnectionCaps | undefined;
  const clients = new WeakMap<ClientInfo, ClientState>();
  let listeners = new Map<string, ListenerBuckets>();
  let hasListenerBudgets = Object.keys(s.publish.perListener).length > 0;
  const total: ListenerBuckets = { msg: newBucket(), bytes: newBucket() };
  /** Our own bans when no `bans` middleware is given: address → until (epoch ms). */
  const ownBans = new Map<string, number>();
  /** Strikes of addresses against connection budgets: address → { n, at }. */
  const addressStrikes = new Map<string, { n: number; at: number }>();
  /** Throttle of address-keyed events: `${limit}\0${ip}` → { at, suppressed }. */
  const addressEvents = new Map<string, { at: number; suppressed: number }>();

  const stateOf = (client: ClientInfo): ClientState => {
    let st = clients.get(client);
    if (st === undefined) {
      st = { msg: newBucket(), bytes: newBucket(), sub: newBucket(), strikes: 0, strikeAt: 0, eventAt: 0, suppressed: 0 };
      clients.set(client, st);
    }
    return st;
  };

  const listenerBuckets = (name: string): ListenerBuckets => {
    let b = listeners.get(name);
    if (b === undefined) {
      b = { msg: newBucket(), bytes: newBucket() };
      listeners.set(name, b);
    }
    return b;
  };

  const buildShared = (): Shared => {
    const st = store as SharedStore;
    const onError = (err: unknown) => ctx?.logger.warn({ err }, 'rate-limit store failed; the batch was not counted');
    const c = s.connections;
    const connections: Shared['connections'] = [];
    if (c.perIp) connections.push({ name: 'connections.perIp', spec: c.perIp, limiter: st.limiter('conn:ip', c.perIp), key: (x) => x.remoteAddress });
    for (const [name, spec] of Object.entries(c.perListener)) {
      connections.push({ name: 'connections.perListener', spec, limiter: st.limiter(`conn:listener:${name}`, spec), key: (x) => (x.listener === name ? name : '') });
    }
    if (c.total) connections.push({ name: 'connections.total', spec: c.total, limiter: st.limiter('conn:total', c.total), key: () => 'all' });
    const u = s.publish.perUser;
    return {
      connections,
      userMessages: u.messages && new BatchedBudget(st.limiter('pub:user:msg', u.messages), u.messages, onError),
      userBytes: u.bytes && new BatchedBudget(st.limiter('pub:user:bytes', u.bytes), u.bytes, onError),
      userSubscribe: s.subscribe.perUser && new BatchedBudget(st.limiter('sub:user', s.subscribe.perUser), s.subscribe.perUser, onError),
    };
  };

  const concurrentLimits = (): ConnectionLimits => ({ perIp: s.concurrent.perIp ?? 0, total: s.concurrent.total ?? 0, perListener: s.concurrent.perListener });

  // ---- events ---------------------------------------------------------------------------------

  const emit = (limit: LimitName, consequence: Consequence | 'drop' | 'delay' | 'refuse', who: Partial<ClientInfo>, suppressed: number, extra: { topic?: string; wait?: number; strikes?: number; spec: RateSpec }) => {
    if (!ctx) return;
    ctx.events.emit({
      type: 'rate.limited',
      time: Date.now(),
      control: 'PR.SS-5',
      source: 'rate-limit',
      clientId: who.id || undefined,
      username: who.username,
      remoteAddress: who.remoteAddress,
      listener: who.listener,
      reason: limit.startsWith('connections.') ? 'connection-rate-exceeded' : 'rate-limited',
      message: `${limit} exceeded (${extra.spec.rate} per ${extra.spec.per} ms): ${consequence}`,
      topic: extra.topic,
      detail: { limit, consequence, rate: extra.spec.rate, per: extra.spec.per, wait: extra.wait, strikes: extra.strikes, suppressed },
    });
  };

  /** One event per client and second at most; the ones held back are counted into the next. */
  const clientEvent = (client: ClientInfo, st: ClientState, limit: LimitName, consequence: Consequence, now: number, extra: { topic?: string; wait?: number; spec: RateSpec }) => {
    // disconnect and ban are decisions worth an event each; drop, delay and refuse are throttled
    if (now - st.eventAt < 1000 && consequence !== 'disconnect' && consequence !== 'ban') {
      st.suppressed++;
      return;
    }
    const held = st.suppressed;
    st.eventAt = now;
    st.suppressed = 0;
    emit(limit, consequence, client, held, { ...extra, strikes: st.strikes });
  };

  const addressEvent = (conn: ConnectionInfo, limit: LimitName, consequence: Consequence, spec: RateSpec, now: number, strikes: number) => {
    const key = `${limit}\u0000${conn.remoteAddress}`;
    const last = addressEvents.get(key);
    if (last !== undefined && now - last.at < 1000 && consequence !== 'ban') {
      last.suppressed++;
      return;
    }
    if (addressEvents.size > 10_000) addressEvents.clear();
    addressEvents.set(key, { at: now, suppressed: 0 });
    emit(limit, consequence, conn, last?.suppressed ?? 0, { spec, strikes });
  };

  // ---- consequences ---------------------------------------------------------------------------

  const banAddress = (ip: string, spec: RateSpec, limit: LimitName) => {
    const reason = `rate limit ${limit} exceeded ${spec.strikes} times`;
    if (banner) {
      try {
        banner.ban({ ip }, { duration: spec.banFor, reason, actor: 'rate-limit' });
        return;
      } catch (err) {
        ctx?.logger.warn({ err }, 'rate-limit: ban refused; using the local ban list');
      }
    }
    if (ownBans.size > 100_000) ownBans.clear();
    ownBans.set(ip, Date.now() + spec.banFor);
    ctx?.disconnectWhere((c) => c.remoteAddress === ip, 'rate-limited', reason);
  };

  /** Strike a client; true when `spec.strikes` is reached (strikes reset after a clean `per`). */
  const strike = (st: ClientState, spec: RateSpec, now: number): boolean => {
    if (now - st.strikeAt > spec.per) st.strikes = 0;
    st.strikeAt = now;
    st.strikes++;
    return st.strikes >= spec.strikes;
  };

  /**
   * Over budget: `wait` ms until it would fit. Returns the verdict; `commit` counts the packet as
   * passed (for delay, where it is let through later).
   */
  const overPublish = (client: ClientInfo, st: ClientState, packet: PublishPacket, spec: RateSpec, limit: LimitName, wait: number, now: number, commit: () => void): Verdict | Promise<Verdict> => {
    const qos0 = packet.qos === 0;
    let c = spec.consequence;
    if (c === 'disconnect' || c === 'ban') {
      if (strike(st, spec, now)) {
        clientEvent(client, st, limit, c, now, { topic: packet.topic, spec });
        if (c === 'ban') banAddress(client.remoteAddress, spec, limit);
        else ctx?.disconnect(client.id, 'rate-limited', `rate limit ${limit} exceeded ${st.strikes} times`);
        return DROP;
      }
      c = qos0 ? 'drop' : 'delay';
    }
    // QoS 1/2 are never dropped (the sender was promised delivery): they wait their turn
    if (qos0 && (c === 'drop' || wait > spec.maxDelay)) {
      clientEvent(client, st, limit, 'drop', now, { topic: packet.topic, spec });
      return DROP;
    }
    commit();
    clientEvent(client, st, limit, 'delay', now, { topic: packet.topic, wait: Math.round(wait), spec });
    return sleep(wait);
  };

  const mw: RateLimit = {
    name: 'rate-limit',
    controls: ['PR.SS-5'],

    get settings() {
      return s;
    },

    get store() {
      return store?.kind ?? (input.store?.type === 'redis' ? 'redis' : 'memory');
    },

    async setup(context) {
      ctx = context;
      store = openStore(input.store, context.logger);
      shared = buildShared();
      flusher = setInterval(() => {
        shared.userMessages?.flushAll();
        shared.userBytes?.flushAll();
        shared.userSubscribe?.flushAll();
      }, flushInterval);
      flusher.unref();
    },

    ready() {
      return store ? store.ready() : Promise.resolve();
    },

    setBanner(b) {
      banner = b;
    },

    bindCore(c) {
      core = c;
      c.setConnectionLimits(concurrentLimits());
    },

    update(next) {
      const merged: RateLimitOptions = { ...input, ...next };
      const settings = normalizeRateLimits(merged); // throws before anything changes
      input = merged;
      s = settings;
      if (store) shared = buildShared();
      listeners = new Map();
      hasListenerBudgets = Object.keys(s.publish.perListener).length > 0;
      core?.setConnectionLimits(concurrentLimits());
      ctx?.logger.info({ rateLimits: s }, 'rate limits changed');
      return s;
    },

    onConnection(conn: ConnectionInfo): Verdict | Promise<Verdict> {
      if (ownBans.size > 0) {
        const until = ownBans.get(conn.remoteAddress);
        if (until !== undefined) {
          if (until > Date.now()) return BANNED;
          ownBans.delete(conn.remoteAddress);
        }
      }
      const checks = shared.connections;
      if (checks.length === 0) return undefined;
      return (async (): Promise<Verdict> => {
        for (const check of checks) {
          const key = check.key(conn);
          if (key === '') continue;
          try {
            await check.limiter.consume(key, 1);
          } catch (err) {
            if (!overBudget(err)) {
              ctx?.logger.warn({ err }, 'rate-limit store failed; connection allowed');
              continue;
            }
            const now = Date.now();
            let n = 0;
            if (check.spec.consequence === 'ban') {
              const prev = addressStrikes.get(conn.remoteAddress);
              n = prev !== undefined && now - prev.at <= check.spec.per ? prev.n + 1 : 1;
              if (addressStrikes.size > 100_000) addressStrikes.clear();
              addressStrikes.set(conn.remoteAddress, { n, at: now });
              if (n >= check.spec.strikes) {
                addressStrikes.delete(conn.remoteAddress);
                addressEvent(conn, check.name, 'ban', check.spec, now, n);
                banAddress(conn.remoteAddress, check.spec, check.name);
                return REFUSE_CONNECTION;
              }
            }
            addressEvent(conn, check.name, 'refuse', check.spec, now, n);
            return REFUSE_CONNECTION;
          }
        }
        return undefined;
      })();
    },

    authorizePublish(client: ClientInfo, packet: PublishPacket): Verdict | Promise<Verdict> {
      const pub = s.publish;
      const pc = pub.perClient;
      const pl = hasListenerBudgets ? (pub.perListener[client.listener] ?? NO_BUDGET) : NO_BUDGET;
      const pt = pub.total;
      const user = client.username;
      const um = user === undefined ? undefined : shared.userMessages;
      const ub = user === undefined ? undefined : shared.userBytes;
      if (pc.messages === undefined && pc.bytes === undefined && pl === NO_BUDGET && pt.messages === undefined && pt.bytes === undefined && um === undefined && ub === undefined) return undefined;

      const now = Date.now();
      const st = stateOf(client);
      const size = packet.payload.length;
      const lb = pl === NO_BUDGET ? undefined : listenerBuckets(client.listener);
      // Pass 1: the longest wait, and the limit that imposes it (the first one on a tie).
      let wait = 0;
      let spec: RateSpec | undefined;
      let limit: LimitName = 'publish.perClient.messages';
      let w = 0;
      if (pc.messages !== undefined) {
        w = waitFor(st.msg, pc.messages, 1, now);
        if (w > wait) {
          wait = w;
          spec = pc.messages;
          limit = 'publish.perClient.messages';
        }
      }
      if (pc.bytes !== undefined) {
        w = waitFor(st.bytes, pc.bytes, size, now);
        if (w > wait) {
          wait = w;
          spec = pc.bytes;
          limit = 'publish.perClient.bytes';
        }
      }
      if (lb !== undefined && pl.messages !== undefined) {
        w = waitFor(lb.msg, pl.messages, 1, now);
        if (w > wait) {
          wait = w;
          spec = pl.messages;
          limit = 'publish.perListener.messages';
        }
      }
      if (lb !== undefined && pl.bytes !== undefined) {
        w = waitFor(lb.bytes, pl.bytes, size, now);
        if (w > wait) {
          wait = w;
          spec = pl.bytes;
          limit = 'publish.perListener.bytes';
        }
      }
      if (pt.messages !== undefined) {
        w = waitFor(total.msg, pt.messages, 1, now);
        if (w > wait) {
          wait = w;
          spec = pt.messages;
          limit = 'publish.total.messages';
        }
      }
      if (pt.bytes !== undefined) {
        w = waitFor(total.bytes, pt.bytes, size, now);
        if (w > wait) {
          wait = w;
          spec = pt.bytes;
          limit = 'publish.total.bytes';
        }
      }
      if (um !== undefined) {
        w = um.wait(user as string, now);
        if (w > wait) {
          wait = w;
          spec = pub.perUser.messages;
          limit = 'publish.perUser.messages';
        }
      }
      if (ub !== undefined) {
        w = ub.wait(user as string, now);
        if (w > wait) {
          wait = w;
          spec = pub.perUser.bytes;
          limit = 'publish.perUser.bytes';
        }
      }
      // Pass 2: count it everywhere — now, or (delay) as if it passed at the end of its wait.
      if (spec === undefined) {
        commitPublish(st, lb, pc, pl, pt, total, um, ub, user, size, now);
        return undefined;
      }
      return overPublish(client, st, packet, spec, limit, wait, now, () => commitPublish(st, lb, pc, pl, pt, total, um, ub, user, size, now));
    },

    authorizeSubscribe(client: ClientInfo, sub: Subscription): Verdict | Promise<Verdict> {
      const pc = s.subscribe.perClient;
      const user = client.username;
      const ub = user === undefined ? undefined : shared.userSubscribe;
      if (pc === undefined && ub === undefined) return undefined;
      const now = Date.now();
      const st = stateOf(client);
      let wait = 0;
      let spec: RateSpec | undefined;
      let limit: LimitName = 'subscribe.perClient';
      if (pc !== undefined) {
        wait = waitFor(st.sub, pc, 1, now);
        if (wait > 0) spec = pc;
      }
      if (ub !== undefined) {
        const w = ub.wait(user as string, now);
        if (w > wait) {
          wait = w;
          spec = s.subscribe.perUser;
          limit = 'subscribe.perUser';
        }
      }
      const commit = () => {
        if (pc !== undefined) take(st.sub, pc, 1, now);
        if (user !== undefined) ub?.add(user, 1);
      };
      if (spec === undefined) {
        commit();
        return undefined;
      }
      let c = spec.consequence;
      if (c === 'disconnect' || c === 'ban') {
        if (strike(st, spec, now)) {
          clientEvent(client, st, limit, c, now, { topic: sub.topic, spec });
          if (c === 'ban') banAddress(client.remoteAddress, spec, limit);
          else ctx?.disconnect(client.id, 'rate-limited', `rate limit ${limit} exceeded ${st.strikes} times`);
          return REFUSE;
        }
        c = 'refuse';
      }
      if (c === 'refuse' || wait > 60_000) {
        clientEvent(client, st, limit, 'refuse', now, { topic: sub.topic, spec });
        return REFUSE;
      }
      commit();
      clientEvent(client, st, limit, 'delay', now, { topic: sub.topic, wait: Math.round(wait), spec });
      return sleep(wait);
    },

    async close() {
      clearInterval(flusher);
      flusher = undefined;
      shared.userMessages?.flushAll();
      shared.userBytes?.flushAll();
      shared.userSubscribe?.flushAll();
      await store?.close();
      store = undefined;
    },
  };
  return mw;
}
