/**
 * Rate-limit settings: what an embedder passes to `rateLimit()` (partial specs, defaults filled in)
 * and the normalized form the middleware runs on. The profile's resolved `rateLimits` section has
 * the normalized shape, so it can be passed as it is.
 */
import { BastionError } from '@bastion/core';

export const CONSEQUENCES = ['drop', 'delay', 'refuse', 'disconnect', 'ban'] as const;
/**
 * What exceeding a budget does:
 * - `drop`: QoS 0 PUBLISH discarded (acknowledged as the spec allows); QoS 1/2 are delayed instead, never lost;
 * - `delay`: back-pressure: the packet waits for its turn and the client's socket is not read meanwhile;
 * - `refuse`: a connection is closed before CONNECT is read, a SUBSCRIBE filter gets SUBACK 0x80;
 * - `disconnect`: after `strikes` exceedances the client is disconnected (reason `rate-limited`);
 * - `ban`: after `strikes` exceedances the client's address is banned for `banFor`.
 */
export type Consequence = (typeof CONSEQUENCES)[number];

export interface RateSpecInput {
  /** Units (packets, bytes, connections) per `per`. */
  rate: number;
  /** Milliseconds (default 1000). Shared budgets count whole seconds. */
  per?: number;
  /** Bucket size in units (default `rate`); local budgets only. */
  burst?: number;
  consequence?: Consequence;
  /** Exceedances (within a window without a clean `per`) before `disconnect`/`ban` act. Default 3. */
  strikes?: number;
  /** Milliseconds; for `ban`. Default 10 minutes. */
  banFor?: number;
  /** Milliseconds; for `delay`: a QoS 0 packet whose turn is further away is dropped. Default 1000. */
  maxDelay?: number;
}

export interface RateSpec extends Required<RateSpecInput> {}

export interface PublishBudgetInput {
  messages?: RateSpecInput | undefined;
  bytes?: RateSpecInput | undefined;
}

export type RateStoreOptions =
  | { type: 'memory' }
  | { type: 'redis'; url: string; keyPrefix?: string }
  /** A client you made (ioredis or node-redis), shared with rate-limiter-flexible. */
  | { type: 'redis'; client: unknown; keyPrefix?: string };

export interface RateLimitOptions {
  store?: RateStoreOptions;
  connections?: { perIp?: RateSpecInput | undefined; perListener?: Record<string, RateSpecInput>; total?: RateSpecInput | undefined };
  /** Open connections; enforced by the core at TCP accept once bound (`bindCore`). */
  concurrent?: {
    perIp?: number | undefined;
    perListener?: Record<string, number>;
    total?: number | undefined;
    /**
     * CONNECTs with a username from one address whose authentication is still running (a password
     * check costs a scrypt): beyond it the CONNECT is refused at once (CONNACK 3), so a guesser
     * cannot queue up password checks faster than the failure budget sees them fail.
     */
    authPerIp?: number | undefined;
  };
  publish?: { perClient?: PublishBudgetInput; perUser?: PublishBudgetInput; perListener?: Record<string, PublishBudgetInput>; total?: PublishBudgetInput };
  subscribe?: { perClient?: RateSpecInput | undefined; perUser?: RateSpecInput | undefined };
  /**
   * Failed authentications per remote address (password guessing). Beyond the budget the address
   * is refused at TCP accept until the window ends (`refuse`), or banned for `banFor` (`ban`).
   */
  authFailures?: { perIp?: RateSpecInput | undefined };
  /**
   * Sockets refused at TCP accept (caps, known over-budget addresses) on plain TCP listeners are
   * held open, unread, for `hold` ms before they are closed — at most `max` at once (default 1000) —
   * so a flooder that reconnects at once is slowed down. An address refused again within `maxHold`
   * of its previous refusal has its hold doubled, up to `maxHold` (default 16 × hold, at most 60 s;
   * equal to `hold`: no escalation). Enforced by the core once bound.
   */
  tarpit?: { hold: number; max?: number | undefined; maxHold?: number | undefined } | undefined;
  /** Milliseconds between flushes of batched per-user counts to the store (default 100). */
  flushInterval?: number;
}

export interface PublishBudget {
  messages: RateSpec | undefined;
  bytes: RateSpec | undefined;
}

export interface RateLimitSettings {
  connections: { perIp: RateSpec | undefined; perListener: Readonly<Record<string, RateSpec>>; total: RateSpec | undefined };
  concurrent: { perIp: number | undefined; perListener: Readonly<Record<string, number>>; total: number | undefined; authPerIp: number | undefined };
  publish: { perClient: PublishBudget; perUser: PublishBudget; perListener: Readonly<Record<string, PublishBudget>>; total: PublishBudget };
  subscribe: { perClient: RateSpec | undefined; perUser: RateSpec | undefined };
  authFailures: { perIp: RateSpec | undefined };
  tarpit: { hold: number; max: number; maxHold: number } | undefined;
}

const SOFT_CONNECTION: readonly Consequence[] = ['refuse', 'ban'];
const PUBLISH: readonly Consequence[] = ['drop', 'delay', 'disconnect', 'ban'];
const SUBSCRIBE: readonly Consequence[] = ['refuse', 'delay', 'disconnect', 'ban'];

function invalid(at: string, message: string): never {
  throw new BastionError('BASTION_ERR_RATE_LIMIT', `rate limit ${at}: ${message}`);
}

function positive(at: string, key: string, v: number | undefined, integer = false): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) invalid(at, `${key} must be a positive ${integer ? 'integer' : 'number'}`);
}

function spec(at: string, s: RateSpecInput | undefined, allowed: readonly Consequence[], soft: Consequence, shared: boolean): RateSpec | undefined {
  if (s === undefined || s === null) return undefined;
  if (typeof s !== 'object') invalid(at, 'expected { rate, per?, burst?, consequence? }');
  positive(at, 'rate', s.rate);
  if (s.rate === undefined) invalid(at, 'rate is required');
  positive(at, 'per', s.per);
  positive(at, 'burst', s.burst);
  positive(at, 'strikes', s.strikes, true);
  positive(at, 'banFor', s.banFor);
  positive(at, 'maxDelay', s.maxDelay);
  const consequence = s.consequence ?? soft;
  if (!allowed.includes(consequence)) invalid(at, `consequence must be one of ${allowed.join(', ')}, got ${String(consequence)}`);
  const per = s.per ?? 1000;
  if (shared && per % 1000 !== 0) invalid(at, `a shared budget counts whole seconds, got per = ${per} ms`);
  const burst = s.burst ?? s.rate;
  return { rate: s.rate, per, burst, consequence, strikes: s.strikes ?? 3, banFor: s.banFor ?? 600_000, maxDelay: s.maxDelay ?? 1000 };
}

function budget(at: string, b: PublishBudgetInput | undefined, shared: boolean): PublishBudget {
  return { messages: spec(`${at}.messages`, b?.messages, PUBLISH, 'delay', shared), bytes: spec(`${at}.bytes`, b?.bytes, PUBLISH, 'delay', shared) };
}

function cap(at: string, v: number | undefined): number | undefined {
  positive(at, 'cap', v, true);
  return v;
}

/** The longest escalated hold when none is given: 16 × the hold, at most a minute (never below the hold). */
function defaultMaxHold(hold: number): number {
  return Math.max(hold, Math.min(16 * hold, 60_000));
}

function tarpit(t: RateLimitOptions['tarpit']): RateLimitSettings['tarpit'] {
  if (t === undefined || t === null) return undefined;
  positive('tarpit', 'hold', t.hold);
  positive('tarpit', 'max', t.max, true);
  positive('tarpit', 'maxHold', t.maxHold);
  if (t.maxHold !== undefined && t.maxHold < t.hold) invalid('tarpit', `maxHold (${t.maxHold} ms) is shorter than hold (${t.hold} ms)`);
  return { hold: t.hold, max: t.max ?? 1000, maxHold: t.maxHold ?? defaultMaxHold(t.hold) };
}

/** Validate and fill in defaults; throws BastionError BASTION_ERR_RATE_LIMIT on a bad setting. */
export function normalizeRateLimits(o: RateLimitOptions): RateLimitSettings {
  const perListener: Record<string, RateSpec> = {};
  for (const [name, s] of Object.entries(o.connections?.perListener ?? {})) {
    const r = spec(`connections.perListener.${name}`, s, SOFT_CONNECTION, 'refuse', true);
    if (r) perListener[name] = r;
  }
  const publishPerListener: Record<string, PublishBudget> = {};
  for (const [name, b] of Object.entries(o.publish?.perListener ?? {})) publishPerListener[name] = budget(`publish.perListener.${name}`, b, false);
  const concurrentPerListener: Record<string, number> = {};
  for (const [name, n] of Object.entries(o.concurrent?.perListener ?? {})) concurrentPerListener[name] = cap(`concurrent.perListener.${name}`, n) as number;
  return {
    connections: {
      perIp: spec('connections.perIp', o.connections?.perIp, SOFT_CONNECTION, 'refuse', true),
      perListener,
      total: spec('connections.total', o.connections?.total, SOFT_CONNECTION, 'refuse', true),
    },
    concurrent: { perIp: cap('concurrent.perIp', o.concurrent?.perIp), perListener: concurrentPerListener, total: cap('concurrent.total', o.concurrent?.total), authPerIp: cap('concurrent.authPerIp', o.concurrent?.authPerIp) },
    publish: {
      perClient: budget('publish.perClient', o.publish?.perClient, false),
      perUser: budget('publish.perUser', o.publish?.perUser, true),
      perListener: publishPerListener,
      total: budget('publish.total', o.publish?.total, false),
    },
    subscribe: {
      perClient: spec('subscribe.perClient', o.subscribe?.perClient, SUBSCRIBE, 'refuse', false),
      perUser: spec('subscribe.perUser', o.subscribe?.perUser, SUBSCRIBE, 'refuse', true),
    },
    authFailures: { perIp: spec('authFailures.perIp', o.authFailures?.perIp, SOFT_CONNECTION, 'refuse', true) },
    tarpit: tarpit(o.tarpit),
  };
}
