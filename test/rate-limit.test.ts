/**
 * Rate limits (PR.SS-5) over real sockets: an attacker floods from 127.0.0.2 (a second loopback
 * address, so per-address limits hit it alone) while a legitimate client on 127.0.0.1 keeps working.
 */
import { describe, it, expect, afterEach, inject } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type net from 'node:net';
import tls from 'node:tls';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import { hashPassword, writeUsersFile, type RateLimit } from '@bastion/middleware';
import { parseProfile, type ProfileInput } from '@bastion/profile';
import { connect, tryConnect, isRefusal, collect, closed, waitFor, nextMessage, collectCount } from './support/mqtt.js';
import { makeTestPki } from './support/pki.js';
import { connectPacket, rawSocket, subscribePacket, firstData, socketClosed, tryConnectFrom } from './support/raw-mqtt.js';

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

async function start(profile: Partial<ProfileInput>) {
  const dir = mkdtempSync(path.join(tmpdir(), 'bastion-rl-'));
  dirs.push(dir);
  broker = await createBroker({
    profile: { version: 1, listeners: [{ protocol: 'mqtt', port: 0 }], authentication: { anonymous: true }, ...profile } as ProfileInput,
    baseDir: dir,
    logger: silent,
  });
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  const port = Object.values(broker.addresses())[0]!.port;
  return { url: `mqtt://127.0.0.1:${port}`, port, events, dir };
}

async function client(url: string, opts: mqtt.IClientOptions = {}) {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

/** The legitimate client: a round trip through the broker works. */
async function roundTrip(url: string, tag: string) {
  const sub = await client(url, { clientId: `legit-sub-${tag}` });
  await sub.subscribeAsync(`legit/${tag}`);
  const pub = await client(url, { clientId: `legit-pub-${tag}` });
  const got = nextMessage(sub, 5000);
  await pub.publishAsync(`legit/${tag}`, 'hello', { qos: 1 });
  expect((await got).payload).toBe('hello');
}

const limited = (events: SecurityEvent[], limit: string) => events.filter((e) => e.type === 'rate.limited' && (e.detail as { limit?: string } | undefined)?.limit === limit);

describe('connection flood from one address', () => {
  it('refuses the attacker beyond its connection rate and concurrent cap; the legitimate client connects and works', async () => {
    const { url, port, events } = await start({
      // 20 per 100 s: no unit refills while the flood runs (per 10 s, one came back every 500 ms, and a
      // burst of 200 sockets slowed down by a loaded machine let a 21st in)
      rateLimits: { connections: { perIp: { rate: 20, per: '100s' } }, concurrent: { perIp: 30 } },
    });
    // the flood: 200 sockets from 127.0.0.2, each sending a CONNECT, all at once
    const flood = Array.from({ length: 200 }, async (_, i) => {
      try {
        const s = await rawSocket(port, ATTACKER);
        sockets.push(s);
        s.write(connectPacket({ clientId: `flood-${i}` }));
      } catch {
        /* refused at accept */
      }
    });
    // while it runs, the legitimate client connects and talks
    await roundTrip(url, 'during-flood');
    await Promise.all(flood);
    await waitFor(() => limited(events, 'connections.perIp').length > 0, 5000, 'a connections.perIp event');
    expect(broker!.openConnections(ATTACKER)).toBeLessThanOrEqual(30);
    const accepted = events.filter((e) => e.type === 'client.connected' && e.remoteAddress === ATTACKER).length;
    expect(accepted).toBeLessThanOrEqual(20);
    // every limit event names the attacker; the legitimate address never trips anything
    const rl = events.filter((e) => e.type === 'rate.limited');
    expect(rl.length).toBeGreaterThan(0);
    expect(rl.every((e) => e.remoteAddress === ATTACKER)).toBe(true);
    expect(rl[0]).toMatchObject({ control: 'PR.SS-5', reason: expect.stringMatching(/connection-rate-exceeded|server-busy/) });
    // events are throttled: far fewer than refusals, with the held-back count carried along
    expect(rl.length).toBeLessThan(20);
    await roundTrip(url, 'after-flood');
  });

  it('holds sockets refused at accept open for a while (tarpit), then closes them; the broker closes at once anyway', async () => {
    const { url, port } = await start({ rateLimits: { concurrent: { perIp: 2 }, tarpit: { hold: '1500ms', max: 10 } } });
    const a = await rawSocket(port, ATTACKER);
    const b = await rawSocket(port, ATTACKER);
    sockets.push(a, b);
    await waitFor(() => broker!.openConnections(ATTACKER) === 2, 3000, 'two attacker sockets counted');
    const held = await rawSocket(port, ATTACKER);
    sockets.push(held);
    let closedAt = 0;
    held.on('close', () => (closedAt = Date.now()));
    held.resume();
    await new Promise((r) => setTimeout(r, 300));
    expect(closedAt).toBe(0); // not closed at once: the flooder's retry loop waits
    await socketClosed(held, 5000);
    await roundTrip(url, 'tarpit');
    // more than `max` refused at once: the rest are closed at once
    const many = await Promise.all(Array.from({ length: 15 }, () => rawSocket(port, ATTACKER).catch(() => undefined)));
    for (const s of many) if (s) sockets.push(s);
    const t0 = Date.now();
    await broker!.close(); // held sockets do not hold the broker's close
    broker = undefined;
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('escalates the hold of an address refused again and again, up to maxHold; an address left alone starts again at hold', async () => {
    const { port } = await start({ rateLimits: { concurrent: { perIp: 1 }, tarpit: { hold: '100ms', maxHold: '1600ms' } } });
    const first = await rawSocket(port, ATTACKER);
    sockets.push(first);
    await waitFor(() => broker!.openConnections(ATTACKER) === 1, 3000, 'one attacker socket counted');
    /** One refused socket, opened after the previous one closed: how long the broker held it. */
    const held = async () => {
      const s = await rawSocket(port, ATTACKER);
      sockets.push(s);
      s.resume();
      const t0 = Date.now();
      await socketClosed(s, 5000);
      return Date.now() - t0;
    };
    // 100 ms, then doubled per refusal (each within maxHold of the last): 200, 400, 800 — each ±50%
    const holds = [await held(), await held(), await held(), await held()];
    // measured here, not by the broker: a loaded machine adds latency either way, so the bounds leave
    // room. A short hold is 50–150 ms, the 4th 400–1200 ms; one not reset after maxHold, 800–2400 ms
    expect(holds[0]).toBeLessThan(700); // 50–150 ms
    expect(holds[3]).toBeGreaterThanOrEqual(300); // 400–1200 ms
    await new Promise((r) => setTimeout(r, 1700)); // not refused for maxHold: back to the short hold
    expect(await held()).toBeLessThan(700); // 50–150 ms, not 1600 ± 50%
  });

  it('with the memory store, a connection budget refills steadily (a token bucket), not all at once at the end of a window', async () => {
    // one unit per second (a bucket of five): from(5) must come within 1 s of from(0), and from(7)
    // within 2 s (per '1s' left 200 and 400 ms, too little for a loaded machine)
    const { port, events } = await start({ rateLimits: { connections: { perIp: { rate: 5, per: '5s' } }, tarpit: false } });
    const from = async (i: number) => {
      const r = await tryConnectFrom(port, ATTACKER, { clientId: `bucket-${i}` });
      if (!isRefusal(r)) clients.push(r);
      return !isRefusal(r);
    };
    const burst = [await from(0)];
    const firstAt = performance.now(); // from(0) was counted before this (same clock as the broker's)
    for (let i = 1; i < 5; i++) burst.push(await from(i));
    expect(burst).toEqual([true, true, true, true, true]); // the full bucket
    expect(await from(5)).toBe(false); // empty
    await waitFor(() => limited(events, 'connections.perIp').length > 0, 3000, 'a connections.perIp event');
    // one unit refills 1 s after from(0): well inside the 5 s a fixed window would refuse for. Timed
    // from from(0), not from here, so a slow burst does not eat into from(7)'s second
    await new Promise((r) => setTimeout(r, Math.max(0, firstAt + 1100 - performance.now())));
    expect(await from(6)).toBe(true);
    expect(await from(7)).toBe(false); // one unit, not a new window of five
  });

  it('on a TLS listener too: a refused socket is held before its handshake, and no handshake is spent on it', async () => {
    const pki = makeTestPki();
    dirs.push(pki.dir);
    broker = await createBroker({
      profile: {
        version: 1,
        listeners: [{ protocol: 'mqtts', port: 0, tls: { cert: 'server.pem', key: 'server-key.pem' } }],
        authentication: { anonymous: true },
        rateLimits: { concurrent: { perIp: 1 }, tarpit: { hold: '1500ms' } },
      },
      baseDir: pki.dir,
      logger: silent,
    });
    const events: SecurityEvent[] = [];
    broker.events.on((e) => events.push(e));
    const port = Object.values(broker.addresses())[0]!.port;
    const tlsTo = () => tls.connect({ host: '127.0.0.1', port, localAddress: ATTACKER, ca: pki.ca.certPem, servername: 'localhost' });
    const first = tlsTo();
    sockets.push(first);
    await new Promise<void>((resolve, reject) => first.once('secureConnect', resolve).once('error', reject));
    await waitFor(() => broker!.openConnections(ATTACKER) === 1, 3000, 'one attacker socket counted');
    // over the cap: TCP connects, but the handshake never starts on the broker's side
    const held = tlsTo();
    sockets.push(held);
    let secured = false;
    let closedAt = 0;
    const t0 = Date.now();
    held.on('secureConnect', () => (secured = true)).on('error', () => {}).on('close', () => (closedAt = Date.now()));
    await waitFor(() => limited(events, 'concurrent.perIp').length > 0, 3000, 'a concurrent.perIp event');
    await new Promise((r) => setTimeout(r, 300));
    expect(closedAt).toBe(0); // held, not closed at once
    await socketClosed(held, 5000);
    expect(closedAt - t0).toBeGreaterThanOrEqual(700); // the hold, ±50% jitter
    expect(secured).toBe(false);
    // the refusal is one rate-limit event, not a TLS error as well
    expect(events.filter((e) => e.type === 'connection.refused' && e.remoteAddress === ATTACKER)).toEqual([]);
  });

  it('bans an address after repeated refusals (through the bans control), and lets others in', async () => {
    const { url, port, events } = await start({
      rateLimits: { connections: { perIp: { rate: 5, per: '10s', consequence: 'ban', strikes: 3, banFor: '1m' } } },
    });
    for (let i = 0; i < 12; i++) {
      const r = await tryConnectFrom(port, ATTACKER, { clientId: `b-${i}` });
      if (!isRefusal(r)) clients.push(r);
    }
    await waitFor(() => events.some((e) => e.type === 'ban.added'), 5000, 'ban.added');
    expect(events.find((e) => e.type === 'ban.added')).toMatchObject({ remoteAddress: ATTACKER, source: 'bans' });
    expect(limited(events, 'connections.perIp').some((e) => (e.detail as { consequence?: string }).consequence === 'ban')).toBe(true);
    const bans = broker!.controls.get<import('@bastion/middleware').Bans>('bans')!;
    expect(bans.check({ ip: ATTACKER })).toBeDefined();
    // refused at accept while over its connection budget…
    expect(isRefusal(await tryConnectFrom(port, ATTACKER, { clientId: 'after-ban' }))).toBe(true);
    // …and by the ban itself once that is forgotten (update() starts the budgets afresh)
    broker!.controls.get<RateLimit>('rate-limit')!.update({});
    expect(isRefusal(await tryConnectFrom(port, ATTACKER, { clientId: 'after-ban-2' }))).toBe(true);
    // the bans control's address ban is checked at accept (before any TLS handshake)
    await waitFor(() => events.some((e) => e.type === 'connection.refused' && e.reason === 'banned' && e.remoteAddress === ATTACKER), 3000, 'a banned refusal');
    await roundTrip(url, 'not-banned');
  });
});

/** A broker with one password user, alice, and these rate limits. */
async function startWithAlice(rateLimits: NonNullable<ProfileInput['rateLimits']>) {
  const dir = mkdtempSync(path.join(tmpdir(), 'bastion-rl-auth-'));
  dirs.push(dir);
  await writeUsersFile(path.join(dir, 'users.txt'), [{ username: 'alice', hash: await hashPassword('alice-pw'), groups: [] }]);
  return start({ authentication: { passwords: { file: path.join(dir, 'users.txt') } }, rateLimits });
}

describe('password guessing from one address', () => {
  it('refuses the address at accept once its failed authentications exceed the budget; the real user logs in', async () => {
    const { url, port, events } = await startWithAlice({ connections: { perIp: false }, authFailures: { perIp: { rate: 5, per: '60s' } } });
    const codes: Array<number | undefined> = [];
    for (let i = 0; i < 15; i++) {
      const r = await tryConnectFrom(port, ATTACKER, { clientId: `guess-${i}`, username: 'alice', password: `guess-${i}` });
      codes.push(isRefusal(r) ? r.code : 0);
    }
    // the first guesses reach the password check (CONNACK 4); then the socket is closed at accept
    expect(codes.filter((c) => c === 4).length).toBeGreaterThanOrEqual(5);
    expect(codes.filter((c) => c === 4).length).toBeLessThanOrEqual(7);
    expect(codes.slice(-5).every((c) => c === undefined)).toBe(true);
    expect(events.filter((e) => e.type === 'auth.failed' && e.remoteAddress === ATTACKER).length).toBeLessThanOrEqual(7);
    expect(limited(events, 'authFailures.perIp')[0]).toMatchObject({ remoteAddress: ATTACKER, control: 'PR.SS-5' });
    // even the right password from that address waits for the window; from elsewhere it works
    expect(isRefusal(await tryConnectFrom(port, ATTACKER, { clientId: 'alice-from-attacker', username: 'alice', password: 'alice-pw' }))).toBe(true);
    clients.push(await connect(url, { clientId: 'alice', username: 'alice', password: 'alice-pw' }));
  });

  it('checks in flight count against the budget: 20 guesses at once get 5 password checks, not 20', async () => {
    const { url, port, events } = await startWithAlice({ connections: { perIp: false }, concurrent: { authPerIp: false }, authFailures: { perIp: { rate: 5, per: '60s' } } });
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => tryConnectFrom(port, ATTACKER, { clientId: `burst-${i}`, username: 'alice', password: `guess-${i}` })));
    const codes = results.map((r) => (isRefusal(r) ? r.code : 0));
    expect(codes.filter((c) => c === 4)).toHaveLength(5); // the budget's worth of password checks, each failed
    // the rest refused before any check: CONNACK 3, or at accept once the address is known busy
    expect(codes.filter((c) => c === 3 || c === undefined)).toHaveLength(15);
    expect(codes.filter((c) => c === 3).length).toBeGreaterThan(0);
    expect(events.filter((e) => e.type === 'auth.failed' && e.remoteAddress === ATTACKER)).toHaveLength(5);
    expect(limited(events, 'authFailures.perIp')[0]).toMatchObject({ remoteAddress: ATTACKER, control: 'PR.SS-5' });
    clients.push(await connect(url, { clientId: 'alice', username: 'alice', password: 'alice-pw' }));
  });
});

describe('password checks in flight from one address', () => {
  it('refuses CONNECTs beyond the cap at once (CONNACK 3), so a guesser cannot queue up scrypt work; others log in', async () => {
    const { url, port, events } = await startWithAlice({ connections: { perIp: false }, concurrent: { authPerIp: 2 } });
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => tryConnectFrom(port, ATTACKER, { clientId: `burst-${i}`, username: 'alice', password: `guess-${i}` })));
    const codes = results.map((r) => (isRefusal(r) ? r.code : 0));
    expect(codes.filter((c) => c === 3).length).toBeGreaterThan(0); // refused before the password check
    expect(codes.filter((c) => c === 4).length).toBeGreaterThan(0); // the ones that got their check, failed
    expect(events.filter((e) => e.type === 'auth.failed' && e.remoteAddress === ATTACKER).length).toBe(codes.filter((c) => c === 4).length);
    expect(limited(events, 'concurrent.authPerIp')[0]).toMatchObject({ remoteAddress: ATTACKER, reason: 'rate-limited' });
    // once the checks are done the address may try again, one at a time
    const again = await tryConnectFrom(port, ATTACKER, { clientId: 'later', username: 'alice', password: 'alice-pw' });
    expect(isRefusal(again)).toBe(false);
    if (!isRefusal(again)) clients.push(again);
    clients.push(await connect(url, { clientId: 'alice', username: 'alice', password: 'alice-pw' }));
  });
});

describe('password checks that end without an outcome', () => {
  it('forgets a check whose client hung up during it: the address is not held at its cap afterwards', async () => {
    const { port, events } = await startWithAlice({ connections: { perIp: false }, concurrent: { authPerIp: 2 }, authFailures: { perIp: { rate: 3, per: '60s' } } });
    // two devices behind one address send the right password and drop the line before the answer
    const dropped = await Promise.all([rawSocket(port, ATTACKER), rawSocket(port, ATTACKER)]);
    for (const [i, s] of dropped.entries()) s.write(connectPacket({ clientId: `dropped-${i}`, username: 'alice', password: 'alice-pw' }));
    for (const s of dropped) s.destroy();
    const succeeded = () => events.filter((e) => e.type === 'auth.succeeded' && e.remoteAddress === ATTACKER).length;
    await waitFor(() => succeeded() === 2, 5000, 'both checks to end');
    // neither reached CONNACK, so neither reported an outcome; the next device from there still gets in
    const next = await tryConnectFrom(port, ATTACKER, { clientId: 'next', username: 'alice', password: 'alice-pw' });
    expect(isRefusal(next) ? next : 'connected').toBe('connected');
    if (!isRefusal(next)) clients.push(next);
    expect(limited(events, 'concurrent.authPerIp')).toHaveLength(0);
    expect(limited(events, 'authFailures.perIp')).toHaveLength(0);
  });
});

describe('publish flood from one client', () => {
  it('drops QoS 0 beyond the budget (one throttled event per second), and other clients are served', async () => {
    const { url, events } = await start({
      rateLimits: { publish: { perClient: { messages: { rate: 100, burst: 100, consequence: 'drop' }, bytes: false } } },
    });
    const watcher = await client(url, { clientId: 'watcher' });
    await watcher.subscribeAsync('flood/#');
    const received: string[] = [];
    watcher.on('message', (t) => received.push(t));
    const attacker = await client(url, { clientId: 'attacker' });
    const started = Date.now();
    for (let i = 0; i < 20_000; i++) attacker.publish('flood/x', 'x', { qos: 0 });
    await roundTrip(url, 'pub-flood');
    await new Promise((r) => setTimeout(r, 500));
    const elapsed = (Date.now() - started) / 1000;
    const flooded = received.filter((t) => t === 'flood/x').length;
    // at most the burst plus the rate over the elapsed time (an upper bound: a slow machine only lowers it)
    expect(flooded).toBeGreaterThan(0);
    expect(flooded).toBeLessThanOrEqual(100 + Math.ceil(100 * elapsed) + 10);
    const ev = limited(events, 'publish.perClient.messages');
    expect(ev.length).toBeGreaterThan(0);
    expect(ev.length).toBeLessThanOrEqual(Math.ceil(elapsed) + 2);
    expect(ev[0]).toMatchObject({ clientId: 'attacker', control: 'PR.SS-5', source: 'rate-limit', reason: 'rate-limited', detail: expect.objectContaining({ consequence: 'drop' }) });
    // no per-packet publish.denied flood from the core
    expect(events.filter((e) => e.type === 'publish.denied').length).toBe(0);
    expect(attacker.connected).toBe(true);
  });

  it('delays (back-pressure) a QoS 1 flood: nothing is lost, and it arrives no faster than the budget', async () => {
    const { url, events } = await start({
      rateLimits: { publish: { perClient: { messages: { rate: 100, burst: 20, consequence: 'delay' }, bytes: false } } },
    });
    const watcher = await client(url, { clientId: 'watcher' });
    await watcher.subscribeAsync('slow/#', { qos: 1 });
    const received: number[] = [];
    watcher.on('message', () => received.push(Date.now()));
    const pub = await client(url, { clientId: 'eager' });
    const started = Date.now();
    const sends = Array.from({ length: 150 }, (_, i) => pub.publishAsync('slow/x', String(i), { qos: 1 }));
    // meanwhile another client is not held up
    await roundTrip(url, 'pub-delay');
    await Promise.all(sends);
    await waitFor(() => received.length === 150, 10_000, 'all 150 delayed messages');
    const firstSecond = received.filter((t) => t - started <= 1000).length;
    expect(firstSecond).toBeLessThanOrEqual(20 + 100 + 10);
    expect(limited(events, 'publish.perClient.messages')[0]?.detail).toMatchObject({ consequence: 'delay' });
  });

  it('disconnects after N strikes (reason rate-limited)', async () => {
    const { url, events } = await start({
      rateLimits: { publish: { perClient: { messages: { rate: 10, burst: 10, consequence: 'disconnect', strikes: 3 } } } },
    });
    const attacker = await client(url, { clientId: 'striker' });
    for (let i = 0; i < 200; i++) attacker.publish('s/x', 'x');
    await closed(attacker, 5000);
    await waitFor(() => events.some((e) => e.type === 'client.disconnected' && e.clientId === 'striker'), 3000, 'disconnect event');
    expect(events.find((e) => e.type === 'client.disconnected' && e.clientId === 'striker')).toMatchObject({ reason: 'rate-limited' });
    expect(limited(events, 'publish.perClient.messages').some((e) => (e.detail as { consequence?: string }).consequence === 'disconnect')).toBe(true);
    await roundTrip(url, 'after-strikes');
  });

  it('limits bytes per second too', async () => {
    const { url, events } = await start({
      rateLimits: { publish: { perClient: { messages: false, bytes: { rate: '10KiB', burst: '10KiB', consequence: 'drop' } } } },
    });
    const watcher = await client(url, { clientId: 'watcher' });
    await watcher.subscribeAsync('big/#');
    const got: number[] = [];
    watcher.on('message', (_t, p) => got.push(p.length));
    const pub = await client(url, { clientId: 'bulky' });
    for (let i = 0; i < 100; i++) pub.publish('big/x', Buffer.alloc(1024));
    await roundTrip(url, 'bytes');
    await new Promise((r) => setTimeout(r, 300));
    expect(got.length).toBeGreaterThan(0);
    expect(got.length).toBeLessThan(100);
    expect(limited(events, 'publish.perClient.bytes').length).toBeGreaterThan(0);
  });

  it('a per-user budget spans the user\'s connections', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bastion-rl-users-'));
    dirs.push(dir);
    await writeUsersFile(path.join(dir, 'users.txt'), [
      { username: 'alice', hash: await hashPassword('alice-pw'), groups: [] },
      { username: 'bob', hash: await hashPassword('bob-pw'), groups: [] },
    ]);
    const { url, events } = await start({
      authentication: { passwords: { file: path.join(dir, 'users.txt') } },
      rateLimits: { publish: { perClient: { messages: false, bytes: false }, perUser: { messages: { rate: 50, per: '60s', consequence: 'drop' } } } },
    });
    const watcher = await client(url, { clientId: 'w', username: 'bob', password: 'bob-pw' });
    await watcher.subscribeAsync('u/#');
    const got: string[] = [];
    watcher.on('message', (t) => got.push(t));
    const a1 = await client(url, { clientId: 'a1', username: 'alice', password: 'alice-pw' });
    const a2 = await client(url, { clientId: 'a2', username: 'alice', password: 'alice-pw' });
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 10; i++) {
        a1.publish('u/alice', 'x');
        a2.publish('u/alice', 'y');
      }
      await new Promise((r) => setTimeout(r, 120)); // let batches reach the store
    }
    await new Promise((r) => setTimeout(r, 300));
    const alice = got.filter((t) => t === 'u/alice').length;
    // 200 sent over two connections, 50 allowed for the user (plus what one batch may overshoot)
    expect(alice).toBeGreaterThanOrEqual(50);
    expect(alice).toBeLessThanOrEqual(50 + 25);
    expect(limited(events, 'publish.perUser.messages')[0]).toMatchObject({ username: 'alice' });
    // bob's own budget is untouched
    const got2 = nextMessage(watcher);
    watcher.publish('u/bob', 'mine');
    expect((await got2).payload).toBe('mine');
  });
});

describe('subscribe storm', () => {
  it('refuses filters beyond the budget (SUBACK 0x80) and keeps serving others', async () => {
    const { url, port, events } = await start({ rateLimits: { subscribe: { perClient: { rate: 50, burst: 50 } } } });
    const s = await rawSocket(port, ATTACKER);
    sockets.push(s);
    s.write(connectPacket({ clientId: 'stormer' }));
    await firstData(s);
    const acks: Buffer[] = [];
    s.on('data', (d: Buffer) => acks.push(d));
    for (let p = 0; p < 20; p++) {
      s.write(subscribePacket(p + 1, Array.from({ length: 100 }, (_, i) => ({ topic: `storm/${p}/${i}`, qos: 0 }))));
    }
    await roundTrip(url, 'storm');
    await waitFor(() => Buffer.concat(acks).filter((b) => b === 0x80).length > 1000, 5000, 'refused filters');
    const live = broker!.subscriptionsOf('stormer') ?? [];
    expect(live.length).toBeGreaterThan(0);
    expect(live.length).toBeLessThanOrEqual(50 + 20);
    expect(limited(events, 'subscribe.perClient')[0]).toMatchObject({ clientId: 'stormer', remoteAddress: ATTACKER });
    // the core emitted no per-filter subscribe.denied for rate-limited filters
    expect(events.filter((e) => e.type === 'subscribe.denied' && e.source === 'rate-limit').length).toBe(0);
  });
});

describe('limits change at runtime', () => {
  it('update() applies at once, without a restart', async () => {
    const { url, events } = await start({ rateLimits: { publish: { perClient: { messages: false, bytes: false } } } });
    const rl = broker!.controls.get<RateLimit>('rate-limit')!;
    const watcher = await client(url, { clientId: 'watcher' });
    await watcher.subscribeAsync('rt/#');
    const pub = await client(url, { clientId: 'p' });
    let got = collectCount(watcher, 100);
    for (let i = 0; i < 100; i++) pub.publish('rt/a', 'x');
    expect((await got).length).toBe(100);

    rl.update({ publish: { perClient: { messages: { rate: 10, burst: 10, consequence: 'drop' } } } });
    got = collect(watcher, 400);
    for (let i = 0; i < 100; i++) pub.publish('rt/b', 'x');
    const limitedRun = (await got).length;
    expect(limitedRun).toBeLessThanOrEqual(10 + 10);
    expect(limited(events, 'publish.perClient.messages').length).toBeGreaterThan(0);

    // concurrent caps go to the core too
    rl.update({ concurrent: { perIp: 2 } });
    expect(broker!.connectionLimits.perIp).toBe(2);
    const third = await tryConnect(url, { clientId: 'third' });
    expect(isRefusal(third)).toBe(true);
    rl.update({ concurrent: { perIp: 100 } });
    clients.push(await connect(url, { clientId: 'fourth' }));
    // a bad update is refused and changes nothing
    expect(() => rl.update({ publish: { perClient: { messages: { rate: -1 } } } })).toThrow(expect.objectContaining({ code: 'BASTION_ERR_RATE_LIMIT' }));
    expect(rl.settings.publish.perClient.messages?.rate).toBe(10);
  });
});

describe('a Redis store shared by two broker processes', () => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) c.kill('SIGTERM');
  });

  function spawnBroker(redisUrl: string, keyPrefix: string): Promise<{ port: number; child: ChildProcess }> {
    const child = spawn(process.execPath, [path.join(here, 'support', 'limits-broker.mjs')], {
      env: { ...process.env, REDIS_URL: redisUrl, KEY_PREFIX: keyPrefix },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    return new Promise((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error(`broker process did not start: ${out}`)), 20_000);
      const on = (d: Buffer) => {
        out += d.toString();
        const m = out.match(/listening (\d+)/);
        if (m) {
          clearTimeout(t);
          resolve({ port: Number(m[1]), child });
        }
      };
      child.stdout?.on('data', on);
      child.stderr?.on('data', on);
      child.once('exit', (code) => reject(new Error(`broker process exited (${code}): ${out}`)));
    });
  }

  it('one per-address budget for both: the attacker gets 10 connections in all, not 10 per broker', async () => {
    const redisUrl = inject('redisUrl');
    const prefix = `bastion:test:rl:${process.pid}:${Date.now()}:`;
    const [a, b] = await Promise.all([spawnBroker(redisUrl, prefix), spawnBroker(redisUrl, prefix)]);
    let accepted = 0;
    for (let i = 0; i < 30; i++) {
      const port = i % 2 === 0 ? a.port : b.port;
      const r = await tryConnectFrom(port, ATTACKER, { clientId: `shared-${i}` });
      if (!isRefusal(r)) {
        accepted++;
        clients.push(r);
      }
    }
    expect(accepted).toBe(10);
    // the legitimate address has its own budget on both brokers
    clients.push(await connect(`mqtt://127.0.0.1:${a.port}`, { clientId: 'legit-a' }));
    clients.push(await connect(`mqtt://127.0.0.1:${b.port}`, { clientId: 'legit-b' }));
  });
});

describe('docs/limits.md', () => {
  it('its example profile is valid and resolves to the limits it shows', () => {
    const text = readFileSync(new URL('../docs/limits.md', import.meta.url), 'utf8');
    const yaml = /```yaml\n([\s\S]*?)```/.exec(text)?.[1];
    expect(yaml).toBeDefined();
    const p = parseProfile(yaml!, { file: 'docs/limits.md', baseDir: tmpdir(), env: { BASTION_REDIS_URL: 'redis://127.0.0.1:6379' } });
    expect(p.rateLimits?.store).toEqual({ type: 'redis', url: 'redis://127.0.0.1:6379', keyPrefix: 'plant-a:rl:' });
    expect(p.rateLimits?.connections.perIp).toMatchObject({ rate: 30, per: 10_000, consequence: 'ban', strikes: 5, banFor: 900_000 });
    expect(p.rateLimits?.publish.perClient.bytes).toMatchObject({ rate: 2 ** 20, burst: 4 * 2 ** 20, consequence: 'drop' });
    expect(p.rateLimits?.authFailures.perIp).toMatchObject({ rate: 10, per: 60_000, consequence: 'refuse' });
    expect(p.rateLimits?.concurrent).toMatchObject({ perIp: 50, total: 20_000, authPerIp: 8 });
    expect(p.rateLimits?.tarpit).toEqual({ hold: 2000, max: 1000, maxHold: 30_000 });
    expect(p.disconnect).toMatchObject({ keepalive: { max: 300, overMax: 'cap', refuseZero: true }, idleTimeout: 6 * 3_600_000, maxAge: 12 * 3_600_000, maxAgeJitter: 0.2 });
    expect(p.protocol).toMatchObject({ maxTopicLength: 512, maxQueuedPerClient: 500, clientId: { maxLength: 64, pattern: '^[a-z0-9][a-z0-9-]*$' }, slowConsumer: { maxBacklog: 2 ** 20 } });
  });

  it('tier defaults tighten with the tier of PR.SS, and a shared budget counts whole seconds', () => {
    const base = { version: 1 as const, listeners: [{ protocol: 'mqtt' as const, port: 1883 }] };
    const t1 = parseProfile(JSON.stringify({ ...base, tier: 1 }), { file: 't1.yaml', baseDir: tmpdir() });
    const t3 = parseProfile(JSON.stringify({ ...base, tier: 1, tiers: { 'PR.SS': 3 } }), { file: 't3.yaml', baseDir: tmpdir() });
    expect(t1.rateLimits?.authFailures.perIp?.rate).toBe(30); // a safety net at tier 1
    expect(t3.rateLimits?.authFailures.perIp?.rate).toBeLessThan(t1.rateLimits!.authFailures.perIp!.rate);
    expect(t3.rateLimits!.publish.perClient.messages!.rate).toBeLessThan(t1.rateLimits!.publish.perClient.messages!.rate);
    expect(t1.disconnect?.maxAge).toBe(0);
    expect(t3.disconnect?.maxAge).toBe(24 * 3_600_000);
    expect(t3.protocol!.maxSubscriptionsPerClient).toBeLessThan(t1.protocol!.maxSubscriptionsPerClient);
    expect(() => parseProfile(JSON.stringify({ ...base, rateLimits: { connections: { perIp: { rate: 5, per: '1500ms' } } } }), { file: 'bad.yaml', baseDir: tmpdir() })).toThrow(/whole seconds/);
    expect(() => parseProfile(JSON.stringify({ ...base, rateLimits: { publish: { perClient: { messages: { rate: 5, consequence: 'refuse' } } } } }), { file: 'bad2.yaml', baseDir: tmpdir() })).toThrow();
  });
});
