/**
 * A local, synchronous token bucket in its GCRA form (the "virtual scheduling" of ATM networks):
 * one number per bucket — the theoretical arrival time (TAT) of the next unit — and a few
 * arithmetic operations per check. No timers, no Promise, no allocation.
 *
 * With T = per / rate (ms per unit) and a bucket of `burst` units (tolerance τ = burst × T), `a`
 * units may pass at `now` when max(TAT, now) + min(a, burst) × T − now ≤ τ; passing moves TAT on by
 * a × T. A packet larger than the bucket passes alone into an empty bucket and leaves a debt.
 */
import { performance } from 'node:perf_hooks';
import type { RateSpec } from './options.js';

/**
 * A coarse monotonic clock in milliseconds (performance.now, refreshed every TICK ms while in
 * use). Reading the clock per PUBLISH would box its double in a new heap number (Date.now and
 * performance.now both do); a Float64Array slot is read and written in place.
 */
export const CLOCK = new Float64Array(1);
const TICK = 5;
let ticker: NodeJS.Timeout | undefined;
let used = false;
let idleTicks = 0;

function tick(): void {
  CLOCK[0] = performance.now();
  if (used) {
    used = false;
    idleTicks = 0;
  } else if (++idleTicks > 200) {
    // a second without a reader: stop until the next one
    clearInterval(ticker);
    ticker = undefined;
  }
}

/** The coarse clock, started if it was idle. Call once per packet, then read CLOCK[0]. */
export function touchClock(): void {
  if (!used) {
    // the first reader after a tick refreshes it: one clock read per tick, not per packet
    used = true;
    CLOCK[0] = performance.now();
  }
  if (ticker === undefined) {
    CLOCK[0] = performance.now();
    idleTicks = 0;
    ticker = setInterval(tick, TICK);
    ticker.unref();
  }
}

/** The precise clock, same timeline as CLOCK (for slow paths). */
export function clock(): number {
  return performance.now();
}

/**
 * The theoretical arrival times (clock ms) of a few buckets, one slot each. A Float64Array, not
 * object fields: V8 boxes a double stored in an object field in a fresh heap number, while a typed
 * array slot is written in place, so a PUBLISH within budget allocates nothing.
 */
export type Buckets = Float64Array;

export function newBuckets(slots: number): Buckets {
  return new Float64Array(slots);
}

/** Milliseconds until `amount` units fit in slot `i` at CLOCK (0 = now). Does not change the bucket. */
export function waitFor(b: Buckets, i: number, spec: RateSpec, amount: number): number {
  const now = CLOCK[0] as number;
  const t = spec.per / spec.rate;
  const fit = amount < spec.burst ? amount : spec.burst;
  const tat = b[i] as number;
  const start = tat > now ? tat : now;
  const over = start + fit * t - now - spec.burst * t;
  return over > 0 ? over : 0;
}

/** Count `amount` units in slot `i` as passed at CLOCK (or at the end of a granted wait: the debt carries over). */
export function take(b: Buckets, i: number, spec: RateSpec, amount: number): void {
  const now = CLOCK[0] as number;
  const tat = b[i] as number;
  b[i] = (tat > now ? tat : now) + amount * (spec.per / spec.rate);
}

/**
 * One GCRA bucket per key (new connections per address, per listener, in total, counted in this
 * process): a Map of theoretical arrival times, swept of keys whose bucket has refilled. Unlike a
 * fixed window, a budget of 50 per 10 s admits a refilled burst once and then one connection every
 * 200 ms — a flooder waiting at the window's edge does not get 50 handshakes at once every 10 s.
 */
export class KeyedBuckets {
  readonly spec: RateSpec;
  readonly #tat = new Map<string, number>();
  #inserts = 0;

  constructor(spec: RateSpec) {
    this.spec = spec;
  }

  /** Take one unit for `key` at `now` (clock ms): 0 when taken, else the milliseconds until one fits (nothing taken). */
  take(key: string, now: number): number {
    const t = this.spec.per / this.spec.rate;
    const tat = this.#tat.get(key);
    const start = tat !== undefined && tat > now ? tat : now;
    const over = start + t - now - this.spec.burst * t;
    if (over > 0) return over;
    if (tat === undefined && ++this.#inserts >= 4096) {
      // a full bucket is the same as no entry: drop those, so idle addresses do not accumulate
      this.#inserts = 0;
      for (const [k, v] of this.#tat) if (v <= now) this.#tat.delete(k);
    }
    this.#tat.set(key, start + t);
    return 0;
  }
}
