/**
 * Budgets that several broker processes share: counted by rate-limiter-flexible in memory (one
 * process) or in Redis (every process using the same key prefix). They are consulted where a
 * Promise is affordable — once per new connection — or in batches: a per-user PUBLISH budget adds
 * up locally and is flushed to the store every `flushInterval` (or sooner when a batch grows), and
 * the store's answer ("over budget until T") is kept locally, so the PUBLISH path stays synchronous.
 */
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { Redis } from 'ioredis';
import type { BrokerContext } from '@bastion/core';
import type { RateSpec, RateStoreOptions } from './options.js';
import { CLOCK, clock } from './bucket.js';

type Logger = BrokerContext['logger'];

export interface SharedStore {
  readonly kind: 'memory' | 'redis';
  /** A limiter counting `spec.rate` per `spec.per` under `name` (keys are `<prefix><name>:<key>`). */
  limiter(name: string, spec: RateSpec): RateLimiterAbstract;
  /** Resolves when the store can be used (Redis connected); memory at once. */
  ready(): Promise<void>;
  close(): Promise<void>;
}

export function openStore(opts: RateStoreOptions | undefined, logger: Logger | undefined): SharedStore {
  if (opts === undefined || opts.type === 'memory') {
    return {
      kind: 'memory',
      limiter: (name, spec) => new RateLimiterMemory({ keyPrefix: name, points: spec.rate, duration: spec.per / 1000 }),
      ready: async () => {},
      close: async () => {},
    };
  }
  const prefix = opts.keyPrefix ?? 'bastion:rl:';
  const own = 'url' in opts;
  // rate-limiter-flexible's advice for ioredis: no offline queue, so a dead Redis fails fast into the insurance limiter
  const client = own ? new Redis(opts.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 5_000 }) : (opts.client as Redis);
  if (own) client.on('error', (err: Error) => logger?.warn({ err: { message: err.message } }, 'rate-limit store (Redis) error; local insurance limits apply meanwhile'));
  return {
    kind: 'redis',
    limiter: (name, spec) =>
      new RateLimiterRedis({
        storeClient: client,
        keyPrefix: `${prefix}${name}`,
        points: spec.rate,
        duration: spec.per / 1000,
        rejectIfRedisNotReady: true,
        // while Redis is unreachable, each process counts on its own
        insuranceLimiter: new RateLimiterMemory({ keyPrefix: `${prefix}${name}`, points: spec.rate, duration: spec.per / 1000 }),
      }),
    ready: () =>
      client.status === 'ready'
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error('rate-limit store: Redis not ready within 10 s')), 10_000);
            client.once('ready', () => {
              clearTimeout(t);
              resolve();
            });
          }),
    close: async () => {
      if (!own) return;
      try {
        await client.quit();
      } catch {
        client.disconnect();
      }
    },
  };
}

/** Exceeded (a RateLimiterRes) or failed (an Error)? */
export function overBudget(err: unknown): err is RateLimiterRes {
  return err instanceof RateLimiterRes;
}

/** One key's local count in a batched budget (cache it: the hot path then needs no lookup). */
export interface Tally {
  readonly key: string;
  pending: number;
  /** clock() ms until which the store said this key is over budget. */
  blockedUntil: number;
  dirty: boolean;
}

/**
 * A shared budget consulted in batches. `wait(tally, now)` is synchronous: how long the key is
 * still over budget according to the store's last answer (0 = go). `add` counts locally; counts
 * are flushed on a timer, or at once when they reach a twentieth of the budget.
 */
export class BatchedBudget {
  readonly #limiter: RateLimiterAbstract;
  readonly #flushAt: number;
  readonly #tallies = new Map<string, Tally>();
  #dirty: Tally[] = [];
  readonly #onError: (err: unknown) => void;

  constructor(limiter: RateLimiterAbstract, spec: RateSpec, onError: (err: unknown) => void) {
    this.#limiter = limiter;
    this.#flushAt = Math.max(1, Math.floor(spec.rate / 20));
    this.#onError = onError;
  }

  tally(key: string): Tally {
    let t = this.#tallies.get(key);
    if (t === undefined) {
      if (this.#tallies.size > 100_000) this.#forgetIdle();
      t = { key, pending: 0, blockedUntil: 0, dirty: false };
      this.#tallies.set(key, t);
    }
    return t;
  }

  /** Milliseconds the key is still over budget at CLOCK (0 = go). */
  wait(t: Tally): number {
    const now = CLOCK[0] as number;
    return t.blockedUntil > now ? t.blockedUntil - now : 0;
  }

  add(t: Tally, amount: number): void {
    t.pending += amount;
    if (t.pending >= this.#flushAt) this.#flush(t);
    else if (!t.dirty) {
      t.dirty = true;
      this.#dirty.push(t);
    }
  }

  /** Send every local count to the store. */
  flushAll(): void {
    const dirty = this.#dirty;
    if (dirty.length === 0) return;
    this.#dirty = [];
    for (const t of dirty) {
      t.dirty = false;
      if (t.pending > 0) this.#flush(t);
    }
  }

  /** Forget keys with nothing pending and no block (many distinct users: memory stays bounded). */
  #forgetIdle(): void {
    const now = clock();
    for (const [key, t] of this.#tallies) if (t.pending === 0 && !t.dirty && t.blockedUntil <= now) this.#tallies.delete(key);
  }

  #flush(t: Tally): void {
    const n = t.pending;
    t.pending = 0;
    this.#limiter.consume(t.key, n).then(
      (res) => {
        // the budget is used up exactly: whatever comes next is over it
        if (res.remainingPoints <= 0) t.blockedUntil = clock() + res.msBeforeNext;
      },
      (err: unknown) => {
        if (overBudget(err)) t.blockedUntil = clock() + err.msBeforeNext;
        else this.#onError(err);
      },
    );
  }
}
