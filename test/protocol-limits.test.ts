/**
 * Protocol limits (PR.SS-1) over real sockets: topic length, levels and UTF-8, client-id rules,
 * subscriptions per client, QoS 1/2 queues and in-flight windows, and a subscriber that never reads.
 * Each attack comes from 127.0.0.2 (raw sockets where mqtt.js would not misbehave) while a
 * legitimate client on 127.0.0.1 keeps working.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type net from 'node:net';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import type { ProtocolLimits } from '@bastion/middleware';
import type { ProfileInput } from '@bastion/profile';
import { connect, tryConnect, isRefusal, closed, waitFor, nextMessage, collectCount } from './support/mqtt.js';
import { connectPacket, publishPacket, rawSocket, socketClosed, subscribePacket, firstData } from './support/raw-mqtt.js';

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
  const dir = mkdtempSync(path.join(tmpdir(), 'bastion-pl-'));
  dirs.push(dir);
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

/** A raw client from the attacker's address, connected (CONNACK 0 read). */
async function rawClient(port: number, clientId: string, opts: { clean?: boolean; keepalive?: number } = {}) {
  const s = await rawSocket(port, ATTACKER);
  sockets.push(s);
  s.write(connectPacket({ clientId, ...opts }));
  expect([...(await firstData(s))].slice(0, 4)).toEqual([0x20, 0x02, 0x00, 0x00]);
  return s;
}

async function works(url: string, tag: string) {
  const sub = await client(url, { clientId: `ok-sub-${tag}` });
  await sub.subscribeAsync(`ok/${tag}`);
  const pub = await client(url, { clientId: `ok-pub-${tag}` });
  const got = nextMessage(sub, 5000);
  await pub.publishAsync(`ok/${tag}`, 'fine', { qos: 1 });
  expect((await got).payload).toBe('fine');
}

async function granted(c: mqtt.MqttClient, topics: string[]): Promise<number[]> {
  try {
    return (await c.subscribeAsync(topics)).map((g) => g.qos);
  } catch (err) {
    const packet = (err as { packet?: { granted?: number[] } }).packet;
    if (!packet?.granted) throw err;
    return packet.granted;
  }
}

describe('topics', () => {
  it('a PUBLISH to a topic too long or too deep closes that connection; such filters get SUBACK 0x80', async () => {
    const { url, events } = await start({ protocol: { maxTopicLength: 64, maxTopicLevels: 4 } });
    const watcher = await client(url, { clientId: 'watcher' });
    expect(await granted(watcher, ['a/b/c/d', 'a/b/c/d/e', `x/${'y'.repeat(70)}`, '#'])).toEqual([0, 128, 128, 0]);
    const long = await client(url, { clientId: 'long' });
    long.publish(`t/${'z'.repeat(100)}`, 'x');
    await closed(long);
    const deep = await client(url, { clientId: 'deep' });
    deep.publish('1/2/3/4/5', 'x');
    await closed(deep);
    const denied = events.filter((e) => e.type === 'publish.denied' && e.source === 'protocol-limits');
    expect(denied.map((e) => e.message)).toEqual(['topic longer than the limit', 'topic has more levels than the limit']);
    expect(denied[0]).toMatchObject({ control: 'PR.SS-1', reason: 'topic-invalid' });
    // multi-byte characters count in UTF-8 bytes: 30 × "é" is 60 bytes + 2 → fine; 40 × "é" → too long
    expect(await granted(watcher, [`é/${'é'.repeat(30)}`, `é/${'é'.repeat(40)}`])).toEqual([0, 128]);
    await works(url, 'topics');
  });

  it('refuses invalid UTF-8, U+0000 and control characters in topics', async () => {
    const { url, port, events } = await start({});
    const bad = [Buffer.from([0x61, 0x2f, 0xc3, 0x28]), Buffer.from([0x61, 0x00, 0x62]), Buffer.from('a/\u0007/b')];
    for (const [i, topic] of bad.entries()) {
      const s = await rawClient(port, `utf8-${i}`);
      s.write(publishPacket({ topic, payload: 'x' }));
      await socketClosed(s);
    }
    const denied = events.filter((e) => e.type === 'publish.denied' && e.source === 'protocol-limits');
    expect(denied.length).toBeGreaterThanOrEqual(2); // U+0000 may already be refused by the parser
    expect(denied.every((e) => e.message === 'topic has invalid UTF-8 or a control character')).toBe(true);
    // filters too
    const s = await rawClient(port, 'utf8-filter');
    const ack = firstData(s);
    s.write(subscribePacket(7, [{ topic: Buffer.from([0x66, 0xff]), qos: 0 }, { topic: 'fine/+', qos: 1 }]));
    expect([...(await ack)]).toEqual([0x90, 0x04, 0x00, 0x07, 0x80, 0x01]);
    await works(url, 'utf8');
  });
});

describe('client ids', () => {
  it('refuses ids that are too long, hold control characters or miss the pattern (CONNACK 2)', async () => {
    const { url, port, events } = await start({ protocol: { clientId: { maxLength: 16, pattern: '^[a-z0-9-]+$' } } });
    const long = await tryConnect(url, { clientId: 'a'.repeat(17) });
    expect(isRefusal(long) && long.code).toBe(2);
    const upper = await tryConnect(url, { clientId: 'Device-1' });
    expect(isRefusal(upper) && upper.code).toBe(2);
    const s = await rawSocket(port, ATTACKER);
    sockets.push(s);
    s.write(connectPacket({ clientId: Buffer.from('dev\u0001ice') }));
    expect([...(await firstData(s))]).toEqual([0x20, 0x02, 0x00, 0x02]);
    const refused = events.filter((e) => e.type === 'connection.refused' && e.source === 'protocol-limits');
    expect(refused).toHaveLength(3);
    expect(refused[0]).toMatchObject({ reason: 'client-id-rejected', control: 'PR.SS-1' });
    clients.push(await connect(url, { clientId: 'device-1' }));
    clients.push(await connect(url, { clientId: '' })); // the broker assigns one; not checked
  });
});

describe('subscriptions per client', () => {
  it('refuses filters beyond the cap, and counts again once some were unsubscribed', async () => {
    const { url } = await start({ protocol: { maxSubscriptionsPerClient: 10 }, rateLimits: { enabled: false } });
    const c = await client(url, { clientId: 'collector' });
    const first = Array.from({ length: 12 }, (_, i) => `s/${i}`);
    expect(await granted(c, first)).toEqual([...Array(10).fill(0), 128, 128]);
    expect(await granted(c, ['s/0'])).toEqual([0]); // the same filter again: no new subscription
    await c.unsubscribeAsync(['s/0', 's/1', 's/2']);
    await new Promise((r) => setTimeout(r, 1100)); // approvals younger than a second are kept
    expect(await granted(c, ['n/1', 'n/2', 'n/3', 'n/4'])).toEqual([0, 0, 0, 128]);
    expect(broker!.subscriptionsOf('collector')).toHaveLength(10);
  });
});

describe('slow consumers', () => {
  it('a subscriber that stops reading: QoS 0 for it is dropped (publishers are not held), then it is disconnected', async () => {
    // no backlog cap here: the drain timeout ends it, and until then QoS 0 for it is dropped
    const { url, port, events } = await start({ protocol: { slowConsumer: { maxBacklog: false, drainTimeout: '2s' } } });
    const s = await rawClient(port, 'frozen');
    const ack = firstData(s);
    s.write(subscribePacket(1, [{ topic: 'feed', qos: 0 }]));
    await ack;
    s.pause(); // never reads again: the kernel buffers fill, then the broker's
    const reader = await client(url, { clientId: 'reader' });
    await reader.subscribeAsync('feed');
    let received = 0;
    reader.on('message', () => received++);
    const pub = await client(url, { clientId: 'publisher' });
    const payload = Buffer.alloc(64 * 1024, 1);
    const total = 400; // 25 MiB: more than the socket buffers hold
    for (let i = 0; i < total; i++) await pub.publishAsync('feed', payload, { qos: 0 });
    await waitFor(() => received === total, 15_000, `the reader to get all ${total} messages`);
    await waitFor(() => events.some((e) => e.type === 'client.disconnected' && e.clientId === 'frozen'), 10_000, 'frozen disconnected');
    s.resume(); // a paused socket notices the close only when it reads
    await socketClosed(s, 5000);
    expect(events.find((e) => e.type === 'client.disconnected' && e.clientId === 'frozen')).toMatchObject({ reason: 'slow-consumer' });
    expect(events.some((e) => e.type === 'limit.exceeded' && e.clientId === 'frozen' && (e.detail as { limit?: string }).limit === 'outbound-backlog')).toBe(true);
    await works(url, 'after-frozen');
  });

  it('a QoS 1 subscriber that stops reading is disconnected once its backlog passes the cap', async () => {
    const { url, port, events } = await start({ protocol: { slowConsumer: { maxBacklog: '256KiB', drainTimeout: '30s' } } });
    const s = await rawClient(port, 'frozen-q1');
    const ack = firstData(s);
    s.write(subscribePacket(1, [{ topic: 'feed1', qos: 1 }]));
    await ack;
    s.pause();
    const reader = await client(url, { clientId: 'reader1' });
    await reader.subscribeAsync('feed1', { qos: 1 });
    let received = 0;
    reader.on('message', () => received++);
    const pub = await client(url, { clientId: 'publisher1' });
    const payload = Buffer.alloc(64 * 1024, 2);
    const total = 400;
    for (let i = 0; i < total; i++) await pub.publishAsync('feed1', payload, { qos: 1 });
    await waitFor(() => received === total, 15_000, `the reader to get all ${total} messages`);
    await waitFor(() => events.some((e) => e.type === 'client.disconnected' && e.clientId === 'frozen-q1'), 10_000, 'frozen-q1 disconnected');
    s.resume();
    await socketClosed(s, 5000);
    expect(events.find((e) => e.type === 'client.disconnected' && e.clientId === 'frozen-q1')).toMatchObject({ reason: 'slow-consumer' });
  });
});

describe('QoS 1/2 queues and in-flight windows', () => {
  it('keeps at most maxQueuedPerClient messages for an offline persistent session', async () => {
    const { url, events } = await start({ protocol: { maxQueuedPerClient: 10 } });
    const away = await client(url, { clientId: 'away', clean: false });
    await away.subscribeAsync('q/#', { qos: 1 });
    away.end(true);
    await new Promise((r) => setTimeout(r, 100));
    const pub = await client(url, { clientId: 'pq' });
    for (let i = 0; i < 50; i++) await pub.publishAsync('q/x', String(i), { qos: 1 });
    const pl = broker!.controls.get<ProtocolLimits>('protocol-limits')!;
    expect(pl.queued('away')).toBe(10);
    expect(events.find((e) => e.type === 'limit.exceeded' && e.clientId === 'away')).toMatchObject({ control: 'PR.SS-1', detail: expect.objectContaining({ limit: 'maxQueuedPerClient', consequence: 'drop' }) });
    const back = mqtt.connect(url, { clientId: 'away', clean: false, reconnectPeriod: 0, protocolVersion: 4 });
    clients.push(back);
    const got = await collectCount(back, 10);
    expect(got.map((m) => m.payload)).toEqual(Array.from({ length: 10 }, (_, i) => String(i)));
    await waitFor(() => pl.queued('away') === undefined, 3000, 'the queue to drain as messages are acknowledged');
  });

  it('disconnects a client holding more QoS 2 messages without PUBREL than allowed', async () => {
    const { url, port } = await start({ protocol: { maxInflightInbound: 5 } });
    const s = await rawClient(port, 'qos2-hoarder');
    for (let i = 1; i <= 6; i++) s.write(publishPacket({ topic: 'h', payload: 'x', qos: 2, messageId: i }));
    await socketClosed(s, 5000);
    await works(url, 'qos2');
  });

  it('limits change at runtime', async () => {
    const { url } = await start({});
    const pl = broker!.controls.get<ProtocolLimits>('protocol-limits')!;
    pl.update({ maxTopicLevels: 2 });
    const c = await client(url, { clientId: 'rt' });
    expect(await granted(c, ['a/b', 'a/b/c'])).toEqual([0, 128]);
    expect(broker!.connectionLimits.maxInflightInbound).toBe(1000);
    pl.update({ maxInflightInbound: 7 });
    expect(broker!.connectionLimits.maxInflightInbound).toBe(7);
    expect(() => pl.update({ clientId: { pattern: '(' } })).toThrow(expect.objectContaining({ code: 'BASTION_ERR_PROTOCOL_LIMITS' }));
  });
});
