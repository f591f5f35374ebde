/**
 * Recovery (RC.RP-1): a broker process killed with SIGKILL and started again loses no queued QoS 1
 * message and no retained message; Redis never holds a payload in plaintext; a Redis that goes
 * away is an event and a retry, never a crash; a wrong key stops the start with a clear error.
 * The broker is the real `bastion start --profile <file>` (run `npx tsc -b` first).
 */
import { describe, it, expect, afterEach, beforeAll, afterAll } from 'vitest';
import { inject } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import { Redis } from 'ioredis';
import { bastionStart, bastion, type Running } from './support/cli.js';
import { connect, waitFor, nextMessage } from './support/mqtt.js';
import { freePort } from './support/redis-server.js';
import { OwnRedis, containing, keyFile, scanAll, tempDir, uniquePrefix } from './support/persistence.js';

const redisUrl = inject('redisUrl');
const dir = tempDir('restart');
let raw: Redis;
const running: Running[] = [];
const clients: mqtt.MqttClient[] = [];
const ownRedis: OwnRedis[] = [];

beforeAll(() => {
  raw = new Redis(redisUrl);
});
afterAll(async () => {
  await raw.quit();
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  // stop() waits for 'exit': skip processes that already ended (exitCode stays null after a signal)
  for (const r of running.splice(0)) if (r.child.exitCode === null && r.child.signalCode === null) await r.stop('SIGKILL');
  for (const r of ownRedis.splice(0)) await r.stop();
});

function writeProfile(name: string, port: number, persistence: Record<string, unknown>): string {
  const file = path.join(dir, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({ version: 1, listeners: [{ protocol: 'mqtt', host: '127.0.0.1', port }], authentication: { anonymous: true }, logging: { level: 'info' }, persistence }, null, 2),
  );
  return file;
}

async function startBroker(profile: string): Promise<Running> {
  const r = bastionStart(['--profile', profile], { cwd: dir });
  running.push(r);
  await r.waitFor(/listening on mqtt:\/\//, 20_000);
  return r;
}

async function client(url: string, opts: mqtt.IClientOptions = {}) {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

describe('restart without loss', () => {
  it('1,000 queued QoS 1 messages and a retained message survive SIGKILL; Redis holds none of their plaintext', async () => {
    const prefix = uniquePrefix('restart');
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    const key = keyFile(dir, 'restart.key');
    const profile = writeProfile('restart', port, { store: 'redis', redis: { url: redisUrl, prefix }, encryption: { keys: [{ file: key.path }] } });
    const broker = await startBroker(profile);

    const sub = await client(url, { clientId: 'restart-sub', clean: false });
    await sub.subscribeAsync('restart/#', { qos: 1 });
    sub.end(true);
    const pub = await client(url, { clientId: 'restart-pub' });
    await pub.publishAsync('restart/retained', 'retained-plaintext-RST', { qos: 1, retain: true });
    const N = 1000;
    for (let i = 0; i < N; i++) await pub.publishAsync('restart/q', `queued-plaintext-RST-${i}`, { qos: 1 });
    // Aedes acknowledges a QoS 1 PUBLISH before the store write completes (see docs/persistence.md):
    // the kill below comes once Redis holds every queue entry, i.e. once the broker has persisted
    // what it acknowledged. That window is Aedes' PUBACK ordering, not the store's durability.
    let queued = 0;
    const poll = setInterval(() => void raw.llen(`${prefix}outgoing:restart-sub`).then((n) => (queued = n)), 20);
    try {
      await waitFor(() => queued === N + 1, 10_000, 'all queue entries in Redis'); // + the retained one, queued too
    } finally {
      clearInterval(poll);
    }
    expect(await broker.stop('SIGKILL')).toBe(null); // killed, no clean shutdown
    for (const c of clients.splice(0)) c.end(true);

    await startBroker(profile);
    const got = new Set<string>();
    let deliveries = 0;
    const back = mqtt.connect(url, { clientId: 'restart-sub', clean: false, reconnectPeriod: 0, protocolVersion: 4 });
    clients.push(back);
    back.on('message', (_t, payload) => {
      deliveries++;
      got.add(payload.toString());
    });
    await waitFor(() => got.size === N + 1, 20_000, `all ${N + 1} messages after the restart`);
    expect([...got].sort()).toEqual([...Array.from({ length: N }, (_, i) => `queued-plaintext-RST-${i}`), 'retained-plaintext-RST'].sort());
    expect(deliveries).toBeGreaterThanOrEqual(N + 1); // duplicates allowed, none lost

    const late = await client(url, { clientId: 'restart-late' });
    const retained = nextMessage(late);
    await late.subscribeAsync('restart/retained', { qos: 1 });
    expect(await retained).toMatchObject({ payload: 'retained-plaintext-RST', retain: true });

    // every key in Redis, read by its type: no plaintext payload anywhere
    const everything = await scanAll(raw);
    expect(everything.some((v) => v.key.startsWith(prefix))).toBe(true);
    expect(containing(everything, 'plaintext-RST')).toEqual([]);
  }, 90_000);
});

describe('a Redis that goes away', () => {
  it('is an error event and a retry: the broker process lives on and serves again when Redis is back', async () => {
    const own = new OwnRedis(await freePort());
    ownRedis.push(own);
    await own.start();
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    const key = keyFile(dir, 'outage.key');
    // cluster mode: mqemitter-redis (which ends the process on an unhandled connection error) is in use too
    const profile = writeProfile('outage', port, { store: 'redis', cluster: true, redis: { url: own.url, prefix: 'outage:' }, encryption: { keys: [{ file: key.path }] } });
    const broker = await startBroker(profile);
    const sub = await client(url, { clientId: 'outage-sub' });
    await sub.subscribeAsync('outage/#', { qos: 1 });
    const first = nextMessage(sub, 5000);
    const pub = await client(url, { clientId: 'outage-pub', reconnectPeriod: 0 });
    await pub.publishAsync('outage/x', 'before', { qos: 1 });
    expect((await first).payload).toBe('before');

    await own.stop();
    await broker.waitFor(/persistence\.unavailable/, 15_000);
    pub.publish('outage/x', 'during', { qos: 0 }); // traffic while Redis is gone must not crash it either
    await new Promise((r) => setTimeout(r, 3000)); // ioredis keeps retrying meanwhile
    expect(broker.child.exitCode).toBe(null);
    expect(broker.output()).not.toMatch(/Unhandled|uncaught/i);

    await own.start();
    await broker.waitFor(/persistence\.restored/, 20_000);
    expect(broker.child.exitCode).toBe(null);
    for (const c of clients.splice(0)) c.end(true);
    const sub2 = await client(url, { clientId: 'outage-sub-2' });
    await sub2.subscribeAsync('outage/#', { qos: 1 });
    const after = nextMessage(sub2, 5000);
    const pub2 = await client(url, { clientId: 'outage-pub-2' });
    await pub2.publishAsync('outage/x', 'after', { qos: 1 });
    expect((await after).payload).toBe('after');
  }, 90_000);
});

describe('fail closed at start', () => {
  it('`bastion start` with a key that is not the store\'s exits 1 with one clear line, leaving nothing running', async () => {
    const prefix = uniquePrefix('failclosed');
    const port = await freePort();
    const right = keyFile(dir, 'fc-right.key');
    const wrong = keyFile(dir, 'fc-wrong.key');
    const good = writeProfile('fc-good', port, { store: 'redis', redis: { url: redisUrl, prefix }, encryption: { keys: [{ file: right.path }] } });
    const broker = await startBroker(good);
    const c = await client(`mqtt://127.0.0.1:${port}`);
    await c.publishAsync('fc/x', 'fc', { qos: 1, retain: true });
    await broker.stop('SIGTERM');
    const bad = writeProfile('fc-bad', port, { store: 'redis', redis: { url: redisUrl, prefix }, encryption: { keys: [{ file: wrong.path }] } });
    const r = bastion(['start', '--profile', bad]); // spawnSync: returns only when the process ends
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bastion: the Redis store holds records sealed with key [0-9a-f]{8}, which is not among the configured keys/);
    const noKeyFile = writeProfile('fc-nokey', port, { store: 'redis', redis: { url: redisUrl, prefix }, encryption: { keys: [{ file: path.join(dir, 'missing.key') }] } });
    const r2 = bastion(['start', '--profile', noKeyFile]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/cannot read key file .*missing\.key \(ENOENT\)/);
  }, 60_000);
});
