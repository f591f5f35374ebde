/**
 * A cluster on one Redis: two broker processes on different ports. Messages published on node A
 * reach clients of node B live, retained and queued offline; a client id taken over on the other
 * node closes the old session; Redis pub/sub never carries a payload in clear (cluster traffic is
 * sealed); and the sealed cluster-state channel spreads bans from one node to the other.
 */
import { describe, it, expect, afterEach, beforeAll, afterAll } from 'vitest';
import { inject } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import type { Bans } from '@bastion/middleware';
import { ClusterState, Keyring, Sealer, openStore, type Store, type StoreEvent } from '@bastion/persistence';
import type { ProfileInput } from '@bastion/profile';
import type { PersistenceControl } from '../packages/broker/src/controls/persistence.js';
import { bastionStart, type Running } from './support/cli.js';
import { connect, tryConnect, isRefusal, nextMessage, closed, waitFor } from './support/mqtt.js';
import { freePort } from './support/redis-server.js';
import { containing, keyFile, scanAll, tempDir, uniquePrefix } from './support/persistence.js';

const silent = pino({ level: 'silent' });
const redisUrl = inject('redisUrl');
/** Generous, as in cluster-state.test.ts: a change takes a Redis round trip; a loaded test machine must not fail it. */
const SOON = 5000;
const dir = tempDir('cluster');
let raw: Redis;
const running: Running[] = [];
const brokers: Bastion[] = [];
const stores: Store[] = [];
const clients: mqtt.MqttClient[] = [];
const sniffers: Redis[] = [];

beforeAll(() => {
  raw = new Redis(redisUrl);
});
afterAll(async () => {
  await raw.quit();
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  for (const r of running.splice(0)) if (r.child.exitCode === null && r.child.signalCode === null) await r.stop('SIGTERM');
  for (const b of brokers.splice(0)) await b.close();
  for (const s of stores.splice(0)) await s.close();
  for (const s of sniffers.splice(0)) s.disconnect();
});

async function client(url: string, opts: mqtt.IClientOptions = {}) {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

function clusterSection(prefix: string, keyPath: string) {
  return { store: 'redis', cluster: true, redis: { url: redisUrl, prefix }, encryption: { keys: [{ file: keyPath }] } };
}

async function node(name: string, prefix: string, keyPath: string): Promise<string> {
  const port = await freePort();
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ version: 1, listeners: [{ protocol: 'mqtt', host: '127.0.0.1', port }], authentication: { anonymous: true }, logging: { level: 'warn' }, persistence: clusterSection(prefix, keyPath) }));
  const r = bastionStart(['--profile', file], { cwd: dir });
  running.push(r);
  await r.waitFor(/listening on mqtt:\/\//, 20_000);
  return `mqtt://127.0.0.1:${port}`;
}

/** Everything published on Redis channels under `prefix`, as raw bytes. */
async function sniff(prefix: string): Promise<Buffer[]> {
  const s = new Redis(redisUrl);
  sniffers.push(s);
  const seen: Buffer[] = [];
  s.on('pmessageBuffer', (_p: Buffer, channel: Buffer, message: Buffer) => seen.push(Buffer.concat([channel, message])));
  await s.psubscribe(`${prefix}*`);
  return seen;
}

describe('two broker processes on one Redis', () => {
  it('live, retained and queued-offline messages published on A reach clients of B; Redis sees none in clear', async () => {
    const prefix = uniquePrefix('cluster');
    const key = keyFile(dir, 'cluster.key');
    const wire = await sniff(prefix);
    const [a, b] = await Promise.all([node('a', prefix, key.path), node('b', prefix, key.path)]);

    // live
    const subB = await client(b, { clientId: 'live-on-b' });
    await subB.subscribeAsync('c/live', { qos: 1 });
    const live = nextMessage(subB, 5000);
    const pubA = await client(a, { clientId: 'pub-on-a' });
    await pubA.publishAsync('c/live', 'cluster-plaintext-live', { qos: 1 });
    expect(await live).toMatchObject({ topic: 'c/live', payload: 'cluster-plaintext-live' });

    // retained
    await pubA.publishAsync('c/retained', 'cluster-plaintext-retained', { qos: 1, retain: true });
    const lateB = await client(b, { clientId: 'late-on-b' });
    const ret = nextMessage(lateB, 5000);
    await lateB.subscribeAsync('c/retained', { qos: 1 });
    expect(await ret).toMatchObject({ payload: 'cluster-plaintext-retained', retain: true });

    // queued while offline: subscribed on B, published on A, delivered on B's reconnect
    const q = await client(b, { clientId: 'offline-on-b', clean: false });
    await q.subscribeAsync('c/queued', { qos: 1 });
    q.end(true);
    // aedes-persistence-redis keeps each node's view of subscriptions in memory, updated over Redis
    // pub/sub: A enqueues for an offline client only once it has heard of the subscription. B sent
    // that update before its SUBACK, and Redis delivers one connection's messages in order: once a
    // message B publishes later reaches a client of A, A has applied the update (a fixed wait
    // was flaky on a loaded machine).
    const fenceA = await client(a, { clientId: 'fence-on-a' });
    await fenceA.subscribeAsync('c/fence', { qos: 1 });
    const fenceB = await client(b, { clientId: 'fence-on-b' });
    let fenced = false;
    fenceA.on('message', (t) => (fenced ||= t === 'c/fence'));
    for (let i = 0; !fenced; i++) {
      if (i >= 100) throw new Error('no fence message from B reached A');
      await fenceB.publishAsync('c/fence', 'fence', { qos: 1 });
      await waitFor(() => fenced, 100, 'the fence').catch(() => undefined);
    }
    for (let i = 0; i < 3; i++) await pubA.publishAsync('c/queued', `cluster-plaintext-queued-${i}`, { qos: 1 });
    const back = mqtt.connect(b, { clientId: 'offline-on-b', clean: false, reconnectPeriod: 0, protocolVersion: 4 });
    clients.push(back);
    const got: string[] = [];
    back.on('message', (_t, p) => got.push(p.toString()));
    await waitFor(() => new Set(got).size === 3, 8000, 'the queued messages on B').catch(async (err: Error) => {
      throw new Error(`${err.message}: got ${JSON.stringify(got)}, ${await raw.llen(`${prefix}outgoing:offline-on-b`)} queued in Redis`);
    });
    expect([...new Set(got)].sort()).toEqual(['cluster-plaintext-queued-0', 'cluster-plaintext-queued-1', 'cluster-plaintext-queued-2']);

    // what crossed Redis pub/sub and what Redis stores: sealed
    expect(wire.length).toBeGreaterThan(5);
    expect(wire.filter((m) => m.includes(Buffer.from('cluster-plaintext')))).toEqual([]);
    expect(wire.filter((m) => m.includes(Buffer.from('pub-on-a')))).toEqual([]); // the publisher's client id is sealed too
    expect(containing(await scanAll(raw, prefix), 'cluster-plaintext')).toEqual([]);
  }, 60_000);

  it('a client id taken over on the other node closes the old session', async () => {
    const prefix = uniquePrefix('takeover');
    const key = keyFile(dir, 'takeover.key');
    const [a, b] = await Promise.all([node('ta', prefix, key.path), node('tb', prefix, key.path)]);
    const first = await client(a, { clientId: 'roaming-device' });
    const gone = closed(first, 5000);
    const second = await client(b, { clientId: 'roaming-device' });
    await gone;
    expect(second.connected).toBe(true);
    // the new session works across the cluster
    const m = nextMessage(second, 5000);
    await second.subscribeAsync('roam/x', { qos: 1 });
    const p = await client(a);
    await p.publishAsync('roam/x', 'hello', { qos: 1 });
    expect((await m).payload).toBe('hello');
  }, 60_000);
});

describe('the cluster-state channel', () => {
  async function inProcessNode(prefix: string, keyPath: string) {
    const broker = await createBroker({
      profile: { version: 1, listeners: [{ protocol: 'mqtt', port: 0 }], authentication: { anonymous: true }, persistence: clusterSection(prefix, keyPath) } as ProfileInput,
      baseDir: dir,
      logger: silent,
    });
    brokers.push(broker);
    const events: SecurityEvent[] = [];
    broker.events.on((e) => events.push(e));
    const bans = broker.controls.get<Bans>('bans');
    if (!bans) throw new Error('the bans control is not wired');
    return { broker, bans, events, url: `mqtt://127.0.0.1:${Object.values(broker.addresses())[0]!.port}` };
  }

  it('a ban set on node A is in force on node B within seconds, and lifting it lifts it there too', async () => {
    const prefix = uniquePrefix('bans');
    const key = keyFile(dir, 'bans.key');
    const A = await inProcessNode(prefix, key.path);
    const B = await inProcessNode(prefix, key.path);
    const victim = await client(B.url, { clientId: 'victim', reconnectPeriod: 0 });
    const bystander = await client(B.url, { clientId: 'bystander' });
    const kicked = closed(victim, SOON);

    const t0 = Date.now();
    A.bans.ban({ clientId: 'victim' }, { duration: 60_000, reason: 'test', actor: 'operator' });
    await kicked; // B closed the victim's session
    await waitFor(() => B.bans.check({ clientId: 'victim' }) !== undefined, SOON - (Date.now() - t0), 'the ban on B');
    const again = await tryConnect(B.url, { clientId: 'victim' });
    expect(isRefusal(again)).toBe(true);
    expect(bystander.connected).toBe(true); // the legitimate client keeps working
    const onB = B.bans.list();
    expect(onB).toHaveLength(1);
    expect(onB[0]).toMatchObject({ clientId: 'victim', reason: 'test', actor: 'operator' });
    expect(onB[0]!.expiresAt! - Date.now()).toBeGreaterThan(50_000);
    expect(B.events.find((e) => e.type === 'ban.added')).toBeDefined();
    expect(A.bans.list()).toHaveLength(1); // not echoed back as a second ban

    A.bans.unban(A.bans.list()[0]!.id, 'operator');
    await waitFor(() => B.bans.list().length === 0, SOON, 'the unban on B');
    const welcome = await tryConnect(B.url, { clientId: 'victim' });
    expect(isRefusal(welcome)).toBe(false);
    if (!isRefusal(welcome)) clients.push(welcome);

    // and the other way round
    B.bans.ban({ username: 'mallory' });
    await waitFor(() => A.bans.check({ username: 'mallory' }) !== undefined, SOON, 'the ban on A');
  }, 30_000);

  it('publish/subscribe between nodes; forged, foreign-key, stale and replayed messages are dropped and reported', async () => {
    const prefix = uniquePrefix('state');
    const keyBytes = Buffer.alloc(32, 3);
    const cfg = { store: 'redis' as const, cluster: true, redis: { url: redisUrl, prefix, connectTimeout: 5000 }, encryption: { keys: [{ value: keyBytes.toString('hex') }] } };
    const one = await openStore(cfg);
    const two = await openStore(cfg);
    stores.push(one, two);
    const events: StoreEvent[] = [];
    two.onEvent = (e) => events.push(e);
    // normally the broker start (Aedes calling the persistence's setup) does this
    await one.start();
    await two.start();
    const got: Array<{ data: unknown; node: string }> = [];
    const off = two.state!.subscribe('acl', (data, meta) => got.push({ data, node: meta.node }));
    const ownEcho: unknown[] = [];
    one.state!.subscribe('acl', (d) => ownEcho.push(d));

    await one.state!.publish('acl', { rule: 'deny', topic: 'x/#' });
    await waitFor(() => got.length === 1, 2000, 'the state message');
    expect(got[0]).toEqual({ data: { rule: 'deny', topic: 'x/#' }, node: one.state!.nodeId });
    expect(ownEcho).toEqual([]); // a node does not hear itself

    // capture what went over the wire, then attack with it
    const captured: Buffer[] = [];
    const tap = new Redis(redisUrl);
    sniffers.push(tap);
    tap.on('messageBuffer', (_c: Buffer, m: Buffer) => captured.push(m));
    await tap.subscribe(two.state!.channel);
    await one.state!.publish('acl', { rule: 'allow' });
    await waitFor(() => captured.length === 1 && got.length === 2, 2000, 'the second message');
    expect(captured[0]!.includes(Buffer.from('allow'))).toBe(false); // sealed on the wire

    await raw.publish(two.state!.channel, captured[0]!); // replayed
    const foreign = new ClusterState(raw, raw, new Sealer(Keyring.fromBytes(Buffer.alloc(32, 9)), 'state'), prefix);
    await foreign.publish('acl', { rule: 'allow-all' }); // sealed with another key
    const forged = Buffer.from(captured[0]!);
    forged[forged.length - 20] = forged[forged.length - 20]! ^ 1;
    await raw.publish(two.state!.channel, forged); // altered
    await raw.publish(two.state!.channel, Buffer.from('{"v":1,"kind":"acl","data":{"rule":"allow-all"}}')); // not sealed
    await waitFor(() => events.filter((e) => e.type === 'cluster-rejected').length === 4, 2000, 'four rejections');
    expect(got).toHaveLength(2);
    expect(events.map((e) => (e.type === 'cluster-rejected' ? e.reason : e.type)).sort()).toEqual(['forged', 'not-sealed', 'replayed', 'unknown-key']);
    off();
  });

  it('other controls find the channel on the persistence control', async () => {
    const prefix = uniquePrefix('lookup');
    const key = keyFile(dir, 'lookup.key');
    const A = await inProcessNode(prefix, key.path);
    const control = A.broker.controls.get<PersistenceControl>('persistence');
    expect(control?.state?.nodeId).toMatch(/^[0-9a-f-]{36}$/);
    expect(typeof control?.state?.publish).toBe('function');
    expect(typeof control?.state?.subscribe).toBe('function');
  });
});
