import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createCoreBroker, deny, SecurityEventBus, type BastionBroker, type Middleware, type SecurityEvent } from '@bastion/core';
import { passwordAuth, hashPassword } from '@bastion/middleware';
import { readOnlyTopics } from '../examples/custom-middleware/read-only-topics.js';
import { connect, tryConnect, isRefusal, nextMessage, closed, waitFor, collectCount } from './support/mqtt.js';

const silent = pino({ level: 'silent' });
let broker: BastionBroker | undefined;
const clients: mqtt.MqttClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
});

async function start(middleware: Middleware[] = [], extra: Record<string, unknown> = {}) {
  broker = await createCoreBroker({ listeners: [{ transport: 'mqtt', port: 0 }, { transport: 'ws', port: 0 }], middleware, logger: silent, ...extra });
  const [tcp, ws] = Object.values(broker.addresses());
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  return { tcp: `mqtt://127.0.0.1:${tcp!.port}`, ws: `ws://127.0.0.1:${ws!.port}/mqtt`, events, tcpPort: tcp!.port };
}

/** SUBACK return codes (mqtt.js rejects subscribeAsync when any is 0x80, so read them from the packet). */
async function granted(c: mqtt.MqttClient, topics: string[]): Promise<number[]> {
  try {
    return (await c.subscribeAsync(topics)).map((g) => g.qos);
  } catch (err) {
    const packet = (err as { packet?: { granted?: number[] } }).packet;
    if (!packet?.granted) throw err;
    return packet.granted;
  }
}

async function client(url: string, opts: mqtt.IClientOptions = {}) {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

describe('the middleware contract', () => {
  it('the README example is the example file, and it works', async () => {
    const readme = readFileSync(new URL('../packages/core/README.md', import.meta.url), 'utf8');
    const source = readFileSync(new URL('../examples/custom-middleware/read-only-topics.ts', import.meta.url), 'utf8');
    expect(readme).toContain(source.trim());
    const { tcp, events } = await start([readOnlyTopics()]);
    const sub = await client(tcp);
    await sub.subscribeAsync('#');
    const pub = await client(tcp);
    const got = collectCount(sub, 1);
    await pub.publishAsync('readonly/x', 'no', { qos: 1 }); // acknowledged (3.1.1 allows no refusal) but dropped
    await pub.publishAsync('open/x', 'yes', { qos: 1 });
    expect((await got).map((m) => m.topic)).toEqual(['open/x']);
    expect(pub.connected).toBe(true);
    expect(events.find((e) => e.type === 'publish.denied')).toMatchObject({ source: 'read-only-topics', control: 'PR.AC-5', topic: 'readonly/x', reason: 'not-authorized' });
  });

  it('deny wins and stops the chain; later middleware are not asked', async () => {
    const asked: string[] = [];
    const first: Middleware = { name: 'first', controls: ['PR.AC-5'], authorizeSubscribe: (_c, s) => (asked.push('first'), s.topic === 'no' ? deny('not-authorized') : undefined) };
    const second: Middleware = { name: 'second', controls: ['PR.AC-5'], authorizeSubscribe: () => void asked.push('second') };
    const { tcp } = await start([first, second]);
    const c = await client(tcp);
    expect(await granted(c, ['no', 'yes'])).toEqual([128, 0]);
    expect(asked.filter((a) => a === 'second')).toHaveLength(1);
  });

  it('answers may be Promises', async () => {
    const slow: Middleware = {
      name: 'slow',
      controls: ['PR.AC-5'],
      authorizePublish: async (_c, p) => {
        await new Promise((r) => setTimeout(r, 10));
        return p.topic === 'blocked' ? deny('not-authorized', 'blocked', 'drop') : undefined;
      },
    };
    const { tcp } = await start([slow]);
    const sub = await client(tcp);
    await sub.subscribeAsync('#');
    const pub = await client(tcp);
    const got = collectCount(sub, 1);
    pub.publish('blocked', 'x');
    pub.publish('fine', 'y');
    expect((await got).map((m) => m.topic)).toEqual(['fine']);
  });

  it('a middleware that throws or rejects denies that request, is logged as an event, and the broker keeps serving', async () => {
    const broken: Middleware = {
      name: 'broken',
      controls: ['PR.AC-5'],
      authorizeSubscribe: (_c, s) => {
        if (s.topic === 'boom') throw new Error('bug in middleware');
        return undefined;
      },
      authorizePublish: async (_c, p) => {
        if (p.topic === 'reject') throw new Error('async bug');
        return undefined;
      },
    };
    const { tcp, events } = await start([broken]);
    const c = await client(tcp);
    expect(await granted(c, ['boom', 'ok'])).toEqual([128, 0]);
    const other = await client(tcp);
    other.publish('reject', 'x');
    await closed(other); // default publish denial closes the connection
    const got = nextMessage(c);
    const third = await client(tcp);
    await third.publishAsync('ok', 'still here');
    expect((await got).payload).toBe('still here');
    const errs = events.filter((e) => e.type === 'middleware.error');
    expect(errs.map((e) => e.message)).toEqual(expect.arrayContaining(['bug in middleware', 'async bug']));
    expect(events.filter((e) => e.reason === 'internal-error').length).toBeGreaterThanOrEqual(2);
  });

  it('a refused connection gets a CONNACK refusal and the socket is closed', async () => {
    const gate: Middleware = { name: 'gate', controls: ['PR.SS-4'], onConnect: (c) => (c.id === 'evil' ? deny('not-authorized') : undefined) };
    const { tcp } = await start([gate]);
    const r = await tryConnect(tcp, { clientId: 'evil' });
    expect(isRefusal(r) && r.code).toBe(5);
    await client(tcp, { clientId: 'good' });
  });

  it('onConnection refusals close the socket before CONNECT is read', async () => {
    const gate: Middleware = { name: 'gate', controls: ['PR.SS-4'], onConnection: () => deny('banned') };
    const { tcp, events } = await start([gate]);
    const r = await tryConnect(tcp);
    expect(isRefusal(r)).toBe(true);
    expect(events[0]).toMatchObject({ type: 'connection.refused', source: 'gate', remoteAddress: '127.0.0.1', reason: 'banned' });
  });
});

describe('guards every broker has', () => {
  it('refuses publishing to $SYS and subscribing to $SYS without a grant', async () => {
    const { tcp, events } = await start();
    const c = await client(tcp);
    expect(await granted(c, ['$SYS/#', '$SYS/+/new/clients'])).toEqual([128, 128]);
    const evil = await client(tcp);
    evil.publish('$SYS/sub/add', 'poison');
    await closed(evil);
    expect(events.some((e) => e.type === 'publish.denied' && e.topic === '$SYS/sub/add')).toBe(true);
    // the broker still routes
    const s = await client(tcp);
    await s.subscribeAsync('x');
    const got = nextMessage(s);
    (await client(tcp)).publish('x', 'ok');
    expect((await got).payload).toBe('ok');
  });

  it('lets a granted user subscribe to $SYS', async () => {
    const users = [{ username: 'ops', hash: await hashPassword('pw'), groups: [] }];
    const { tcp } = await start([passwordAuth({ users })], { sysSubscribers: ['ops'] });
    const c = await client(tcp, { username: 'ops', password: 'pw' });
    expect(await granted(c, ['$SYS/#'])).toEqual([0]);
    const heard: string[] = [];
    c.on('message', (topic, payload) => heard.push(`${topic.split('/').slice(2).join('/')} ${payload.toString()}`));
    await client(tcp, { username: 'ops', password: 'pw', clientId: 'newcomer' });
    await waitFor(() => heard.includes('new/clients newcomer'), 5000, 'the $SYS new-client event');
  });

  it("publishes no $SYS client events nobody could hear (no $SYS subscriber, no cluster), unless the embedder asks", async () => {
    const heard = async (extra: Record<string, unknown>) => {
      const { tcp } = await start([], extra);
      const topics: string[] = [];
      const aedes = broker!.aedes as unknown as { subscribe: (t: string, fn: (p: { topic: string }, cb: () => void) => void, done: () => void) => void };
      await new Promise<void>((r) => aedes.subscribe('$SYS/+/+/clients', (p, cb) => (topics.push(p.topic.split('/').slice(2).join('/')), cb()), r));
      const c = await client(tcp, { clientId: 'watched' });
      await c.endAsync();
      await waitFor(() => [...broker!.clients()].length === 0, 2000, 'client gone');
      await new Promise((r) => setTimeout(r, 50));
      await broker!.close();
      broker = undefined;
      return topics;
    };
    expect(await heard({})).toEqual([]);
    expect(await heard({ aedes: { sysClientEvents: true } })).toEqual(['new/clients', 'disconnect/clients']);
  });

  it('refuses an empty client id without clean session (CONNACK 2)', async () => {
    const { tcpPort, events } = await start();
    // mqtt.js will not send this CONNECT, so a raw socket does: empty client id, clean session 0
    const raw = net.connect(tcpPort, '127.0.0.1');
    await new Promise((r) => raw.once('connect', r));
    const reply = new Promise<Buffer>((resolve) => raw.once('data', resolve));
    const ended = new Promise<void>((resolve) => raw.once('close', () => resolve()));
    raw.write(Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x00, 0x00, 0x3c, 0x00, 0x00]));
    expect([...(await reply)]).toEqual([0x20, 0x02, 0x00, 0x02]); // CONNACK, identifier rejected
    raw.resume();
    await ended;
    expect(events.find((e) => e.type === 'connection.refused')).toMatchObject({ reason: 'client-id-rejected', control: 'PR.SS-1', source: 'client-id' });
  });

  it('closes only the connection that sends an oversized packet, before it is buffered', async () => {
    const { tcp, tcpPort, events } = await start([], { maxPacketSize: 1024 });
    const good = await client(tcp);
    await good.subscribeAsync('t');
    // A raw socket declares a 64 MB PUBLISH and sends only its first bytes.
    const raw = net.connect(tcpPort, '127.0.0.1');
    await new Promise((r) => raw.once('connect', r));
    raw.resume(); // read (and ignore) the CONNACK so 'close' can fire
    raw.write(Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00])); // CONNECT, empty id, clean
    await new Promise((r) => setTimeout(r, 100));
    raw.write(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x20, 0x00, 0x01, 0x74])); // PUBLISH, remaining length 64 MiB
    await new Promise<void>((resolve) => raw.once('close', () => resolve()));
    expect(events.find((e) => e.type === 'packet.rejected')).toMatchObject({ reason: 'packet-too-large', control: 'PR.SS-1' });
    // mqtt.js client that publishes too much is closed too; the other client is untouched
    const big = await client(tcp);
    big.publish('t', Buffer.alloc(4096));
    await closed(big);
    const got = nextMessage(good);
    (await client(tcp)).publish('t', 'small');
    expect((await got).payload).toBe('small');
    expect(good.connected).toBe(true);
  });

  it('a malformed packet closes that connection only', async () => {
    const { tcp, tcpPort } = await start();
    const good = await client(tcp);
    await good.subscribeAsync('t');
    const raw = net.connect(tcpPort, '127.0.0.1');
    await new Promise((r) => raw.once('connect', r));
    raw.resume(); // read (and ignore) the CONNACK so 'close' can fire
    raw.write(Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00]));
    raw.write(Buffer.from([0xf0, 0x00])); // reserved packet type 15
    await new Promise<void>((resolve) => raw.once('close', () => resolve()));
    const got = nextMessage(good);
    (await client(tcp)).publish('t', 'alive');
    expect((await got).payload).toBe('alive');
  });
});

describe('security events', () => {
  it('a listener that names its types gets only those; wants() tells a producer whether to build an event', async () => {
    const { tcp, events } = await start([passwordAuth({ users: [{ username: 'u', hash: await hashPassword('pw'), groups: [] }] })]);
    const failures: SecurityEvent[] = [];
    const bastion = broker!;
    const off = bastion.events.on((e) => failures.push(e), { types: ['auth.failed'] });
    expect(bastion.events.wants('auth.failed')).toBe(true);
    await client(tcp, { username: 'u', password: 'pw', clientId: 'ok' });
    expect(isRefusal(await tryConnect(tcp, { username: 'u', password: 'wrong', clientId: 'bad' }))).toBe(true);
    await waitFor(() => failures.length === 1, 2000, 'the failure');
    expect(failures.map((e) => [e.type, e.clientId])).toEqual([['auth.failed', 'bad']]);
    // the untyped listener of start() saw everything, in order
    expect(events.filter((e) => e.clientId === 'ok').map((e) => e.type)).toEqual(['auth.succeeded', 'client.connected']);
    off();
    off(); // a second call does nothing
    expect(bastion.events.wants('auth.failed')).toBe(true); // start()'s listener wants every type
    const bus = new SecurityEventBus();
    const seen: string[] = [];
    const offTyped = bus.on((e) => seen.push(`typed:${e.type}`), { types: ['client.connected'] });
    expect([bus.wants('client.connected'), bus.wants('auth.succeeded')]).toEqual([true, false]);
    bus.on((e) => seen.push(`all:${e.type}`));
    expect(bus.wants('auth.succeeded')).toBe(true);
    const at = { time: 0, control: 'ID.AM-1', source: 'test' };
    bus.emit({ type: 'auth.succeeded', ...at });
    bus.emit({ type: 'client.connected', ...at });
    expect(seen).toEqual(['all:auth.succeeded', 'typed:client.connected', 'all:client.connected']);
    offTyped();
    expect(bus.wants('client.connected')).toBe(true);
  });

  it("a withheld delivery reaches a 'security' listener that has no bus subscription", async () => {
    const noReading: Middleware = { name: 'no-reading', controls: ['PR.AC-5'], authorizeForward: (_c, p) => !p.topic.startsWith('secret/') };
    broker = await createCoreBroker({ listeners: [{ transport: 'mqtt', port: 0 }], middleware: [noReading], logger: silent });
    const url = `mqtt://127.0.0.1:${Object.values(broker.addresses())[0]!.port}`;
    const seen: SecurityEvent[] = [];
    broker.on('security', (e: SecurityEvent) => seen.push(e));
    expect(broker.events.listening).toBe(false);
    const sub = await client(url, { clientId: 'reader' });
    await sub.subscribeAsync('#');
    const pub = await client(url, { clientId: 'writer' });
    await pub.publishAsync('secret/plan', 'x', { qos: 1 });
    await waitFor(() => seen.some((e) => e.type === 'forward.denied'), 2000, 'forward.denied');
    expect(seen.find((e) => e.type === 'forward.denied')).toMatchObject({ clientId: 'reader', topic: 'secret/plan', source: 'no-reading' });
  });
});

describe('passwords', () => {
  it('right password connects; wrong gets CONNACK 4; none gets CONNACK 5; events carry no secret', async () => {
    const users = [{ username: 'alice', hash: await hashPassword('correct horse'), groups: ['ops'] }];
    const { tcp, ws, events } = await start([passwordAuth({ users })]);
    const ok = await client(tcp, { username: 'alice', password: 'correct horse', clientId: 'a1' });
    expect(broker!.client('a1')).toMatchObject({ username: 'alice', groups: ['ops'], remoteAddress: '127.0.0.1', transport: 'mqtt' });
    expect(ok.connected).toBe(true);
    const viaWs = await client(ws, { username: 'alice', password: 'correct horse', clientId: 'a2' });
    expect(broker!.client('a2')).toMatchObject({ transport: 'ws', remoteAddress: '127.0.0.1' });
    expect(viaWs.connected).toBe(true);
    const wrong = await tryConnect(tcp, { username: 'alice', password: 'nope' });
    expect(isRefusal(wrong) && wrong.code).toBe(4);
    const unknown = await tryConnect(tcp, { username: 'mallory', password: 'x' });
    expect(isRefusal(unknown) && unknown.code).toBe(4);
    const none = await tryConnect(tcp, {});
    expect(isRefusal(none) && none.code).toBe(5);
    const failed = events.filter((e) => e.type === 'auth.failed');
    expect(failed.map((e) => e.username)).toEqual(['alice', 'mallory', undefined]);
    expect(JSON.stringify(events)).not.toMatch(/nope|correct horse/);
  });

  it('users removed at runtime are disconnected', async () => {
    const users = [
      { username: 'alice', hash: await hashPassword('a'), groups: [] },
      { username: 'bob', hash: await hashPassword('b'), groups: [] },
    ];
    const auth = passwordAuth({ users });
    const { tcp } = await start([auth]);
    const a = await client(tcp, { username: 'alice', password: 'a' });
    const b = await client(tcp, { username: 'bob', password: 'b' });
    auth.setUsers([users[1]!]);
    await closed(a);
    expect(b.connected).toBe(true);
    await waitFor(() => broker!.client(a.options.clientId!) === undefined);
  });
});
