/**
 * A budget of failed authentications per remote address on the admin API (PR.SS-5, guarding
 * PR.AC-3): `rate` failures in a window of `per` milliseconds that opens with the first failure.
 * The failure that spends the budget locks the address out until the window ends; meanwhile its
 * requests are answered 429 without looking at their credentials, so a guesser learns nothing, a
 * right token included.
 *
 * Memory is bounded: at most `capacity` addresses are remembered. Windows sit in a Map in the order
 * they opened (a window that reopens is moved to the end), so expired ones are found at the front,
 * and when the table is full of live ones the oldest is forgotten first.
 */
import { performance } from 'node:perf_hooks';

export interface AuthFailureBudget {
  /** Failures allowed per window. */
  readonly rate: number;
  /** The window, in milliseconds. */
  readonly per: number;
}

export interface AuthFailureOptions {
  /** Per remote address; `false` turns the budget off. Default 10 per minute. */
  readonly perIp?: AuthFailureBudget | false | undefined;
  /** Most addresses remembered at once (default 10,000). */
  readonly capacity?: number | undefined;
}

export const DEFAULT_AUTH_FAILURES: Readonly<{ perIp: AuthFailureBudget; capacity: number }> = Object.freeze({ perIp: Object.freeze({ rate: 10, per: 60_000 }), capacity: 10_000 });

interface Window {
  /** performance.now() of the first failure. */
  readonly start: number;
  count: number;
}

export class AuthFailureLimiter {
  #perIp: AuthFailureBudget | undefined;
  #capacity: number;
  readonly #windows = new Map<string, Window>();
  readonly #now: () => number;

  constructor(opts: AuthFailureOptions = {}, now: () => number = () => performance.now()) {
    this.#now = now;
    this.#perIp = DEFAULT_AUTH_FAILURES.perIp;
    this.#capacity = DEFAULT_AUTH_FAILURES.capacity;
    this.configure(opts);
  }

  /** New settings (a profile reload), applied to the failures already counted; `perIp: false` forgets them. */
  configure(opts: AuthFailureOptions): void {
    this.#perIp = opts.perIp === false ? undefined : (opts.perIp ?? DEFAULT_AUTH_FAILURES.perIp);
    this.#capacity = opts.capacity ?? DEFAULT_AUTH_FAILURES.capacity;
    if (this.#perIp === undefined) this.#windows.clear();
    while (this.#windows.size > this.#capacity) this.#forgetOldest();
  }

  get budget(): AuthFailureBudget | undefined {
    return this.#perIp;
  }

  /** Addresses remembered now (for tests and metrics). */
  get size(): number {
    return this.#windows.size;
  }

  /** Milliseconds until `ip` may authenticate again; 0 when it may now. */
  lockedFor(ip: string): number {
    const spec = this.#perIp;
    const w = this.#windows.get(ip);
    if (spec === undefined || w === undefined || w.count < spec.rate) return 0;
    const left = w.start + spec.per - this.#now();
    return left > 0 ? left : 0;
  }

  /**
   * Count a failed authentication from `ip`. Returns the lockout it starts (milliseconds) when this
   * failure spent the budget, once per window; undefined otherwise.
   */
  fail(ip: string): number | undefined {
    const spec = this.#perIp;
    if (spec === undefined) return undefined;
    const now = this.#now();
    let w = this.#windows.get(ip);
    if (w === undefined || now - w.start >= spec.per) {
      if (w !== undefined) this.#windows.delete(ip); // reopened: to the end, in start order
      else this.#makeRoom(now, spec);
      w = { start: now, count: 0 };
      this.#windows.set(ip, w);
    }
    w.count++;
    return w.count === spec.rate ? w.start + spec.per - now : undefined;
  }

  /** Before a new address comes in: drop expired windows from the front, then the oldest live one if still full. */
  #makeRoom(now: number, spec: AuthFailureBudget): void {
    for (const [ip, w] of this.#windows) {
      if (now - w.start < spec.per) break;
      this.#windows.delete(ip);
    }
    while (this.#windows.size >= this.#capacity) this.#forgetOldest();
  }

  #forgetOldest(): void {
    const first = this.#windows.keys().next();
    if (!first.done) this.#windows.delete(first.value);
  }
}
