/**
 * PROXY protocol v1/v2 on listeners behind load balancers: the parser, then whole brokers over real
 * sockets. 127.0.0.1 plays the trusted load balancer; 127.0.0.2 (a second loopback address) plays
 * a client that is not one. The header names documentation addresses (192.0.2.0/24, 2001:db8::/32).
 */
import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import { readFile } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { WebSocket, createWebSocketStream } from 'ws';
import { pino } from 'pino';
import {
  ProxyProtocolError,
  PROXY_V2_SIGNATURE,
  detectProxyHeader,
  parseProxyHeader,
  type ProxyHeader,
} from '@bastion/core';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import { CidrSet, parseIPv6 } from '@bastion/middleware';
import { ProfileError, parseProfile, resolveProfile, type ProfileInput } from '@bastion/profile';
import { isRefusal, waitFor, type Refusal } from './support/mqtt.js';
import { connectPacket, firstData, rawSocket, socketClosed } from './support/raw-mqtt.js';
import { makeTestPki, type TestPki } from './support/pki.js';

const UNTRUSTED = '127.0.0.2';
const silent = pino({ level: 'silent' });

// ---- headers, as a load balancer writes them --------------------------------------------------

function v1(src: string, dst: string, sport: number, dport: number): Buffer {
  return Buffer.from(`PROXY ${src.includes(':') ? 'TCP6' : 'TCP4'} ${src} ${dst} ${sport} ${dport}\r\n`, 'latin1');
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function ipBytes(addr: string): Buffer {
  if (!addr.includes(':')) return Buffer.from(addr.split('.').map(Number));
  return Buffer.from(parseIPv6(addr)!.toString(16).padStart(32, '0'), 'hex');
}

interface V2 {
  version?: number;
  command?: number; // 0 LOCAL, 1 PROXY
  family?: number; // 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX
  transport?: number; // 1 STREAM
  src?: [string, number];
  dst?: [string, number];
  addressBlock?: Buffer;
  tlvs?: Buffer;
}

function v2(o: V2 = {}): Buffer {
  const family = o.family ?? (o.src?.[0].includes(':') ? 2 : 1);
  let addr = o.addressBlock;
  if (addr === undefined) {
    if (family === 1 || family === 2) {
      const [src, sport] = o.src ?? (family === 1 ? ['192.0.2.10', 40000] : ['2001:db8::10', 40000]);
      const [dst, dport] = o.dst ?? (family === 1 ? ['192.0.2.1', 1883] : ['2001:db8::1', 1883]);
      addr = Buffer.concat([ipBytes(src), ipBytes(dst), u16(sport), u16(dport)]);
    } else addr = Buffer.alloc(family === 3 ? 216 : 0);
  }
  const body = Buffer.concat([addr, o.tlvs ?? Buffer.alloc(0)]);
  const transport = o.transport ?? (family === 0 ? 0 : 1);
  return Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([((o.version ?? 2) << 4) | (o.command ?? 1), (family << 4) | transport]), u16(body.length), body]);
}

const tlv = (type: number, value: Buffer) => Buffer.concat([Buffer.from([type]), u16(value.length), value]);

function parsed(buf: Buffer): ProxyHeader {
  const r = parseProxyHeader(buf);
  if (r.status !== 'complete') throw new Error(`expected a complete header, got ${r.status}`);
  return r.header;
}

function malformed(buf: Buffer): string {
  try {
    parseProxyHeader(buf);
  } catch (err) {
    expect(err).toBeInstanceOf(ProxyProtocolError);
    expect(err).toMatchObject({ code: 'BASTION_ERR_PROXY_PROTOCOL', problem: 'malformed' });
    return (err as Error).message;
  }
  throw new Error(`expected ${JSON.stringify(buf.toString('latin1'))} to be refused`);
}

// ---- the parser -------------------------------------------------------------------------------

describe('PROXY header parser', () => {
  it('v1 TCP4 and TCP6: client and destination, canonical addresses, the bytes after it untouched', () => {
    const head = v1('192.0.2.10', '198.51.100.1', 56324, 1883);
    const h = parsed(Buffer.concat([head, Buffer.from([0x10, 0x0c])]));
    expect(h).toEqual({ version: 1, command: 'proxy', source: { address: '192.0.2.10', port: 56324 }, destination: { address: '198.51.100.1', port: 1883 }, length: head.length });
    // one address, one spelling: per-address counters and bans key on the text
    expect(parsed(Buffer.from('PROXY TCP6 2001:DB8:0:0::10 2001:db8::1 0 65535\r\n')).source).toEqual({ address: '2001:db8::10', port: 0 });
    expect(parsed(Buffer.from('PROXY TCP6 ::ffff:192.0.2.7 ::1 1 2\r\n')).source?.address).toBe('192.0.2.7');
  });

  it('v1 UNKNOWN keeps the connection\'s own address, whatever follows it', () => {
    expect(parsed(Buffer.from('PROXY UNKNOWN\r\n'))).toEqual({ version: 1, command: 'proxy', source: undefined, destination: undefined, length: 15 });
    expect(parsed(Buffer.from('PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n')).source).toBeUndefined();
  });

  it('v1: at most 107 bytes, CRLF included', () => {
    const at = (n: number) => Buffer.from(`PROXY UNKNOWN ${'x'.repeat(n - 16)}\r\n`);
    expect(parsed(at(107)).length).toBe(107);
    expect(malformed(at(108))).toMatch(/no CRLF within 107 bytes/);
    // refused as soon as 106 bytes came without a CR, without waiting for more
    expect(malformed(Buffer.from(`PROXY TCP4 ${'1'.repeat(100)}`))).toMatch(/no CRLF within 107 bytes/);
  });

  it('v1: anything but the exact grammar is malformed', () => {
    const bad: Array<[string, RegExp]> = [
      ['PROXY TCP4  192.0.2.10 192.0.2.1 1 2\r\n', /6 fields|not an IPv4 address/],
      ['PROXY TCP4 192.0.2.10 192.0.2.1 1\r\n', /got 4 fields/],
      ['PROXY TCP4 192.0.2.10 192.0.2.1 1 2 3\r\n', /got 6 fields/],
      ['PROXY TCP5 192.0.2.10 192.0.2.1 1 2\r\n', /protocol "TCP5"/],
      ['PROXY TCP4 192.0.2.256 192.0.2.1 1 2\r\n', /source address "192.0.2.256"/],
      ['PROXY TCP4 010.0.2.1 192.0.2.1 1 2\r\n', /source address "010.0.2.1"/],
      ['PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n', /not an IPv4 address/],
      ['PROXY TCP6 192.0.2.1 2001:db8::1 1 2\r\n', /not an IPv6 address/],
      ['PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n', /not an IPv6 address/],
      ['PROXY TCP4 192.0.2.10 192.0.2.1 65536 2\r\n', /source port "65536"/],
      ['PROXY TCP4 192.0.2.10 192.0.2.1 01 2\r\n', /source port "01"/],
      ['PROXY TCP4 192.0.2.10 192.0.2.1 1 -2\r\n', /destination port "-2"/],
      ['PROXY TCP4 192.0.2.10 192.0.2.1 1 2\rX', /CR not followed by LF/],
      ['PROXY TCP4 192.0.2.10\n192.0.2.1 1 2\r\n', /byte 0x0a/],
      ['PROXY TCP4 192.0.2.10 192.0.2.1 1 2\u00ff\r\n', /byte 0xff/],
    ];
    for (const [text, why] of bad) expect(malformed(Buffer.from(text, 'latin1')), text).toMatch(why);
  });

  it('v2 IPv4 and IPv6, TLVs skipped; LOCAL, AF_UNSPEC and AF_UNIX keep the connection\'s address', () => {
    const tlvs = Buffer.concat([tlv(0x05, Buffer.from('abcd')), tlv(0x04, Buffer.alloc(3))]);
    const four = v2({ src: ['192.0.2.10', 40000], dst: ['192.0.2.1', 8883], tlvs });
    expect(parsed(Buffer.concat([four, Buffer.from([0x16, 0x03])]))).toEqual({
      version: 2,
      command: 'proxy',
      source: { address: '192.0.2.10', port: 40000 },
      destination: { address: '192.0.2.1', port: 8883 },
      length: 16 + 12 + tlvs.length,
    });
    const six = parsed(v2({ src: ['2001:db8:0:0:1::10', 65535], dst: ['::1', 1] }));
    expect(six).toMatchObject({ version: 2, source: { address: '2001:db8::1:0:0:10', port: 65535 }, destination: { address: '::1', port: 1 }, length: 16 + 36 });
    // IPv4-mapped in an INET6 block is the IPv4 client
    expect(parsed(v2({ src: ['::ffff:192.0.2.9', 5], dst: ['::1', 1] })).source?.address).toBe('192.0.2.9');
    // LOCAL: the balancer's own connection (a health check); its address block is ignored
    expect(parsed(v2({ command: 0, src: ['192.0.2.10', 1] }))).toMatchObject({ command: 'local', source: undefined });
    expect(parsed(v2({ command: 0, family: 0 }))).toEqual({ version: 2, command: 'local', source: undefined, destination: undefined, length: 16 });
    expect(parsed(v2({ family: 0 }))).toMatchObject({ command: 'proxy', source: undefined });
    expect(parsed(v2({ family: 3 }))).toMatchObject({ command: 'proxy', source: undefined, length: 16 + 216 });
  });

  it('v2: wrong version, command, family or transport, short address blocks, broken TLVs and huge lengths are malformed', () => {
    expect(malformed(v2({ version: 1 }))).toMatch(/version 1/);
    expect(malformed(v2({ command: 2 }))).toMatch(/command 2/);
    expect(malformed(v2({ family: 4, addressBlock: Buffer.alloc(12) }))).toMatch(/address family 4/);
    expect(malformed(v2({ transport: 2 }))).toMatch(/transport 2/);
    expect(malformed(v2({ transport: 0 }))).toMatch(/transport 0/);
    expect(malformed(v2({ family: 2, addressBlock: Buffer.alloc(12) }))).toMatch(/12 bytes of addresses, family 2 needs 36/);
    expect(malformed(v2({ tlvs: Buffer.from([0x05, 0x00, 0x09, 0x61]) }))).toMatch(/runs past the header/);
    expect(malformed(v2({ tlvs: Buffer.from([0x05, 0x00]) }))).toMatch(/truncated TLV/);
    // a length beyond the bound is refused from the fixed 16 bytes, before the rest arrives
    const huge = Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x21, 0x11]), u16(65535 - 16)]);
    expect(malformed(huge)).toMatch(/longer than the 4096 accepted/);
  });

  it('tells truncated headers (partial) from bytes that are no header at all (none), from the first byte on', () => {
    const four = v2();
    for (let n = 0; n < four.length; n++) expect(parseProxyHeader(four.subarray(0, n)).status, `v2 cut at ${n}`).toBe('partial');
    const one = v1('192.0.2.10', '192.0.2.1', 1, 2);
    for (let n = 0; n < one.length; n++) expect(parseProxyHeader(one.subarray(0, n)).status, `v1 cut at ${n}`).toBe('partial');
    // MQTT CONNECT, a TLS ClientHello, an HTTP upgrade, HTTP methods starting with P
    for (const text of ['\x10\x0c\x00\x04MQTT', '\x16\x03\x01', 'GET /mqtt HTTP/1.1', 'POST / HTTP/1.1', 'PUT /', 'PROXy TCP4', '\r\n\r\n\x00\r\nQUIX']) {
      expect(parseProxyHeader(Buffer.from(text, 'latin1')).status, JSON.stringify(text)).toBe('none');
    }
    expect(detectProxyHeader(Buffer.from('PROXY '))).toBe('v1');
    expect(detectProxyHeader(PROXY_V2_SIGNATURE)).toBe('v2');
    expect(detectProxyHeader(Buffer.from('PROX'))).toBe('partial');
  });
});

// ---- brokers behind a load balancer -----------------------------------------------------------

let pki: TestPki;
let broker: Bastion | undefined;
const clients: MqttClient[] = [];
const sockets: Array<net.Socket | Duplex> = [];

beforeAll(() => {
  pki = makeTestPki();
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  for (const s of sockets.splice(0)) s.destroy();
  await broker?.close();
  broker = undefined;
});

const serverTls = { cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem', clientCertificate: 'none' as const };

async function start(profile: Omit<ProfileInput, 'version'>) {
  broker = await createBroker({ profile: { version: 1, authentication: { anonymous: true }, ...profile } as ProfileInput, baseDir: pki.dir, logger: silent });
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  const port = (name: string) => broker!.addresses()[name]!.port;
  return { port, events };
}

/** A TCP connection to the broker that opens with `header` (undefined: none), from `localAddress`. */
function tcp(port: number, header: Buffer | undefined, localAddress = '127.0.0.1'): net.Socket {
  const s = net.connect({ host: '127.0.0.1', port, localAddress });
  if (header) s.write(header);
  sockets.push(s);
  return s;
}

/** TLS over such a connection: the header goes first, in clear, as a TCP balancer sends it. */
function tlsOver(port: number, header: Buffer | undefined, extra: tls.ConnectionOptions = {}, localAddress?: string): tls.TLSSocket {
  const s = tls.connect({ socket: tcp(port, header, localAddress), servername: 'localhost', ca: pki.ca.certPem, ...extra });
  s.on('error', () => {});
  sockets.push(s);
  return s;
}

/** MQTT over WebSocket over such a connection (the header before the HTTP upgrade). */
function wsOver(port: number, header: Buffer | undefined, secure: boolean): Duplex {
  const url = `${secure ? 'wss' : 'ws'}://localhost:${port}/mqtt`;
  const ws = new WebSocket(url, 'mqtt', { createConnection: () => (secure ? tlsOver(port, header) : tcp(port, header)) });
  const stream = createWebSocketStream(ws);
  stream.on('error', () => {});
  sockets.push(stream);
  return stream;
}

/** An mqtt.js session over `stream`: the client, or how it was refused. */
function session(build: () => Duplex, opts: IClientOptions): Promise<MqttClient | Refusal> {
  return new Promise((resolve) => {
    const client = new mqtt.MqttClient(build, { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...opts });
    let settled = false;
    const settle = (v: MqttClient | Refusal) => {
      if (settled) return;
      settled = true;
      if (isRefusal(v)) client.end(true);
      else clients.push(client);
      resolve(v);
    };
    client.once('connect', () => settle(client));
    client.once('error', (err: Error & { code?: number }) => settle({ refused: true, code: typeof err.code === 'number' ? err.code : undefined, message: err.message }));
    client.once('close', () => settle({ refused: true, code: undefined, message: 'connection closed' }));
  });
}

async function connected(build: () => Duplex, clientId: string): Promise<MqttClient> {
  const c = await session(build, { clientId });
  if (isRefusal(c)) throw new Error(`${clientId} was refused: ${c.message}`);
  return c;
}

const refusedBy = (events: SecurityEvent[], problem: string) =>
  events.filter((e) => e.type === 'connection.refused' && (e.detail as { proxyProtocol?: string } | undefined)?.proxyProtocol === problem);

describe('mqtt listener behind a load balancer', () => {
  const listener = (proxyProtocol: Record<string, unknown> = { trusted: ['127.0.0.1'] }) => ({ name: 'lb', protocol: 'mqtt' as const, port: 0, proxyProtocol });

  it('v1: the client address from the header is the one access lists, bans, events and client listings see', async () => {
    const { port, events } = await start({
      listeners: [listener()],
      accessLists: { addresses: { deny: ['192.0.2.66'] } },
      bans: { initial: [{ ip: '192.0.2.77', reason: 'test' }] },
    });
    const p = port('lb');
    const ok = await connected(() => tcp(p, v1('192.0.2.10', '192.0.2.1', 40001, 1883)), 'behind-lb');
    await waitFor(() => broker!.client('behind-lb') !== undefined);
    expect(broker!.client('behind-lb')).toMatchObject({ remoteAddress: '192.0.2.10', remotePort: 40001, proxy: { address: '127.0.0.1', port: expect.any(Number) } });
    await ok.subscribeAsync('t');

    // the same balancer relaying a denied and a banned client: both refused by their own address
    const denied = await session(() => tcp(p, v1('192.0.2.66', '192.0.2.1', 40002, 1883)), { clientId: 'denied' });
    const banned = await session(() => tcp(p, v1('192.0.2.77', '192.0.2.1', 40003, 1883)), { clientId: 'banned' });
    expect(isRefusal(denied)).toBe(true);
    expect(isRefusal(banned)).toBe(true);
    await waitFor(() => events.filter((e) => e.type === 'connection.refused').length >= 2);
    const refusals = events.filter((e) => e.type === 'connection.refused');
    expect(refusals).toEqual(
      expect.arrayContaining([
        // address lists and bans are checked at accept, on the address the PROXY header gave
        expect.objectContaining({ source: 'core', reason: 'not-authorized', remoteAddress: '192.0.2.66', detail: expect.objectContaining({ limit: 'addresses.deny' }) }),
        expect.objectContaining({ source: 'core', reason: 'banned', remoteAddress: '192.0.2.77', detail: expect.objectContaining({ limit: 'banned' }) }),
      ]),
    );
    expect(events.some((e) => e.type === 'client.connected' && e.clientId === 'behind-lb' && e.remoteAddress === '192.0.2.10')).toBe(true);
  });

  it('v2: the accept-time gate counts connections per client address from the header, not per balancer', async () => {
    const { port, events } = await start({ listeners: [listener()], rateLimits: { concurrent: { perIp: 1 } } });
    const p = port('lb');
    const header = (src: string, sport: number) => v2({ src: [src, sport], dst: ['2001:db8::1', 1883] });
    // three clients through one balancer: the balancer's own address would have hit the cap at the second
    await connected(() => tcp(p, header('2001:db8::10', 1)), 'a');
    await connected(() => tcp(p, header('2001:DB8::11', 2)), 'b');
    await connected(() => tcp(p, v2({ src: ['192.0.2.12', 3] })), 'c');
    expect(broker!.client('b')?.remoteAddress).toBe('2001:db8::11');
    expect(broker!.openConnections('2001:db8::10')).toBe(1);
    expect(broker!.openConnections('127.0.0.1')).toBe(0);
    // a second connection of the same client is over its cap
    const again = await session(() => tcp(p, header('2001:db8::10', 4)), { clientId: 'a2' });
    expect(isRefusal(again)).toBe(true);
    await waitFor(() => events.some((e) => e.type === 'rate.limited'));
    expect(events.find((e) => e.type === 'rate.limited')).toMatchObject({ remoteAddress: '2001:db8::10', listener: 'lb' });
  });

  it('a header split over many segments, or sent with CONNECT in one segment, works; a LOCAL header keeps the balancer\'s address', async () => {
    const { port } = await start({ listeners: [listener()] });
    const p = port('lb');
    const slow = await rawSocket(p);
    sockets.push(slow);
    const header = v2({ src: ['192.0.2.20', 20], tlvs: tlv(0x05, Buffer.from('id')) });
    for (const byte of header) {
      slow.write(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    slow.write(connectPacket({ clientId: 'slow' }));
    expect([...(await firstData(slow)).subarray(0, 4)]).toEqual([0x20, 0x02, 0x00, 0x00]);
    await waitFor(() => broker!.client('slow') !== undefined);
    expect(broker!.client('slow')?.remoteAddress).toBe('192.0.2.20');

    const fast = await rawSocket(p);
    sockets.push(fast);
    fast.write(Buffer.concat([v1('192.0.2.21', '192.0.2.1', 21, 1883), connectPacket({ clientId: 'fast' })]));
    expect([...(await firstData(fast)).subarray(0, 4)]).toEqual([0x20, 0x02, 0x00, 0x00]);
    await waitFor(() => broker!.client('fast') !== undefined);
    expect(broker!.client('fast')?.remoteAddress).toBe('192.0.2.21');

    await connected(() => tcp(p, v2({ command: 0 })), 'health');
    await waitFor(() => broker!.client('health') !== undefined);
    expect(broker!.client('health')).toMatchObject({ remoteAddress: '127.0.0.1', proxy: undefined });
  });

  it('closes a connection from a peer that is not a trusted proxy when it sends a header; without one it is a client like any other', async () => {
    const { port, events } = await start({ listeners: [listener()] });
    const p = port('lb');
    const spoof = await session(() => tcp(p, v1('192.0.2.10', '192.0.2.1', 1, 2), UNTRUSTED), { clientId: 'spoof' });
    expect(isRefusal(spoof)).toBe(true);
    const spoof2 = await session(() => tcp(p, v2(), UNTRUSTED), { clientId: 'spoof2' });
    expect(isRefusal(spoof2)).toBe(true);
    await waitFor(() => refusedBy(events, 'untrusted').length === 2);
    expect(refusedBy(events, 'untrusted')[0]).toMatchObject({ control: 'PR.SS-4', source: 'proxy-protocol', reason: 'not-authorized', remoteAddress: UNTRUSTED, listener: 'lb' });
    expect(broker!.client('spoof')).toBeUndefined();

    await connected(() => tcp(p, undefined, UNTRUSTED), 'direct');
    await waitFor(() => broker!.client('direct') !== undefined);
    expect(broker!.client('direct')).toMatchObject({ remoteAddress: UNTRUSTED, proxy: undefined });
  });

  it('closes a trusted peer\'s connection without a header (required), with a malformed one, or silent past the timeout', async () => {
    const { port, events } = await start({ listeners: [listener({ trusted: ['127.0.0.0/8'], timeout: '300ms' })] });
    const p = port('lb');
    const plain = await session(() => tcp(p, undefined), { clientId: 'no-header' });
    expect(isRefusal(plain)).toBe(true);
    await waitFor(() => refusedBy(events, 'missing').length === 1);
    expect(refusedBy(events, 'missing')[0]).toMatchObject({ remoteAddress: '127.0.0.1' });

    const bad = await rawSocket(p);
    sockets.push(bad);
    bad.write('PROXY TCP4 192.0.2.300 192.0.2.1 1 2\r\n');
    await socketClosed(bad);
    await waitFor(() => refusedBy(events, 'malformed').length === 1);
    expect(refusedBy(events, 'malformed')[0]!.message).toMatch(/source address "192\.0\.2\.300"/);

    // 127.0.0.2 is inside the trusted range here: a trusted peer that sends nothing
    const silentPeer = await rawSocket(p, UNTRUSTED);
    sockets.push(silentPeer);
    await socketClosed(silentPeer);
    await waitFor(() => refusedBy(events, 'timeout').length === 1);
    expect(refusedBy(events, 'timeout')[0]).toMatchObject({ remoteAddress: UNTRUSTED });
    expect([...broker!.clients()].length).toBe(0);
  });

  it('closing the broker ends connections still inside their header', async () => {
    const { port } = await start({ listeners: [listener({ trusted: ['127.0.0.1'], timeout: '1m' })] });
    const s = await rawSocket(port('lb'));
    sockets.push(s);
    s.write('PROXY TCP4 192.0.2.');
    await new Promise((r) => setTimeout(r, 50)); // let the broker accept it
    const closing = broker!.close();
    broker = undefined;
    await socketClosed(s); // long before the header timeout
    await closing;
  });

  it('required: false lets a trusted peer connect without a header, under its own address', async () => {
    const { port } = await start({ listeners: [listener({ trusted: ['127.0.0.1'], required: false })] });
    const p = port('lb');
    await connected(() => tcp(p, undefined), 'own');
    await connected(() => tcp(p, v1('192.0.2.30', '192.0.2.1', 30, 1883)), 'relayed');
    await waitFor(() => [...broker!.clients()].length === 2);
    expect(broker!.client('own')).toMatchObject({ remoteAddress: '127.0.0.1', proxy: undefined });
    expect(broker!.client('relayed')).toMatchObject({ remoteAddress: '192.0.2.30', proxy: { address: '127.0.0.1' } });
  });
});

describe('TLS and WebSocket listeners behind a load balancer', () => {
  it('mqtts: a v2 header before the TLS ClientHello; the handshake and MQTT run as usual', async () => {
    const { port, events } = await start({
      listeners: [{ name: 'tls', protocol: 'mqtts', port: 0, tls: serverTls, proxyProtocol: { trusted: ['127.0.0.1'] } }],
      accessLists: { addresses: { deny: ['2001:db8::66'] } },
    });
    const p = port('tls');
    const c = await connected(() => tlsOver(p, v2({ src: ['2001:db8::40', 443] })), 'tls-client');
    await waitFor(() => broker!.client('tls-client') !== undefined);
    expect(broker!.client('tls-client')).toMatchObject({ remoteAddress: '2001:db8::40', remotePort: 443, transport: 'mqtts', tls: { protocol: expect.stringMatching(/^TLSv1\.[23]$/) } });
    await c.publishAsync('t', 'x', { qos: 1 });
    const denied = await session(() => tlsOver(p, v2({ src: ['2001:db8::66', 443] })), { clientId: 'tls-denied' });
    expect(isRefusal(denied)).toBe(true);
    await waitFor(() => events.some((e) => e.type === 'connection.refused' && e.remoteAddress === '2001:db8::66'));
    // an untrusted peer's header is refused before TLS
    const spoof = await session(() => tlsOver(p, v2({ src: ['192.0.2.1', 1] }), {}, UNTRUSTED), { clientId: 'tls-spoof' });
    expect(isRefusal(spoof)).toBe(true);
  });

  it('mqtts: a failed handshake after the header is reported under the client\'s address', async () => {
    const { port, events } = await start({
      listeners: [{ name: 'tls', protocol: 'mqtts', port: 0, tls: { ...serverTls, clientCertificate: 'required' }, proxyProtocol: { trusted: ['127.0.0.1'] } }],
      authentication: { anonymous: false, certificates: {} },
    });
    const p = port('tls');
    const noCert = await session(() => tlsOver(p, v1('192.0.2.50', '192.0.2.1', 50, 8883)), { clientId: 'no-cert' });
    expect(isRefusal(noCert)).toBe(true);
    await waitFor(() => events.some((e) => e.type === 'connection.refused' && e.reason === 'certificate-rejected'));
    expect(events.find((e) => e.reason === 'certificate-rejected')).toMatchObject({ remoteAddress: '192.0.2.50', listener: 'tls' });
    const device = pki.client('device-1');
    await connected(() => tlsOver(p, v1('192.0.2.51', '192.0.2.1', 51, 8883), { cert: device.certPem, key: device.keyPem }), 'device-1');
    await waitFor(() => broker!.client('device-1') !== undefined);
    expect(broker!.client('device-1')).toMatchObject({ remoteAddress: '192.0.2.51', username: 'device-1' });
  });

  for (const secure of [false, true]) {
    const protocol = secure ? 'wss' : 'ws';
    it(`${protocol}: the header before the HTTP upgrade; the client address reaches the broker`, async () => {
      const { port, events } = await start({
        listeners: [{ name: protocol, protocol, port: 0, ...(secure ? { tls: serverTls } : {}), proxyProtocol: { trusted: ['127.0.0.1'] } }],
        accessLists: { addresses: { deny: ['192.0.2.66'] } },
      });
      const p = port(protocol);
      const header = secure ? v2({ src: ['192.0.2.60', 60] }) : v1('192.0.2.60', '192.0.2.1', 60, 80);
      const c = await connected(() => wsOver(p, header, secure), `${protocol}-client`);
      await waitFor(() => broker!.client(`${protocol}-client`) !== undefined);
      expect(broker!.client(`${protocol}-client`)).toMatchObject({ remoteAddress: '192.0.2.60', remotePort: 60, transport: protocol, proxy: { address: '127.0.0.1' } });
      await c.subscribeAsync('t');
      const denied = await session(() => wsOver(p, secure ? v2({ src: ['192.0.2.66', 66] }) : v1('192.0.2.66', '192.0.2.1', 66, 80), secure), { clientId: `${protocol}-denied` });
      expect(isRefusal(denied)).toBe(true);
      await waitFor(() => events.some((e) => e.type === 'connection.refused' && e.remoteAddress === '192.0.2.66'));
      // a trusted peer without the header is closed before its upgrade is read
      const bare = await session(() => wsOver(p, undefined, secure), { clientId: `${protocol}-bare` });
      expect(isRefusal(bare)).toBe(true);
      await waitFor(() => refusedBy(events, 'missing').length === 1);
    });
  }
});

// ---- the profile ------------------------------------------------------------------------------

describe('listeners[].proxyProtocol in the profile', () => {
  it('defaults: required, 5s; trusted addresses are validated at load with file, line and key', () => {
    const p = resolveProfile({ version: 1, listeners: [{ protocol: 'mqtt', port: 1883, proxyProtocol: { trusted: ['10.0.0.0/8', '::1'] } }] });
    expect(p.listeners[0]!.proxyProtocol).toEqual({ trusted: ['10.0.0.0/8', '::1'], required: true, timeout: 5000 });
    expect(resolveProfile({ version: 1, listeners: [{ protocol: 'mqtt', port: 1883 }] }).listeners[0]).not.toHaveProperty('proxyProtocol');

    const text = [
      'version: 1',
      'listeners:',
      '  - protocol: mqtt',
      '    port: 1883',
      '    proxyProtocol:',
      '      trusted:',
      '        - 10.0.0.0/8',
      '        - 10.1.0.0/8',
      '        - lb.example.net',
      '        - 2001:db8::/129',
      '        - 2001:db8::1/32',
      '      timeout: 2m',
      '',
    ].join('\n');
    let err: unknown;
    try {
      parseProfile(text, { file: 'site.yaml', baseDir: '/' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ProfileError);
    expect((err as ProfileError).issues.map((i) => `${i.file}:${i.line} ${i.path}: ${i.message}`)).toEqual([
      'site.yaml:8 listeners[0].proxyProtocol.trusted[1]: "10.1.0.0/8" has host bits set; the network is 10.0.0.0/8',
      'site.yaml:9 listeners[0].proxyProtocol.trusted[2]: expected an IP address or CIDR range, got "lb.example.net"',
      'site.yaml:10 listeners[0].proxyProtocol.trusted[3]: bad prefix length "/129" in "2001:db8::/129" (0 to 128)',
      'site.yaml:11 listeners[0].proxyProtocol.trusted[4]: "2001:db8::1/32" has host bits set; the network is 2001:db8::/32',
      'site.yaml:12 listeners[0].proxyProtocol.timeout: expected a duration from 1ms to 1m, got "2m"',
    ]);
  });

  it('accepts exactly the entries the access lists accept', () => {
    const entries = [
      '10.0.0.0/8', '192.0.2.1', '0.0.0.0/0', '::/0', '::1', '2001:db8::/32', '::ffff:10.0.0.0/104', '::ffff:10.0.0.1',
      '10.0.0.1/8', '10.0.0.0/33', '10.0.0.0/08', '010.0.0.1', '2001:db8::1/32', '2001:db8::/129', 'lb', '', '10.0.0.0/', '1.2.3.4/-1', '::ffff:10.0.0.1/104',
    ];
    for (const entry of entries) {
      let byAccessLists = true;
      try {
        new CidrSet([entry]);
      } catch {
        byAccessLists = false;
      }
      let byProfile = true;
      try {
        resolveProfile({ version: 1, listeners: [{ protocol: 'mqtt', port: 1883, proxyProtocol: { trusted: [entry] } }] });
      } catch {
        byProfile = false;
      }
      expect(byProfile, entry).toBe(byAccessLists);
    }
  });

  it('the example in docs/proxy-protocol.md loads and means what the page says', async () => {
    const page = await readFile(new URL('../docs/proxy-protocol.md', import.meta.url), 'utf8');
    const yaml = /```yaml\n([\s\S]*?)```/.exec(page)![1]!;
    const p = parseProfile(yaml, { file: 'docs/proxy-protocol.md', baseDir: pki.dir });
    const [field, dashboards] = p.listeners;
    expect(field).toMatchObject({ name: 'field', protocol: 'mqtts', proxyProtocol: { trusted: ['10.20.0.0/24', 'fd00:20::/64'], required: true, timeout: 5000 } });
    expect(dashboards).toMatchObject({ name: 'dashboards', protocol: 'wss', proxyProtocol: { trusted: ['10.20.0.5'], required: false, timeout: 3000 } });
  });
});
