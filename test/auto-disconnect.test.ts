/**
 * Automatic disconnect (PR.SS-2, PR.SS-7) over real sockets: CONNECT and TLS handshake timeouts
 * against slowloris sockets, keepalive caps, idle timeout, maximum connection age with jitter.
 * Each attack runs from 127.0.0.2 while a legitimate client on 127.0.0.1 keeps working.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type net from 'node:net';
import tls from 'node:tls';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import type { AutoDisconnect } from '@bastion/middleware';
import type { ProfileInput } from '@bastion/profile';
import { connect, tryConnect, isRefusal, closed, waitFor, nextMessage } from './support/mqtt.js';
import { connectPacket, rawSocket, socketClosed, firstData } from './support/raw-mqtt.js';
import { makeTestPki } from './support/pki.js';

const ATTACKER = '127.0.0.2';
const silent = pino({ level: 'silent' });
let broker: Bastion | undefined;
const clients: mqtt.MqttClient[] = [];
const sockets: net.Socket[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  for (const s of sockets.splice(0)) s.destroy();
  await broker?.close();
  broker = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function start(profile: Partial<ProfileInput>, baseDir?: string) {
  const dir = baseDir ?? mkdtempSync(path.join(tmpdir(), 'bastion-ad-'));
  if (!baseDir) dirs.push(dir);
  broker = await createBroker({
    profile: { version: 1, listeners: [{ protocol: 'mqtt', port: 0 }], authentication: { anonymous: true }, ...profile } as ProfileInput,
    baseDir: dir,
    logger: silent,
  });
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  const port = Object.values(broker.addresses())[0]!.port;
  return { url: `mqtt://127.0.0.1:${port}`, port, events };
}

async function client(url: string, opts: mqtt.IClientOptions = {}) {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

async function attackerSocket(port: number) {
  const s = await rawSocket(port, ATTACKER);
  sockets.push(s);
  return s;
}

/** A round trip through the broker works. */
async function works(url: string, tag: string) {
  const sub = await client(url, { clientId: `ok-sub-${tag}` });
  await sub.subscribeAsync(`ok/${tag}`);
  const pub = await client(url, { clientId: `ok-pub-${tag}` });
  const got = nextMessage(sub, 5000);
  await pub.publishAsync(`ok/${tag}`, 'fine', { qos: 1 });
  expect((await got).payload).toBe('fine');
}

describe('CONNECT timeout', () => {
  it('closes a socket that never sends CONNECT, and one that sends half a CONNECT; a legitimate client is served meanwhile', async () => {
    const { url, port } = await start({ limits: { connectTimeout: '500ms' } });
    const silentSocket = await attackerSocket(port);
    const half = await attackerSocket(port);
    half.write(connectPacket({ clientId: 'slow' }).subarray(0, 7)); // fixed header and part of the protocol name
    await works(url, 'connect-timeout');
    await Promise.all([socketClosed(silentSocket, 5000), socketClosed(half, 5000)]);
  });

  it('a slowloris army: every half-open socket is closed, the per-address cap refuses the rest, the legitimate client never notices', async () => {
    const { url, port, events } = await start({ limits: { connectTimeout: '700ms' }, rateLimits: { concurrent: { perIp: 20 }, connections: { perIp: false }, tarpit: false } });
    const army: net.Socket[] = [];
    for (let i = 0; i < 60; i++) {
      const s = await attackerSocket(port);
      s.write(connectPacket({ clientId: `loris-${i}` }).subarray(0, 5));
      army.push(s);
    }
    // the cap holds the army to 20 open sockets; the others were closed at accept
    expect(broker!.openConnections(ATTACKER)).toBeLessThanOrEqual(20);
    expect(events.some((e) => e.type === 'rate.limited' && (e.detail as { limit?: string }).limit === 'concurrent.perIp' && e.remoteAddress === ATTACKER)).toBe(true);
    await works(url, 'slowloris');
    await Promise.all(army.map((s) => socketClosed(s, 5000)));
    await waitFor(() => broker!.openConnections(ATTACKER) === 0, 3000, 'no attacker socket left');
  });
});

describe('TLS handshake timeout', () => {
  it('closes a socket that starts a handshake and never finishes it; TLS clients still connect', async () => {
    const pki = makeTestPki();
    dirs.push(pki.dir);
    const { port } = await start(
      {
        listeners: [{ protocol: 'mqtts', port: 0 }],
        tls: { cert: 'server.pem', key: 'server-key.pem', handshakeTimeout: '500ms' },
        limits: { connectTimeout: '1s' },
      },
      pki.dir,
    );
    const slow = await attackerSocket(port);
    slow.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])); // a ClientHello record header and one byte
    const idle = await attackerSocket(port); // and one that says nothing at all
    const c = await connect(`mqtts://127.0.0.1:${port}`, { ca: pki.ca.certPem, servername: 'localhost', clientId: 'tls-ok' } as mqtt.IClientOptions);
    clients.push(c);
    await Promise.all([socketClosed(slow, 5000), socketClosed(idle, 5000)]);
    expect(c.connected).toBe(true);
    // a TLS client that completes the handshake and then stalls is under the CONNECT timeout
    const stalled = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: pki.ca.certPem, servername: 'localhost', localAddress: ATTACKER }, () => resolve(s));
      s.once('error', reject);
    });
    stalled.on('error', () => {});
    sockets.push(stalled as unknown as net.Socket);
    await socketClosed(stalled as unknown as net.Socket, 5000);
  });
});

describe('WebSocket upgrade timeout', () => {
  it('closes a wss socket that sends its HTTP upgrade byte by byte (slowloris); WebSocket clients still connect', async () => {
    const pki = makeTestPki();
    dirs.push(pki.dir);
    const { port } = await start(
      { listeners: [{ protocol: 'wss', port: 0 }], tls: { cert: 'server.pem', key: 'server-key.pem', handshakeTimeout: '1s' } },
      pki.dir,
    );
    const slow = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: pki.ca.certPem, servername: 'localhost', localAddress: ATTACKER }, () => resolve(s));
      s.once('error', reject);
    });
    slow.on('error', () => {});
    slow.resume(); // read what comes (a 408), so the end of the stream is seen
    sockets.push(slow as unknown as net.Socket);
    slow.write('GET /mqtt HTTP/1.1\r\nHost: localhost\r\n'); // and never the rest
    const c = await connect(`wss://127.0.0.1:${port}/mqtt`, { ca: pki.ca.certPem, servername: 'localhost', clientId: 'wss-ok' } as mqtt.IClientOptions);
    clients.push(c);
    await socketClosed(slow as unknown as net.Socket, 6000);
    expect(c.connected).toBe(true);
  });
});

describe('keepalive', () => {
  it('caps a long keepalive: a client that asks for 60 s and goes quiet is closed after 1.5 × the cap', async () => {
    const { port, events } = await start({ disconnect: { keepalive: { max: 1 } } });
    const s = await attackerSocket(port);
    s.write(connectPacket({ clientId: 'sleepy', keepalive: 60 }));
    expect([...(await firstData(s))]).toEqual([0x20, 0x02, 0x00, 0x00]);
    await socketClosed(s, 6000);
    await waitFor(() => events.some((e) => e.type === 'client.disconnected' && e.clientId === 'sleepy'), 3000, 'disconnect event');
    expect(events.find((e) => e.type === 'client.disconnected' && e.clientId === 'sleepy')).toMatchObject({ reason: 'keepalive-timeout' });
  });

  it('refuses a keepalive over the cap when the profile says refuse, and keepalive 0 when refuseZero', async () => {
    const { url, events } = await start({ disconnect: { keepalive: { max: 120, overMax: 'refuse', refuseZero: true } } });
    const tooLong = await tryConnect(url, { clientId: 'k600', keepalive: 600 });
    expect(isRefusal(tooLong) && tooLong.code).toBe(5);
    const zero = await tryConnect(url, { clientId: 'k0', keepalive: 0 });
    expect(isRefusal(zero) && zero.code).toBe(5);
    const refused = events.filter((e) => e.type === 'connection.refused' && e.source === 'auto-disconnect');
    expect(refused).toHaveLength(2);
    expect(refused[0]).toMatchObject({ control: 'PR.SS-2', reason: 'not-authorized' });
    clients.push(await connect(url, { clientId: 'k60', keepalive: 60 }));
  });

  it('a client with keepalive 0 is capped like any other when zero is not refused', async () => {
    const { port } = await start({ disconnect: { keepalive: { max: 1, refuseZero: false } } });
    const s = await attackerSocket(port);
    s.write(connectPacket({ clientId: 'never', keepalive: 0 }));
    expect([...(await firstData(s))]).toEqual([0x20, 0x02, 0x00, 0x00]);
    await socketClosed(s, 6000);
  });
});

describe('idle timeout', () => {
  it('disconnects a client that sends no PUBLISH or SUBSCRIBE (pings do not count); an active one stays', async () => {
    const { url, events } = await start({ disconnect: { idleTimeout: '1s' } });
    const idle = await client(url, { clientId: 'idle', keepalive: 1 }); // pings every second
    const active = await client(url, { clientId: 'active' });
    const ticker = setInterval(() => active.publish('tick', 'x'), 200);
    try {
      await closed(idle, 6000);
      await waitFor(() => events.some((e) => e.type === 'disconnect.enforced' && e.clientId === 'idle'), 3000, 'disconnect.enforced');
      expect(events.find((e) => e.type === 'disconnect.enforced')).toMatchObject({ reason: 'idle-timeout', control: 'PR.SS-2', source: 'auto-disconnect' });
      expect(events.find((e) => e.type === 'client.disconnected' && e.clientId === 'idle')).toMatchObject({ reason: 'idle-timeout' });
      expect(active.connected).toBe(true);
    } finally {
      clearInterval(ticker);
    }
  });
});

describe('maximum connection age', () => {
  it('disconnects every connection after its age, each at its own jittered time (PR.SS-7)', async () => {
    const { url, events } = await start({ disconnect: { maxAge: '1s', maxAgeJitter: 0.5 } });
    const fleet = await Promise.all(Array.from({ length: 8 }, (_, i) => client(url, { clientId: `fleet-${i}` })));
    await Promise.all(fleet.map((c) => closed(c, 6000)));
    await waitFor(() => events.filter((e) => e.type === 'disconnect.enforced').length === 8, 3000, 'eight enforced disconnects');
    const enforced = events.filter((e) => e.type === 'disconnect.enforced');
    expect(enforced.every((e) => e.reason === 'max-age' && e.control === 'PR.SS-7')).toBe(true);
    const ages = enforced.map((e) => (e.detail as { age: number }).age);
    expect(ages.every((a) => a >= 500 && a <= 1000)).toBe(true); // round(1000 × (1 − random × 0.5)): 500 itself can come up
    expect(new Set(ages).size).toBeGreaterThan(1); // not all at once
    // reconnecting works (fresh handshake)
    await works(url, 'after-age');
  });

  it('settings change at runtime', async () => {
    const { url } = await start({});
    const ad = broker!.controls.get<AutoDisconnect>('auto-disconnect')!;
    expect(ad.settings.maxAge).toBe(0);
    ad.update({ keepalive: { max: 30, overMax: 'refuse' } });
    const r = await tryConnect(url, { clientId: 'late', keepalive: 60 });
    expect(isRefusal(r) && r.code).toBe(5);
    expect(() => ad.update({ maxAgeJitter: 2 })).toThrow(expect.objectContaining({ code: 'BASTION_ERR_AUTO_DISCONNECT' }));
  });
});
