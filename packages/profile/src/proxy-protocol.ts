/**
 * `listeners[].proxyProtocol`: the PROXY protocol (v1 and v2) on a listener behind load balancers.
 * The trusted addresses are checked here, so a typo fails at load with its file and line instead
 * of at start. The rules are those of the access lists (`CidrSet` in @bastion/middleware): host
 * bits zero, prefixes 0–32 / 0–128 without leading zeros, no IPv4 parts with leading zeros.
 */
import { SocketAddress, isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import { show } from './messages.js';
import { duration } from './primitives.js';

export const PROXY_PROTOCOL_DEFAULTS = { required: true, timeout: '5s' } as const;
const MAX_HEADER_TIMEOUT = 60_000;

function ipv4Bits(text: string): bigint {
  return text.split('.').reduce((v, part) => (v << 8n) | BigInt(Number(part)), 0n);
}

/** `text` is a valid IPv6 address without a zone (net.isIPv6 said so). */
function ipv6Bits(text: string): bigint {
  let s = text;
  let tail = 0n;
  const lastColon = s.lastIndexOf(':');
  if (s.indexOf('.', lastColon) !== -1) {
    // an embedded IPv4 address takes the last two groups
    tail = ipv4Bits(s.slice(lastColon + 1));
    s = `${s.slice(0, lastColon)}:0:0`;
  }
  const [left = '', right] = s.split('::');
  const head = left === '' ? [] : left.split(':');
  const rest = right === undefined || right === '' ? [] : right.split(':');
  const groups = right === undefined ? head : [...head, ...Array<string>(8 - head.length - rest.length).fill('0'), ...rest];
  return groups.reduce((v, g) => (v << 16n) | BigInt(parseInt(g, 16)), 0n) | tail;
}

function formatNetwork(bits: bigint, version: 4 | 6): string {
  if (version === 4) return [24n, 16n, 8n, 0n].map((shift) => String((bits >> shift) & 0xffn)).join('.');
  const groups: string[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(((bits >> shift) & 0xffffn).toString(16));
  return new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

/** What is wrong with an address or CIDR range, or undefined when nothing is. */
export function cidrProblem(entry: string): string | undefined {
  const slash = entry.indexOf('/');
  const addr = slash === -1 ? entry : entry.slice(0, slash);
  const version = isIPv4(addr) ? 4 : addr.indexOf('%') === -1 && isIPv6(addr) ? 6 : undefined;
  if (version === undefined) return `expected an IP address or CIDR range, got ${show(entry)}`;
  if (slash === -1) return undefined;
  const max = version === 4 ? 32 : 128;
  const p = entry.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > max) return `bad prefix length "/${p}" in ${show(entry)} (0 to ${max})`;
  const bits = version === 4 ? ipv4Bits(addr) : ipv6Bits(addr);
  const hostMask = (1n << BigInt(max - Number(p))) - 1n;
  if ((bits & hostMask) !== 0n) return `${show(entry)} has host bits set; the network is ${formatNetwork(bits & ~hostMask, version)}/${p}`;
  return undefined;
}

const cidrString = () =>
  z.string().superRefine((value, ctx) => {
    const problem = cidrProblem(value);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: value });
  });

export const proxyProtocolSchema = z.strictObject({
  trusted: z
    .array(cidrString())
    .min(1)
    .describe('Addresses and CIDR ranges (IPv4, IPv6) of the load balancers allowed to send a PROXY header: only these. A header from any other peer closes its connection.'),
  required: z
    .boolean()
    .default(PROXY_PROTOCOL_DEFAULTS.required)
    .describe('A trusted peer must open with a PROXY header; a connection from it without one is closed. false: the header is optional, and a connection without one keeps the peer\'s own address (while migrating a listener behind a balancer).'),
  timeout: duration({ min: 1, max: MAX_HEADER_TIMEOUT })
    .prefault(PROXY_PROTOCOL_DEFAULTS.timeout)
    .describe('Time a new connection has to send the bytes that settle the header (the header itself, or a first byte that is none); then it is closed. At most 1m.'),
});
