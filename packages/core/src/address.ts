import { SocketAddress, isIPv4, isIPv6 } from 'node:net';

/** '::ffff:10.0.0.1' → '10.0.0.1', so IPv4 rules and bans match whatever stack accepted the socket. */
export function normalizeAddress(addr: string | undefined): string {
  if (addr === undefined) return '';
  return addr.startsWith('::ffff:') && addr.indexOf('.') !== -1 ? addr.slice(7) : addr;
}

/**
 * An address written by someone else (a PROXY protocol header) in the one spelling the socket layer
 * reports: IPv6 compressed and lower case (`2001:DB8:0::1` → `2001:db8::1`), IPv4-mapped IPv6
 * unwrapped. Per-address counters and bans key on this text, so one address must have one
 * spelling. Undefined when `text` is not a plain address of `family` (zones, brackets and IPv4
 * parts with leading zeros are refused).
 */
export function canonicalAddress(text: string, family: 4 | 6): string | undefined {
  if (family === 4) return isIPv4(text) ? text : undefined;
  if (text.indexOf('%') !== -1 || !isIPv6(text)) return undefined;
  return normalizeAddress(new SocketAddress({ address: text, family: 'ipv6' }).address);
}
