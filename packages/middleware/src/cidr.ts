/**
 * IP addresses and CIDR ranges, IPv4 and IPv6, for access lists and bans.
 *
 * One address space: an IPv4 address a.b.c.d and its IPv4-mapped IPv6 form ::ffff:a.b.c.d are the
 * same address, so `10.0.0.0/8` and `::ffff:10.0.0.0/104` are the same range, and an IPv6 range
 * that covers part of ::ffff:0:0/96 (such as `::/0`) covers those IPv4 addresses too.
 *
 * Matching is precomputed: a `CidrSet` holds sorted, merged intervals (IPv4 as plain numbers,
 * IPv6 as BigInt) and answers with a binary search; the IPv4 lookup parses the address without
 * allocating. A `PrefixIndex` maps ranges to values (bans) with one hash lookup per distinct prefix
 * length in use.
 */
import { BastionError } from '@bastion/core';

/** A parsed address: IPv4 (including IPv4-mapped IPv6) as a 32-bit number, IPv6 as a BigInt. */
export type IpAddress = { readonly version: 4; readonly value: number } | { readonly version: 6; readonly value: bigint };

/** A parsed range, in canonical form (IPv4-mapped IPv6 ranges of prefix ≥ 96 become IPv4). */
export type IpRange =
  | { readonly version: 4; readonly network: number; readonly prefix: number }
  | { readonly version: 6; readonly network: bigint; readonly prefix: number };

export class CidrError extends BastionError {
  /** The text that did not parse. */
  readonly entry: string;
  constructor(entry: string, message: string) {
    super('BASTION_ERR_CIDR', message);
    this.name = 'CidrError';
    this.entry = entry;
  }
}

const V6_MAX = (1n << 128n) - 1n;
const MAPPED_BASE = 0xffffn << 32n; // ::ffff:0:0
const MAPPED_LAST = MAPPED_BASE | 0xffffffffn;

/**
 * Parse a dotted-quad IPv4 address to an unsigned 32-bit number, or -1. Strict: four decimal parts
 * 0–255 without leading zeros (`010.0.0.1` is ambiguous: octal to some parsers). No allocation.
 */
export function parseIPv4(s: string, start = 0, end = s.length): number {
  let value = 0;
  let part = -1;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const ch = s.charCodeAt(i);
    if (ch === 46 /* . */) {
      if (part < 0 || dots === 3) return -1;
      value = value * 256 + part;
      part = -1;
      digits = 0;
      dots++;
    } else if (ch >= 48 && ch <= 57) {
      if (digits > 0 && part === 0) return -1; // leading zero
      part = part < 0 ? ch - 48 : part * 10 + (ch - 48);
      if (part > 255) return -1;
      digits++;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || part < 0) return -1;
  return value * 256 + part;
}

/** Parse an IPv6 address (compressed forms, embedded IPv4 tail, `%zone` ignored) to a BigInt, or undefined. */
export function parseIPv6(input: string): bigint | undefined {
  let s = input;
  const zone = s.indexOf('%');
  if (zone !== -1) s = s.slice(0, zone);
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (s.length < 2 || s.length > 45) return undefined;
  const lastColon = s.lastIndexOf(':');
  if (lastColon === -1) return undefined;
  let tail = -1;
  if (s.indexOf('.', lastColon) !== -1) {
    // an embedded IPv4 address takes the last 32 bits: `::ffff:10.0.0.1`, `64:ff9b::1.2.3.4`
    tail = parseIPv4(s, lastColon + 1);
    if (tail < 0) return undefined;
    s = s.slice(0, lastColon + 1);
    if (!s.endsWith('::')) s = s.slice(0, -1);
  }
  const wanted = tail < 0 ? 8 : 6;
  const dbl = s.indexOf('::');
  let head: string[];
  let rest: string[] = [];
  if (dbl === -1) {
    head = s === '' ? [] : s.split(':');
    if (head.length !== wanted) return undefined;
  } else {
    if (s.indexOf('::', dbl + 1) !== -1) return undefined;
    const left = s.slice(0, dbl);
    const right = s.slice(dbl + 2);
    head = left === '' ? [] : left.split(':');
    rest = right === '' ? [] : right.split(':');
    if (head.length + rest.length > wanted - 1) return undefined; // `::` stands for at least one group
  }
  let value = 0n;
  for (const g of head) {
    const v = hexGroup(g);
    if (v < 0) return undefined;
    value = (value << 16n) | BigInt(v);
  }
  if (dbl !== -1) {
    value <<= BigInt(16 * (wanted - head.length - rest.length));
    for (const g of rest) {
      const v = hexGroup(g);
      if (v < 0) return undefined;
      value = (value << 16n) | BigInt(v);
    }
  }
  if (tail >= 0) value = (value << 32n) | BigInt(tail);
  return value;
}

function hexGroup(g: string): number {
  if (g.length === 0 || g.length > 4) return -1;
  let v = 0;
  for (let i = 0; i < g.length; i++) {
    const c = g.charCodeAt(i);
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/** Parse an address (IPv4, IPv6, IPv4-mapped IPv6 → IPv4), or undefined when it is not one. */
export function parseAddress(s: string): IpAddress | undefined {
  const v4 = parseIPv4(s);
  if (v4 >= 0) return { version: 4, value: v4 };
  if (s.indexOf(':') === -1) return undefined;
  const v6 = parseIPv6(s);
  if (v6 === undefined) return undefined;
  if (v6 >= MAPPED_BASE && v6 <= MAPPED_LAST) return { version: 4, value: Number(v6 & 0xffffffffn) };
  return { version: 6, value: v6 };
}

/** `true` for a valid IPv4 or IPv6 address. */
export function isIpAddress(s: string): boolean {
  return parseAddress(s) !== undefined;
}

/**
 * Parse `address` or `address/prefix`. Strict: host bits must be zero (`10.1.0.0/8` is refused,
 * as it is most likely a typo). IPv4-mapped IPv6 ranges with prefix ≥ 96 become IPv4 ranges.
 * Throws CidrError.
 */
export function parseCidr(entry: string): IpRange {
  if (typeof entry !== 'string') throw new CidrError(String(entry), `not an address or CIDR range: ${JSON.stringify(entry)}`);
  const text = entry.trim();
  const slash = text.indexOf('/');
  const addrText = slash === -1 ? text : text.slice(0, slash);
  const addr = parseAddress(addrText);
  if (!addr) throw new CidrError(entry, `not an IP address: "${addrText}"`);
  const writtenV6 = addrText.indexOf(':') !== -1;
  const maxPrefix = writtenV6 ? 128 : 32;
  let prefix = maxPrefix;
  if (slash !== -1) {
    const p = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > maxPrefix) throw new CidrError(entry, `bad prefix length "/${p}" in "${entry}" (0–${maxPrefix})`);
    prefix = Number(p);
  }
  if (writtenV6) {
    const value = addr.version === 4 ? MAPPED_BASE | BigInt(addr.value) : addr.value;
    const hostMask = prefix === 128 ? 0n : (1n << BigInt(128 - prefix)) - 1n;
    if ((value & hostMask) !== 0n) throw new CidrError(entry, `"${entry}" has host bits set; the network is ${formatIPv6(value & ~hostMask & V6_MAX)}/${prefix}`);
    if (prefix >= 96 && value >= MAPPED_BASE && value <= MAPPED_LAST) return { version: 4, network: Number(value & 0xffffffffn), prefix: prefix - 96 };
    return { version: 6, network: value, prefix };
  }
  const v = addr.value as number;
  const hostMask = prefix === 32 ? 0 : 2 ** (32 - prefix) - 1;
  const network = v - (v % (hostMask + 1));
  if (network !== v) throw new CidrError(entry, `"${entry}" has host bits set; the network is ${formatIPv4(network)}/${prefix}`);
  return { version: 4, network, prefix };
}

export function formatIPv4(v: number): string {
  return `${Math.floor(v / 16777216) % 256}.${Math.floor(v / 65536) % 256}.${Math.floor(v / 256) % 256}.${v % 256}`;
}

/** RFC 5952 text: lower case, longest run of zero groups (≥ 2) compressed. */
export function formatIPv6(v: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Canonical text of a range: `10.0.0.0/8`, `2001:db8::/32`; a single address without its prefix. */
export function formatRange(r: IpRange): string {
  if (r.version === 4) return r.prefix === 32 ? formatIPv4(r.network) : `${formatIPv4(r.network)}/${r.prefix}`;
  return r.prefix === 128 ? formatIPv6(r.network) : `${formatIPv6(r.network)}/${r.prefix}`;
}

/** Inclusive bounds of a range in the unified 128-bit space. */
function bounds128(r: IpRange): [bigint, bigint] {
  if (r.version === 4) {
    const lo = MAPPED_BASE | BigInt(r.network);
    return [lo, lo + (1n << BigInt(32 - r.prefix)) - 1n];
  }
  return [r.network, r.network + (1n << BigInt(128 - r.prefix)) - 1n];
}

/** Does `range` contain `addr`? */
export function rangeContains(range: IpRange, addr: IpAddress): boolean {
  const [lo, hi] = bounds128(range);
  const a = addr.version === 4 ? MAPPED_BASE | BigInt(addr.value) : addr.value;
  return a >= lo && a <= hi;
}

function sortMerge4(intervals: Array<[number, number]>): { lo: number[]; hi: number[] } {
  intervals.sort((a, b) => a[0] - b[0]);
  const lo: number[] = [];
  const hi: number[] = [];
  for (const [l, h] of intervals) {
    const last = hi.length - 1;
    if (last >= 0 && l <= (hi[last] as number) + 1) {
      if (h > (hi[last] as number)) hi[last] = h; // overlapping or adjacent: extend
    } else {
      lo.push(l);
      hi.push(h);
    }
  }
  return { lo, hi };
}

function sortMerge6(intervals: Array<[bigint, bigint]>): { lo: bigint[]; hi: bigint[] } {
  intervals.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const lo: bigint[] = [];
  const hi: bigint[] = [];
  for (const [l, h] of intervals) {
    const last = hi.length - 1;
    if (last >= 0 && l <= (hi[last] as bigint) + 1n) {
      if (h > (hi[last] as bigint)) hi[last] = h;
    } else {
      lo.push(l);
      hi.push(h);
    }
  }
  return { lo, hi };
}

/**
 * A set of addresses and ranges, precomputed for fast membership tests. Immutable: build a new one
 * to change it. Throws CidrError (naming the entry) on the first entry that does not parse.
 */
export class CidrSet {
  readonly entries: readonly string[];
  readonly size: number;
  readonly #v4lo: Float64Array;
  readonly #v4hi: Float64Array;
  readonly #v6lo: bigint[];
  readonly #v6hi: bigint[];

  constructor(entries: Iterable<string> = []) {
    const list = [...entries];
    const v4: Array<[number, number]> = [];
    const v6: Array<[bigint, bigint]> = [];
    for (const e of list) {
      const r = parseCidr(e);
      const [lo, hi] = bounds128(r);
      if (r.version === 6) v6.push([lo, hi]);
      // the IPv4 part of any range (IPv4 ranges, and IPv6 ranges overlapping ::ffff:0:0/96)
      const l4 = lo > MAPPED_BASE ? lo : MAPPED_BASE;
      const h4 = hi < MAPPED_LAST ? hi : MAPPED_LAST;
      if (l4 <= h4) v4.push([Number(l4 - MAPPED_BASE), Number(h4 - MAPPED_BASE)]);
    }
    const m4 = sortMerge4(v4);
    const m6 = sortMerge6(v6);
    this.#v4lo = Float64Array.from(m4.lo);
    this.#v4hi = Float64Array.from(m4.hi);
    this.#v6lo = m6.lo;
    this.#v6hi = m6.hi;
    this.entries = Object.freeze(list);
    this.size = list.length;
  }

  /** Membership of an address given as text (IPv4, IPv6 or IPv4-mapped). Unparseable text → false. */
  has(address: string): boolean {
    const v4 = parseIPv4(address);
    if (v4 >= 0) return this.#has4(v4);
    const a = parseAddress(address);
    if (a === undefined) return false;
    return a.version === 4 ? this.#has4(a.value) : this.#has6(a.value);
  }

  /** Membership of a parsed address. */
  hasAddress(a: IpAddress): boolean {
    return a.version === 4 ? this.#has4(a.value) : this.#has6(a.value);
  }

  #has4(v: number): boolean {
    const lo = this.#v4lo;
    let a = 0;
    let b = lo.length - 1;
    while (a <= b) {
      const m = (a + b) >>> 1;
      if ((lo[m] as number) <= v) a = m + 1;
      else b = m - 1;
    }
    return b >= 0 && v <= (this.#v4hi[b] as number);
  }

  #has6(v: bigint): boolean {
    const lo = this.#v6lo;
    let a = 0;
    let b = lo.length - 1;
    while (a <= b) {
      const m = (a + b) >>> 1;
      if ((lo[m] as bigint) <= v) a = m + 1;
      else b = m - 1;
    }
    return b >= 0 && v <= (this.#v6hi[b] as bigint);
  }
}

/**
 * Ranges mapped to values, with incremental add/delete: a lookup costs one Map lookup per distinct
 * prefix length in use (a handful in practice), whatever the number of entries.
 */
export class PrefixIndex<T> {
  readonly #v4 = new Map<number, Map<number, Set<T>>>(); // prefix → network → values
  readonly #v6 = new Map<number, Map<bigint, Set<T>>>();

  add(range: IpRange, value: T): void {
    if (range.version === 4) bucket(this.#v4, range.prefix, range.network).add(value);
    else bucket(this.#v6, range.prefix, range.network).add(value);
  }

  delete(range: IpRange, value: T): void {
    const byPrefix = (range.version === 4 ? this.#v4 : this.#v6) as Map<number, Map<number | bigint, Set<T>>>;
    const nets = byPrefix.get(range.prefix);
    const set = nets?.get(range.network);
    if (!nets || !set) return;
    set.delete(value);
    if (set.size === 0) nets.delete(range.network);
    if (nets.size === 0) byPrefix.delete(range.prefix);
  }

  get empty(): boolean {
    return this.#v4.size === 0 && this.#v6.size === 0;
  }

  /** Every value whose range contains `addr` (IPv6 ranges overlapping ::ffff:0:0/96 included for IPv4). */
  *lookup(addr: IpAddress): IterableIterator<T> {
    if (addr.version === 4) {
      const v = addr.value;
      for (const [prefix, nets] of this.#v4) {
        const size = 2 ** (32 - prefix);
        const set = nets.get(v - (v % size));
        if (set) yield* set;
      }
      if (this.#v6.size === 0) return;
    }
    const v = addr.version === 4 ? MAPPED_BASE | BigInt(addr.value) : addr.value;
    for (const [prefix, nets] of this.#v6) {
      const mask = prefix === 0 ? 0n : (V6_MAX >> BigInt(128 - prefix)) << BigInt(128 - prefix);
      const set = nets.get(v & mask);
      if (set) yield* set;
    }
  }
}

function bucket<K extends number | bigint, T>(byPrefix: Map<number, Map<K, Set<T>>>, prefix: number, network: K): Set<T> {
  let nets = byPrefix.get(prefix);
  if (!nets) byPrefix.set(prefix, (nets = new Map()));
  let set = nets.get(network);
  if (!set) nets.set(network, (set = new Set()));
  return set;
}
