/**
 * PROXY protocol v1 and v2 (HAProxy, https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt):
 * a load balancer in front of a listener opens each connection with a header naming the client it
 * relays, so the broker can check and report the client's address instead of the balancer's.
 *
 * The header is read from the raw TCP socket before anything else (TLS ClientHello, HTTP upgrade,
 * MQTT CONNECT); the bytes read past it are pushed back (`socket.unshift`) for the next layer.
 * Strict: a header that is not exactly what the specification allows closes the connection.
 */
import type { Socket } from 'node:net';
import { canonicalAddress } from './address.js';
import { BastionError } from './errors.js';

/** v1 is one text line; the specification caps it at 107 bytes, CRLF included. */
export const PROXY_V1_MAX_LENGTH = 107;
/**
 * Largest v2 header accepted, fixed part, addresses and TLVs included. The format allows 65 551
 * bytes; balancers send tens (AWS, GCP, Azure) to a few hundred (HAProxy with SSL TLVs).
 */
export const PROXY_V2_MAX_LENGTH = 4096;
export const PROXY_V2_SIGNATURE: Buffer = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_FIXED = 16;
const PORT = /^(0|[1-9][0-9]{0,4})$/;

export interface ProxyEndpoint {
  readonly address: string;
  readonly port: number;
}

export interface ProxyHeader {
  readonly version: 1 | 2;
  /**
   * 'proxy': a relayed connection. 'local': the proxy's own connection (a health check); its
   * address stays the connection's address.
   */
  readonly command: 'proxy' | 'local';
  /**
   * The client (source) and the address it connected to (destination). Undefined for LOCAL, v1
   * UNKNOWN and v2 AF_UNSPEC / AF_UNIX: the connection's own addresses apply.
   */
  readonly source: ProxyEndpoint | undefined;
  readonly destination: ProxyEndpoint | undefined;
  /** Bytes the header took on the wire. */
  readonly length: number;
}

/**
 * Why a connection was closed while its header was read: 'malformed' (not a valid header),
 * 'untrusted' (a header from a peer that is not a trusted proxy), 'missing' (a trusted proxy that
 * must send one did not), 'timeout' (nothing decisive within the time allowed), 'closed' (the peer
 * went away first; nothing to report).
 */
export type ProxyProblem = 'malformed' | 'untrusted' | 'missing' | 'timeout' | 'closed';

export class ProxyProtocolError extends BastionError {
  readonly problem: ProxyProblem;
  constructor(problem: ProxyProblem, message: string) {
    super('BASTION_ERR_PROXY_PROTOCOL', message);
    this.name = 'ProxyProtocolError';
    this.problem = problem;
  }
}

export type ProxyParse =
  /** The bytes cannot start a PROXY header. */
  | { readonly status: 'none' }
  /** A header has started (or may have); more bytes are needed. */
  | { readonly status: 'partial' }
  | { readonly status: 'complete'; readonly header: ProxyHeader };

const NONE: ProxyParse = Object.freeze({ status: 'none' });
const PARTIAL: ProxyParse = Object.freeze({ status: 'partial' });

/** Whether `buf` starts like a v1 or v2 header: 'partial' while too short to tell. */
export function detectProxyHeader(buf: Buffer): 'v1' | 'v2' | 'partial' | 'none' {
  if (buf.length === 0) return 'partial';
  const sig = buf[0] === 0x50 ? V1_PREFIX : buf[0] === 0x0d ? PROXY_V2_SIGNATURE : undefined;
  if (sig === undefined) return 'none'; // the common case: one byte decides (MQTT 0x10, TLS 0x16, HTTP 'G')
  const n = Math.min(buf.length, sig.length);
  if (buf.compare(sig, 0, n, 0, n) !== 0) return 'none';
  if (n < sig.length) return 'partial';
  return sig === V1_PREFIX ? 'v1' : 'v2';
}

/** Parse a header at the start of `buf`. Throws ProxyProtocolError('malformed'). */
export function parseProxyHeader(buf: Buffer): ProxyParse {
  const kind = detectProxyHeader(buf);
  if (kind === 'none') return NONE;
  if (kind === 'partial') return PARTIAL;
  return kind === 'v1' ? parseV1(buf) : parseV2(buf);
}

function malformed(message: string): ProxyProtocolError {
  return new ProxyProtocolError('malformed', `malformed PROXY header: ${message}`);
}

function parseV1(buf: Buffer): ProxyParse {
  // CRLF must end by byte 107: the CR at index 105 at the latest
  const limit = PROXY_V1_MAX_LENGTH - 1;
  const scan = Math.min(buf.length, limit);
  let cr = -1;
  for (let i = V1_PREFIX.length; i < scan; i++) {
    const c = buf[i] as number;
    if (c === 0x0d) {
      cr = i;
      break;
    }
    if (c < 0x20 || c > 0x7e) throw malformed(`v1: byte 0x${c.toString(16).padStart(2, '0')} at offset ${i} (a v1 header is printable ASCII)`);
  }
  if (cr === -1) {
    if (buf.length >= limit) throw malformed(`v1: no CRLF within ${PROXY_V1_MAX_LENGTH} bytes`);
    return PARTIAL;
  }
  if (cr + 1 >= buf.length) return PARTIAL;
  if (buf[cr + 1] !== 0x0a) throw malformed('v1: CR not followed by LF');
  const length = cr + 2;
  const parts = buf.toString('latin1', 0, cr).split(' ');
  const proto = parts[1];
  if (proto === 'UNKNOWN') {
    // the specification lets the sender put anything after UNKNOWN; the receiver ignores it
    return { status: 'complete', header: { version: 1, command: 'proxy', source: undefined, destination: undefined, length } };
  }
  if (proto !== 'TCP4' && proto !== 'TCP6') throw malformed(`v1: protocol ${JSON.stringify(proto ?? '')} (expected TCP4, TCP6 or UNKNOWN)`);
  if (parts.length !== 6) throw malformed(`v1: expected "PROXY ${proto} <source> <destination> <source port> <destination port>", got ${parts.length - 1} fields`);
  const family = proto === 'TCP4' ? 4 : 6;
  const source = endpoint(parts[2] as string, parts[4] as string, family, 'source');
  const destination = endpoint(parts[3] as string, parts[5] as string, family, 'destination');
  return { status: 'complete', header: { version: 1, command: 'proxy', source, destination, length } };
}

function endpoint(addressText: string, portText: string, family: 4 | 6, what: string): ProxyEndpoint {
  const address = canonicalAddress(addressText, family);
  if (address === undefined) throw malformed(`v1: ${what} address ${JSON.stringify(addressText)} is not an IPv${family} address`);
  if (!PORT.test(portText) || Number(portText) > 65535) throw malformed(`v1: ${what} port ${JSON.stringify(portText)} is not a port (0–65535)`);
  return { address, port: Number(portText) };
}

function parseV2(buf: Buffer): ProxyParse {
  if (buf.length < V2_FIXED) return PARTIAL;
  const verCmd = buf[12] as number;
  if (verCmd >> 4 !== 2) throw malformed(`v2: version ${verCmd >> 4} (expected 2)`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) throw malformed(`v2: command ${cmd} (expected 0 LOCAL or 1 PROXY)`);
  const famProto = buf[13] as number;
  const length = V2_FIXED + buf.readUInt16BE(14);
  if (length > PROXY_V2_MAX_LENGTH) throw malformed(`v2: header of ${length} bytes is longer than the ${PROXY_V2_MAX_LENGTH} accepted`);
  if (buf.length < length) return PARTIAL;
  if (cmd === 0) {
    // LOCAL: the proxy speaks for itself; the specification says to ignore any address block
    return { status: 'complete', header: { version: 2, command: 'local', source: undefined, destination: undefined, length } };
  }
  const family = famProto >> 4;
  const transport = famProto & 0x0f;
  if (family === 0) return { status: 'complete', header: { version: 2, command: 'proxy', source: undefined, destination: undefined, length } };
  if (family > 3) throw malformed(`v2: address family ${family} (expected 0 UNSPEC, 1 INET, 2 INET6 or 3 UNIX)`);
  if (transport !== 1) throw malformed(`v2: transport ${transport} (only 1 STREAM fits a TCP listener)`);
  const addrLen = family === 1 ? 12 : family === 2 ? 36 : 216;
  if (length - V2_FIXED < addrLen) throw malformed(`v2: ${length - V2_FIXED} bytes of addresses, family ${family} needs ${addrLen}`);
  checkTlvs(buf, V2_FIXED + addrLen, length);
  if (family === 3) return { status: 'complete', header: { version: 2, command: 'proxy', source: undefined, destination: undefined, length } };
  const a = V2_FIXED;
  let source: ProxyEndpoint;
  let destination: ProxyEndpoint;
  if (family === 1) {
    source = { address: ipv4(buf, a), port: buf.readUInt16BE(a + 8) };
    destination = { address: ipv4(buf, a + 4), port: buf.readUInt16BE(a + 10) };
  } else {
    source = { address: ipv6(buf, a), port: buf.readUInt16BE(a + 32) };
    destination = { address: ipv6(buf, a + 16), port: buf.readUInt16BE(a + 34) };
  }
  return { status: 'complete', header: { version: 2, command: 'proxy', source, destination, length } };
}

/** TLVs are skipped, but they must tile the rest of the header exactly. */
function checkTlvs(buf: Buffer, start: number, end: number): void {
  let i = start;
  while (i < end) {
    if (i + 3 > end) throw malformed(`v2: truncated TLV at offset ${i}`);
    const next = i + 3 + buf.readUInt16BE(i + 1);
    if (next > end) throw malformed(`v2: TLV of type 0x${(buf[i] as number).toString(16)} at offset ${i} runs past the header`);
    i = next;
  }
}

function ipv4(buf: Buffer, at: number): string {
  return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
}

function ipv6(buf: Buffer, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(buf.readUInt16BE(at + i).toString(16));
  return canonicalAddress(groups.join(':'), 6) as string; // eight hex groups are always an address
}

/** What a listener expects of a connection's first bytes. */
export type ProxyExpectation =
  /** A trusted proxy that must send a header. */
  | 'required'
  /** A trusted proxy that may send one. */
  | 'optional'
  /** Any other peer: a header from it is refused, anything else passes untouched. */
  | 'refused';

/**
 * Read the PROXY header from a raw socket that nothing else reads yet, then call `done` once:
 * with the header (undefined when there was none and none was required) and the bytes after it
 * pushed back onto the socket, or with an error. The caller closes the socket on error. Reads
 * only what decides: one byte settles a peer that sends no header.
 */
export function readProxyHeader(
  socket: Socket,
  expect: ProxyExpectation,
  timeout: number,
  done: (error: ProxyProtocolError | undefined, header: ProxyHeader | undefined) => void,
): void {
  let buf: Buffer | undefined;
  let finished = false;
  const finish = (error: ProxyProtocolError | undefined, header?: ProxyHeader, rest?: Buffer) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.off('readable', onReadable);
    socket.off('end', onEnd);
    socket.off('close', onEnd);
    socket.off('error', onError);
    if (rest !== undefined && rest.length > 0) socket.unshift(rest);
    done(error, header);
  };
  const decide = (b: Buffer) => {
    if (expect === 'refused') {
      const kind = detectProxyHeader(b);
      if (kind === 'partial') return;
      if (kind === 'none') return finish(undefined, undefined, b);
      return finish(new ProxyProtocolError('untrusted', `PROXY ${kind} header from a peer that is not a trusted proxy`));
    }
    let r: ProxyParse;
    try {
      r = parseProxyHeader(b);
    } catch (err) {
      return finish(err as ProxyProtocolError);
    }
    if (r.status === 'partial') return;
    if (r.status === 'none') {
      if (expect === 'required') return finish(new ProxyProtocolError('missing', 'a trusted proxy connected without a PROXY header, and this listener requires one'));
      return finish(undefined, undefined, b);
    }
    finish(undefined, r.header, b.subarray(r.header.length));
  };
  const onReadable = () => {
    let chunk: Buffer | null;
    while (!finished && (chunk = socket.read() as Buffer | null) !== null) {
      buf = buf === undefined ? chunk : Buffer.concat([buf, chunk]);
      decide(buf);
    }
  };
  const onEnd = () => {
    // a peer that went away: only a trusted proxy that stopped inside a header is worth reporting
    if (buf !== undefined && expect !== 'refused' && detectProxyHeader(buf) !== 'none') finish(malformed(`truncated: the connection ended after ${buf.length} bytes of the header`));
    else finish(new ProxyProtocolError('closed', 'the connection closed before its first bytes'));
  };
  const onError = () => finish(new ProxyProtocolError('closed', 'the connection failed before its first bytes'));
  const timer = setTimeout(() => {
    const what = buf === undefined ? 'no bytes' : `${buf.length} bytes, not a complete PROXY header,`;
    finish(new ProxyProtocolError('timeout', `${what} within ${timeout} ms`));
  }, timeout);
  socket.on('readable', onReadable);
  socket.on('end', onEnd);
  socket.on('close', onEnd);
  socket.on('error', onError);
}
