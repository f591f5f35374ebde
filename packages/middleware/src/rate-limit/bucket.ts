/**
 * A local, synchronous token bucket in its GCRA form (the "virtual scheduling" of ATM networks):
 * one number per bucket — the theoretical arrival time (TAT) of the next unit — and a few
 * arithmetic operations per check. No timers, no Promise, no allocation.
 *
 * With T = per / rate (ms per unit) and a bucket of `burst` units (tolerance τ = burst × T), `a`
 * units may pass at `now` when max(TAT, now) + min(a, burst) × T − now ≤ τ; passing moves TAT on by
 * a × T. A packet larger than the bucket passes alone into an empty bucket and leaves a debt.
 */
import type { RateSpec } from './options.js';

export interface Bucket {
  /** Epoch ms: when the bucket will be empty again. */
  tat: number;
}

export function newBucket(): Bucket {
  return { tat: 0 };
}

/** Milliseconds until `amount` units fit (0 = now). Does not change the bucket. */
export function waitFor(b: Bucket, spec: RateSpec, amount: number, now: number): number {
  const t = spec.per / spec.rate;
  const fit = amount < spec.burst ? amount : spec.burst;
  const start = b.tat > now ? b.tat : now;
  const over = start + fit * t - now - spec.burst * t;
  return over > 0 ? over : 0;
}

/** Count `amount` units as passed (now, or after a wait that was granted). */
export function take(b: Bucket, spec: RateSpec, amount: number, now: number): void {
  const start = b.tat > now ? b.tat : now;
  b.tat = start + amount * (spec.per / spec.rate);
}
