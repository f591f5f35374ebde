/**
 * Rate limits (PR.SS-5): budgets per remote address, per connection, per user, per listener and in
 * total, each with its consequence (drop, delay, refuse, disconnect after strikes, ban).
 *
 * Two kinds of counters, chosen by where they are consulted:
 * - PUBLISH and SUBSCRIBE budgets of a connection, a listener and the process are local token
 *   buckets (GCRA, one number each, state on a WeakMap keyed by the ClientInfo): every PUBLISH is
 *   checked synchronously with no allocation while the client is within budget;
 * - new connections per address, per listener and in total are local token buckets too (one per
 *   key, checked synchronously at accept) with the memory store; with the Redis store they are
 *   shared by every broker process, counted by rate-limiter-flexible (fixed windows, a Promise per
 *   new connection);
 * - per-user budgets live in rate-limiter-flexible's memory or Redis store, flushed in batches (see
 *   shared.ts); failed authentications per address are counted there too.
 *
 * Exceeding a budget is a `rate.limited` security event (at most one per second per client or
 * address and limit, with the count held back in between); the core emits none per packet.
 */
import type {
  AcceptCheck,
  BrokerContext,
  ClientInfo,
  ConnectionInfo,
  ConnectionLimits,
  ConnectPacketInfo,
  Denial,
  Middleware,
  PublishPacket,
  Subscription,
  Verdict,
} from '@bastion/core';
import { BANNED_AT_ACCEPT, isClosing } from '@bastion/core';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { KeyedBuckets, clock, newBuckets, take, touchClock, waitFor } from './bucket.js';
import type { Buckets } from './bucket.js';
import { normalizeRateLimits } from './options.js';
import type { Consequence, PublishBudget, RateLimitOptions, RateLimitSettings, RateSpec } from './options.js';
import { BatchedBudget, openStore, overBudget } from './shared.js';
import type { SharedStore, Tally } from './shared.js';

export { normalizeRateLimits, CONSEQUENCES } from './options.js';
export type { Consequence, RateSpec, RateSpecInput, RateLimitOptions, RateLimitSettings, RateStoreOptions, PublishBudget, PublishBudgetInput } from './options.js';
export { newBuckets, take as takeFromBucket, waitFor as bucketWait, touchClock, clock, CLOCK } from './bucket.js';
export type { Buckets } from './bucket.js';

/** What the `ban` consequence uses: the `bans` middleware fits (`controls.get('bans')`). */
export interface Banner {
  ban(target: { ip: string }, spec: { duration?: number; reason?: string; actor?: string }): unknown;
}

/** The part of the core broker that enforces open-connection caps and refuses at accept (BastionBroker fits). */
export interface ConnectionCaps {
  setConnectionLimits(limits: ConnectionLimits): void;
  addAcceptCheck?(check: AcceptCheck): () => void;
}

export interface RateLimit extends Middleware {
  /** The limits in force (normalized). */
  readonly settings: RateLimitSettings;
  /** 'memory' or 'redis': where shared budgets are counted. */
  readonly store: 'memory' | 'redis';
  /**
   * Change limits while running, no restart: each top-level key given (connections, concurrent,
   * publish, subscribe, authFailures, tarpit) replaces that part. Throws BASTION_ERR_RATE_LIMIT on a bad setting (and
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
/** Slots of a client's buckets. */
const MSG = 0;
const BYTES = 1;
const SUB = 2;

interface ClientState {
  /** Theoretical arrival times: MSG, BYTES, SUB. */
  readonly tat: Buckets;
  strikes: number;
  strikeAt: number;
  /** This client's tallies in the per-user budgets, and the budgets they belong to (rebuilt on update). */
  um: BatchedBudget | undefined;
  umT: Tally | undefined;
  ub: BatchedBudget | undefined;
  ubT: Tally | undefined;
  /** Throttle of this client's rate.limited events. */
  eventAt: number;
  suppressed: number;
}

/** MSG and BYTES slots of a listener's or the process's PUBLISH budgets. */
type ListenerBuckets = Buckets;

const DROP: Denial = Object.freeze({ denied: true as const, reason: 'rate-limited' as const, message: 'rate limit exceeded: QoS 0 message dropped', action: 'drop' as const, silent: true });
const REFUSE: Denial = Object.freeze({ denied: true as const, reason: 'rate-limited' as const, message: 'rate limit exceeded', silent: true });
const REFUSE_CONNECTION: Denial = Object.freeze({ denied: true as const, reason: 'connection-rate-exceeded' as const, message: 'too many new connections', silent: true });
const AUTH_BUSY: Denial = Object.freeze({ denied: true as const, reason: 'server-busy' as const, message: 'too many authentications in progress from this address', silent: true });
const AUTH_BUDGET_BUSY: Denial = Object.freeze({ denied: true as const, reason: 'server-busy' as const, message: 'failed authentications and checks in flight from this address fill its budget', silent: true });
const BANNED: Denial = Object.freeze({ denied: true as const, reason: 'banned' as const, message: 'the address is banned for exceeding rate limits' });
/** Longest an address whose password checks fill its cap or budget is refused at accept (see busyAtAccept). */
const AUTH_BUSY_HOLD = 1_000;

interface AuthPending {
  /** The CONNECTs whose checks are in flight (a few: the caps are small). */
  readonly clients: ClientInfo[];
  at: number;
}
/** For events of the in-flight authentication cap, which has no rate. */
const AUTH_SPEC: RateSpec = Object.freeze({ rate: 0, per: 0, burst: 0, consequence: 'refuse' as const, strikes: 0, banFor: 0, maxDelay: 0 });
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
  | 'authFailures.perIp'
  | 'concurrent.authPerIp'
  | 'connections.perIp'
  | 'connections.perListener'
  | 'connections.total';

interface ConnectionCheck {
  name: LimitName;
  spec: RateSpec;
  key: (c: ConnectionInfo) => string;
  /** The shared store's limiter (Redis), or undefined when counted here (memory). */
  limiter: RateLimiterAbstract | undefined;
  /** Counted in this process: synchronous, a token bucket per key. */
  local: KeyedBuckets | undefined;
}

interface Shared {
  connections: ConnectionCheck[];
  authFailures: RateLimiterAbstract | undefined;
  userMessages: BatchedBudget | undefined;
  userBytes: BatchedBudget | undefined;
  userSubscribe: BatchedBudget | undefined;
}

/** Count a PUBLISH in every budget it belongs to (at module scope: nothing captured, nothing allocated). */
function commitPublish(
  st: ClientState,
  lb: ListenerBuckets | undefined,
  pc: PublishBudget,
  pl: PublishBudget,
  pt: PublishBudget,
  tb: ListenerBuckets,
  um: BatchedBudget | undefined,
  umT: Tally | undefined,
  ub: BatchedBudget | undefined,
  ubT: Tally | undefined,
  size: number,
): void {
  if (pc.messages !== undefined) take(st.tat, MSG, pc.messages, 1);
  if (pc.bytes !== undefined) take(st.tat, BYTES, pc.bytes, size);
  if (lb !== undefined) {
    if (pl.messages !== undefined) take(lb, MSG, pl.messages, 1);
    if (pl.bytes !== undefined) take(lb, BYTES, pl.bytes, size);
  }
  if (pt.messages !== undefined) take(tb, MSG, pt.messages, 1);
  if (pt.bytes !== undefined) take(tb, BYTES, pt.bytes, size);
  if (umT !== undefined) um?.add(umT, 1);
  if (ubT !== undefined) ub?.add(ubT, size);
}

const sleep = (ms: number): Promise<undefined> => new Promise((resolve) => setTimeout(resolve, ms, undefined));

export function rateLimit(options: RateLimitOptions = {}): RateLimit {
  let input: RateLimitOptions = { ...options };
  let s = normalizeRateLimits(input);
  const flushInterval = options.flushInterval ?? 100;
  let ctx: BrokerContext | undefined;
  let store: SharedStore | undefined;
  let shared: Shared = { connections: [], authFailures: undefined, userMessages: undefined, userBytes: undefined, userSubscribe: undefined };
  let stopWatchingAuth: (() => void) | undefined;
  let removeAcceptCheck: (() => void) | undefined;
  let flusher: NodeJS.Timeout | undefined;
  let banner: Banner | undefined;
  let core: ConnectionCaps | undefined;
  const clients = new WeakMap<ClientInfo, ClientState>();
  let listeners = new Map<string, ListenerBuckets>();
  let hasListenerBudgets = Object.keys(s.publish.perListener).length > 0;
  const total: ListenerBuckets = newBuckets(2);
  /** Our own bans when no `bans` middleware is given: address → until (epoch ms). */
  const ownBans = new Map<string, number>();
  /**
   * Addresses known to be over a per-address budget until a time (the store said so): refused at
   * TCP accept, before TLS, without asking the store again.
   */
  const blocked = new Map<string, { until: number; limit: LimitName; spec: RateSpec }>();
  /**
   * Password checks in flight per address (concurrent.authPerIp, authFailures.perIp): the CONNECTs
   * from onConnect to their outcome, and when the last one came.
   */
  const authPending = new Map<string, AuthPending>();
  /**
   * This process's count of failed authentications per address in the current authFailures window
   * (a mirror of what it adds to the store, readable synchronously at CONNECT): address → { start, n }.
   */
  const authFailed = new Map<string, { start: number; n: number }>();
  /** Strikes of addresses against connection budgets: address → { n, at }. */
  const addressStrikes = new Map<string, { n: number; at: number }>();
  /** Throttle of address-keyed events: `${limit}\0${ip}` → { at, suppressed }. */
  const addressEvents = new Map<string, { at: number; suppressed: number }>();

  const stateOf = (client: ClientInfo): ClientState => {
    let st = clients.get(client);
    if (st === undefined) {
      st = { tat: newBuckets(3), strikes: 0, strikeAt: 0, um: undefined, umT: undefined, ub: undefined, ubT: undefined, eventAt: -1e9, suppressed: 0 };
      clients.set(client, st);
    }
    return st;
  };

  const listenerBuckets = (name: string): ListenerBuckets => {
    let b = listeners.get(name);
    if (b === undefined) {
      b = newBuckets(2);
      listeners.set(name, b);
    }
    return b;
  };

  const buildShared = (): Shared => {
    const st = store as SharedStore;
    const onError = (err: unknown) => ctx?.logger.warn({ err }, 'rate-limit store failed; the batch was not counted');
    const c = s.connections;
    const connections: Shared['connections'] = [];
    // one process (memory store): a synchronous token bucket per key, no Promise per connection
    const check = (name: LimitName, storeName: string, spec: RateSpec, key: (c: ConnectionInfo) => string): ConnectionCheck =>
      st.kind === 'memory' ? { name, spec, key, limiter: undefined, local: new KeyedBuckets(spec) } : { name, spec, key, limiter: st.limiter(storeName, spec), local: undefined };
    if (c.perIp) connections.push(check('connections.perIp', 'conn:ip', c.perIp, (x) => x.remoteAddress));
    for (const [name, spec] of Object.entries(c.perListener)) {
      connections.push(check('connections.perListener', `conn:listener:${name}`, spec, (x) => (x.listener === name ? name : '')));
    }
    if (c.total) connections.push(check('connections.total', 'conn:total', c.total, () => 'all'));
    const u = s.publish.perUser;
    return {
      connections,
      authFailures: s.authFailures.perIp && st.limiter('auth:ip', s.authFailures.perIp),
      userMessages: u.messages && new BatchedBudget(st.limiter('pub:user:msg', u.messages), u.messages, onError),
      userBytes: u.bytes && new BatchedBudget(st.limiter('pub:user:bytes', u.bytes), u.bytes, onError),
      userSubscribe: s.subscribe.perUser && new BatchedBudget(st.limiter('sub:user', s.subscribe.perUser), s.subscribe.perUser, onError),
    };
  };

  const concurrentLimits = (): ConnectionLimits => ({
    perIp: s.concurrent.perIp ?? 0,
    total: s.concurrent.total ?? 0,
    perListener: s.concurrent.perListener,
    holdRefused: s.tarpit?.hold ?? 0,
    maxHoldRefused: s.tarpit?.maxHold,
    maxHeld: s.tarpit?.max ?? 1000,
  });

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
      message: extra.spec.rate > 0 ? `${limit} exceeded (${extra.spec.rate} per ${extra.spec.per} ms): ${consequence}` : `${limit} cap reached: ${consequence}`,
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

  const block = (ip: string, until: number, limit: LimitName, spec: RateSpec) => {
    if (blocked.size > 100_000) blocked.clear();
    blocked.set(ip, { until, limit, spec });
  };

  /** An address refused again: with `ban`, the strikes add up to a ban. True when it was banned now. */
  const strikeAddress = (conn: ConnectionInfo, limit: LimitName, spec: RateSpec, now: number): boolean => {
    if (spec.consequence !== 'ban') return false;
    const ip = conn.remoteAddress;
    const prev = addressStrikes.get(ip);
    const n = prev !== undefined && now - prev.at <= spec.per ? prev.n + 1 : 1;
    if (n < spec.strikes) {
      if (addressStrikes.size > 100_000) addressStrikes.clear();
      addressStrikes.set(ip, { n, at: now });
      return false;
    }
    addressStrikes.delete(ip);
    addressEvent(conn, limit, 'ban', spec, now, n);
    banAddress(ip, spec, limit);
    return true;
  };

  /** A new connection over a connection budget for `msBeforeNext` ms: refused, and the address refused at accept until then. */
  const overConnectionBudget = (check: ConnectionCheck, conn: ConnectionInfo, msBeforeNext: number): Verdict => {
    const now = Date.now();
    if (check.name === 'connections.perIp') block(conn.remoteAddress, now + msBeforeNext, check.name, check.spec);
    if (!strikeAddress(conn, check.name, check.spec, now)) addressEvent(conn, check.name, 'refuse', check.spec, now, addressStrikes.get(conn.remoteAddress)?.n ?? 0);
    return REFUSE_CONNECTION;
  };

  /** Refused at accept by what we know already (core hook): no TLS, no store round trip. */
  const acceptCheck: AcceptCheck = (ip, listener) => {
    if (blocked.size === 0 && ownBans.size === 0) return undefined;
    const now = Date.now();
    const banned = ownBans.get(ip);
    if (banned !== undefined) {
      if (banned > now) return BANNED_AT_ACCEPT;
      ownBans.delete(ip);
    }
    const b = blocked.get(ip);
    if (b === undefined) return undefined;
    if (b.until <= now) {
      blocked.delete(ip);
      return undefined;
    }
    strikeAddress({ remoteAddress: ip, remotePort: 0, listener, transport: 'mqtt', certificate: undefined, tls: undefined }, b.limit, b.spec, now);
    return b.limit;
  };

  /**
   * An address whose password checks fill its cap or budget: its next sockets are refused at accept
   * (tarpit, no TLS handshake) until one of its checks ends, AUTH_BUSY_HOLD at most. A guesser refused
   * with CONNACK 3 reconnects at once; over mTLS each attempt would cost a full handshake.
   */
  const busyAtAccept = (ip: string, now: number): void => {
    if (!blocked.has(ip)) block(ip, now + AUTH_BUSY_HOLD, 'concurrent.authPerIp', AUTH_SPEC);
  };

  /**
   * Checks of this address ended: `client` connected, or (no client) some failed or were abandoned.
   * An attempt that ends without reaching onConnected (failed, the peer hung up meanwhile, a later
   * middleware refused the CONNECT) is known by isClosing(): it is forgotten here or when the
   * address next reaches a limit. Returns how many are still in flight.
   */
  const checksEnded = (ip: string, p: AuthPending, client?: ClientInfo): number => {
    const list = p.clients;
    let k = 0;
    for (let i = 0; i < list.length; i++) {
      const c = list[i] as ClientInfo;
      if (c !== client && !isClosing(c)) list[k++] = c;
    }
    if (k === list.length) return k;
    list.length = k;
    if (k === 0) authPending.delete(ip);
    // the address may be heard again (a busy hold, not a budget's refusal)
    if (blocked.get(ip)?.spec === AUTH_SPEC) blocked.delete(ip);
    return k;
  };

  /** Failed authentications per address, from the security event bus. Subscribed to auth.failed only. */
  const onAuthFailed = (e: { remoteAddress?: string | undefined; listener?: string | undefined }) => {
    if (e.remoteAddress !== undefined && authPending.size > 0) {
      const p = authPending.get(e.remoteAddress);
      if (p !== undefined) checksEnded(e.remoteAddress, p);
    }
    const limiter = shared.authFailures;
    const spec = s.authFailures.perIp;
    const ip = e.remoteAddress;
    if (limiter === undefined || spec === undefined || ip === undefined) return;
    const now0 = Date.now();
    const f = authFailed.get(ip);
    if (f !== undefined && now0 - f.start < spec.per) f.n++;
    else {
      if (f === undefined && authFailed.size > 100_000) authFailed.clear();
      authFailed.set(ip, { start: now0, n: 1 });
    }
    limiter.consume(ip, 1).catch((err: unknown) => {
      if (!overBudget(err)) return ctx?.logger.warn({ err }, 'rate-limit store failed; an authentication failure was not counted');
      overAuthBudget(ip, e.listener, spec, Date.now() + err.msBeforeNext);
    });
  };

  /** An address over its failed-authentication budget until `until`: refused at accept (or banned), once. */
  const overAuthBudget = (ip: string, listener: string | undefined, spec: RateSpec, until: number): void => {
    if (blocked.get(ip)?.limit === 'authFailures.perIp') return; // already refused
    const now = Date.now();
    block(ip, until, 'authFailures.perIp', spec);
    const conn = { remoteAddress: ip, listener } as ConnectionInfo;
    if (spec.consequence === 'ban') {
      addressEvent(conn, 'authFailures.perIp', 'ban', spec, now, 1);
      banAddress(ip, spec, 'authFailures.perIp');
    } else {
      addressEvent(conn, 'authFailures.perIp', 'refuse', spec, now, 0);
    }
  };

  const watchAuthFailures = () => {
    const want = s.authFailures.perIp !== undefined || s.concurrent.authPerIp !== undefined;
    // auth.failed only: a success ends its check in onConnected, so no event is built per CONNECT for us
    if (want && stopWatchingAuth === undefined && ctx) stopWatchingAuth = ctx.events.on(onAuthFailed, { types: ['auth.failed'] });
    if (!want && stopWatchingAuth !== undefined) {
      stopWatchingAuth();
      stopWatchingAuth = undefined;
    }
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

  const overPublishLater = (
    client: ClientInfo,
    st: ClientState,
    packet: PublishPacket,
    spec: RateSpec,
    limit: LimitName,
    wait: number,
    lb: ListenerBuckets | undefined,
    pc: PublishBudget,
    pl: PublishBudget,
    pt: PublishBudget,
    um: BatchedBudget | undefined,
    umT: Tally | undefined,
    ub: BatchedBudget | undefined,
    ubT: Tally | undefined,
    size: number,
  ): Verdict | Promise<Verdict> => overPublish(client, st, packet, spec, limit, wait, clock(), () => commitPublish(st, lb, pc, pl, pt, total, um, umT, ub, ubT, size));

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
      watchAuthFailures();
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
      removeAcceptCheck?.();
      removeAcceptCheck = c.addAcceptCheck?.(acceptCheck);
    },

    update(next) {
      const merged: RateLimitOptions = { ...input, ...next };
      const settings = normalizeRateLimits(merged); // throws before anything changes
      input = merged;
      s = settings;
      if (store) shared = buildShared();
      watchAuthFailures();
      blocked.clear();
      listeners = new Map();
      hasListenerBudgets = Object.keys(s.publish.perListener).length > 0;
      core?.setConnectionLimits(concurrentLimits());
      ctx?.logger.info({ rateLimits: s }, 'rate limits changed');
      return s;
    },

    onConnect(client: ClientInfo, packet: ConnectPacketInfo): Verdict {
      const cap = s.concurrent.authPerIp;
      const failures = s.authFailures.perIp;
      if ((cap === undefined && failures === undefined) || packet.username === undefined) return undefined;
      const ip = client.remoteAddress;
      const now = Date.now();
      let p = authPending.get(ip);
      let n = p === undefined ? 0 : p.clients.length;
      const f = failures === undefined ? undefined : authFailed.get(ip);
      const failed = f !== undefined && now - f.start < (failures as RateSpec).per ? f.n : 0;
      if (p !== undefined && ((cap !== undefined && n >= cap) || (failures !== undefined && failed + n >= failures.rate))) {
        // at a limit: first forget the attempts that ended without an outcome. A ClientInfo the core
        // did not make cannot tell (isClosing is false): its attempts lapse 30 s after the last one.
        if (now - p.at > 30_000) {
          authPending.delete(ip);
          n = 0;
        } else n = checksEnded(ip, p);
        if (n === 0) p = undefined;
      }
      if (cap !== undefined && n >= cap) {
        addressEvent(client, 'concurrent.authPerIp', 'refuse', AUTH_SPEC, now, 0);
        busyAtAccept(ip, now);
        return AUTH_BUSY;
      }
      if (failures !== undefined) {
        // Checks in flight count against the failure budget: each may be one more failure, and a
        // failure is only counted once its scrypt has run. Without this an address with N checks
        // in flight got budget + N password checks per window.
        if (f !== undefined && failed >= failures.rate) {
          // spent, and the address tries again: what its next failure would do, without the check
          overAuthBudget(ip, client.listener, failures, f.start + failures.per);
          return failures.consequence === 'ban' ? BANNED : REFUSE;
        }
        if (failed + n >= failures.rate) {
          addressEvent(client, 'authFailures.perIp', 'refuse', failures, now, 0);
          busyAtAccept(ip, now);
          return AUTH_BUDGET_BUSY;
        }
      }
      if (p === undefined) {
        if (authPending.size > 100_000) authPending.clear();
        p = { clients: [], at: now };
        authPending.set(ip, p);
      }
      p.clients.push(client);
      p.at = now;
      return undefined;
    },

    onConnected(client: ClientInfo): void {
      // whatever it authenticated as (a claimed username may end as a certificate identity, or none)
      if (authPending.size > 0) {
        const p = authPending.get(client.remoteAddress);
        if (p !== undefined) checksEnded(client.remoteAddress, p, client);
      }
    },

    onConnection(conn: ConnectionInfo): Verdict | Promise<Verdict> {
      if (ownBans.size > 0 || blocked.size > 0) {
        // normally refused at accept already (bindCore); this is for a core without the hook
        const hit = acceptCheck(conn.remoteAddress, conn.listener);
        if (hit === BANNED_AT_ACCEPT) return BANNED;
        if (hit !== undefined) return REFUSE_CONNECTION;
      }
      const checks = shared.connections;
      if (checks.length === 0) return undefined;
      if ((checks[0] as ConnectionCheck).local !== undefined) {
        // counted in this process: synchronous
        const now = clock();
        for (const check of checks) {
          const key = check.key(conn);
          if (key === '') continue;
          const wait = (check.local as KeyedBuckets).take(key, now);
          if (wait > 0) return overConnectionBudget(check, conn, wait);
        }
        return undefined;
      }
      return (async (): Promise<Verdict> => {
        for (const check of checks) {
          const key = check.key(conn);
          if (key === '') continue;
          try {
            await (check.limiter as RateLimiterAbstract).consume(key, 1);
          } catch (err) {
            if (!overBudget(err)) {
              ctx?.logger.warn({ err }, 'rate-limit store failed; connection allowed');
              continue;
            }
            return overConnectionBudget(check, conn, err.msBeforeNext);
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

      touchClock(); // the buckets read the coarse clock: no clock read (and no boxed double) per PUBLISH
      const st = stateOf(client);
      const size = packet.payload.length;
      const lb = pl === NO_BUDGET ? undefined : listenerBuckets(client.listener);
      // Pass 1: the longest wait, and the limit that imposes it (the first one on a tie).
      let wait = 0;
      let spec: RateSpec | undefined;
      let limit: LimitName = 'publish.perClient.messages';
      let w = 0;
      if (pc.messages !== undefined) {
        w = waitFor(st.tat, MSG, pc.messages, 1);
        if (w > wait) {
          wait = w;
          spec = pc.messages;
          limit = 'publish.perClient.messages';
        }
      }
      if (pc.bytes !== undefined) {
        w = waitFor(st.tat, BYTES, pc.bytes, size);
        if (w > wait) {
          wait = w;
          spec = pc.bytes;
          limit = 'publish.perClient.bytes';
        }
      }
      if (lb !== undefined && pl.messages !== undefined) {
        w = waitFor(lb, MSG, pl.messages, 1);
        if (w > wait) {
          wait = w;
          spec = pl.messages;
          limit = 'publish.perListener.messages';
        }
      }
      if (lb !== undefined && pl.bytes !== undefined) {
        w = waitFor(lb, BYTES, pl.bytes, size);
        if (w > wait) {
          wait = w;
          spec = pl.bytes;
          limit = 'publish.perListener.bytes';
        }
      }
      if (pt.messages !== undefined) {
        w = waitFor(total, MSG, pt.messages, 1);
        if (w > wait) {
          wait = w;
          spec = pt.messages;
          limit = 'publish.total.messages';
        }
      }
      if (pt.bytes !== undefined) {
        w = waitFor(total, BYTES, pt.bytes, size);
        if (w > wait) {
          wait = w;
          spec = pt.bytes;
          limit = 'publish.total.bytes';
        }
      }
      let umT: Tally | undefined;
      let ubT: Tally | undefined;
      if (um !== undefined) {
        if (st.um !== um) {
          st.um = um;
          st.umT = um.tally(user as string);
        }
        umT = st.umT as Tally;
        w = um.wait(umT);
        if (w > wait) {
          wait = w;
          spec = pub.perUser.messages;
          limit = 'publish.perUser.messages';
        }
      }
      if (ub !== undefined) {
        if (st.ub !== ub) {
          st.ub = ub;
          st.ubT = ub.tally(user as string);
        }
        ubT = st.ubT as Tally;
        w = ub.wait(ubT);
        if (w > wait) {
          wait = w;
          spec = pub.perUser.bytes;
          limit = 'publish.perUser.bytes';
        }
      }
      // Pass 2: count it everywhere — now, or (delay) as if it passed at the end of its wait.
      if (spec === undefined) {
        commitPublish(st, lb, pc, pl, pt, total, um, umT, ub, ubT, size);
        return undefined;
      }
      // the closure lives in another function: captured variables here would cost a context per call
      return overPublishLater(client, st, packet, spec, limit, wait, lb, pc, pl, pt, um, umT, ub, ubT, size);
    },

    authorizeSubscribe(client: ClientInfo, sub: Subscription): Verdict | Promise<Verdict> {
      const pc = s.subscribe.perClient;
      const user = client.username;
      const ub = user === undefined ? undefined : shared.userSubscribe;
      if (pc === undefined && ub === undefined) return undefined;
      touchClock();
      const now = clock();
      const st = stateOf(client);
      let wait = 0;
      let spec: RateSpec | undefined;
      let limit: LimitName = 'subscribe.perClient';
      if (pc !== undefined) {
        wait = waitFor(st.tat, SUB, pc, 1);
        if (wait > 0) spec = pc;
      }
      const subT = ub === undefined ? undefined : ub.tally(user as string);
      if (ub !== undefined && subT !== undefined) {
        const w = ub.wait(subT);
        if (w > wait) {
          wait = w;
          spec = s.subscribe.perUser;
          limit = 'subscribe.perUser';
        }
      }
      const commit = () => {
        if (pc !== undefined) take(st.tat, SUB, pc, 1);
        if (subT !== undefined) ub?.add(subT, 1);
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
      stopWatchingAuth?.();
      stopWatchingAuth = undefined;
      removeAcceptCheck?.();
      removeAcceptCheck = undefined;
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
