/**
 * Bounded sliding-window counters: how many times a key (an address, a client id, a username) was
 * seen in the last `window` milliseconds.
 *
 * Each key keeps two fixed buckets (previous and current window); the estimate weighs the previous
 * bucket by how much of it still lies inside the sliding window (the usual two-bucket
 * approximation: exact at bucket edges, within one bucket's worth of the truth in between).
 *
 * Memory is bounded: at most `capacity` keys are tracked. When a new key arrives at capacity the
 * least recently touched key is forgotten (a Map in touch order), so a flood of distinct keys costs
 * eviction of old keys, never growth. Each entry is one small object (~100 bytes with its key), so a
 * table of 10,000 keys stays around a megabyte whatever an attacker sends.
 */
import { parseAddress } from '@bastion/middleware';

interface Slot {
  start: number;
  prev: number;
  cur: number;
}

export class WindowedCounters {
  readonly window: number;
  readonly capacity: number;
  readonly #slots = new Map<string, Slot>();
  /** Keys forgotten to stay within capacity, since start (a sign of a flood of distinct keys). */
  evicted = 0;

  constructor(window: number, capacity: number) {
    if (!(window > 0)) throw new RangeError('window must be positive');
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
    this.window = window;
    this.capacity = capacity;
  }

  get size(): number {
    return this.#slots.size;
  }

  /** Count `n` more for `key` at time `now`; returns the count over the sliding window. */
  add(key: string, now: number, n = 1): number {
    const slots = this.#slots;
    let s = slots.get(key);
    if (s === undefined) {
      if (slots.size >= this.capacity) {
        const oldest = slots.keys().next().value as string;
        slots.delete(oldest);
        this.evicted++;
      }
      s = { start: now, prev: 0, cur: 0 };
    } else {
      slots.delete(key); // re-inserted below: Map order is touch order (least recent first)
    }
    slots.set(key, s);
    this.#roll(s, now);
    s.cur += n;
    return this.#estimate(s, now);
  }

  /** The count over the sliding window, without counting. */
  get(key: string, now: number): number {
    const s = this.#slots.get(key);
    if (s === undefined) return 0;
    this.#roll(s, now);
    return this.#estimate(s, now);
  }

  /** Forget a key (after a detection, so the next one needs a fresh run of events). */
  reset(key: string): void {
    this.#slots.delete(key);
  }

  clear(): void {
    this.#slots.clear();
  }

  #roll(s: Slot, now: number): void {
    const elapsed = now - s.start;
    if (elapsed < this.window) return;
    const buckets = Math.floor(elapsed / this.window);
    s.prev = buckets === 1 ? s.cur : 0;
    s.cur = 0;
    s.start += buckets * this.window;
  }

  #estimate(s: Slot, now: number): number {
    const inPrev = 1 - (now - s.start) / this.window;
    return s.cur + (inPrev > 0 ? Math.round(s.prev * inPrev) : 0);
  }
}

/**
 * The key an address is counted under: IPv4 as is, IPv6 by its /64 (one host usually owns a whole
 * /64, so counting single IPv6 addresses would let it rotate through 2^64 of them).
 */
export function addressKey(address: string): string {
  if (address.indexOf(':') === -1) return address;
  const a = parseAddress(address);
  if (a === undefined) return address;
  if (a.version === 4) return formatV4(a.value);
  const hi = a.value >> 64n;
  const groups = [48n, 32n, 16n, 0n].map((shift) => ((hi >> shift) & 0xffffn).toString(16));
  return `${groups.join(':')}::/64`;
}

function formatV4(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}
