/**
 * The encrypting persistence (PR.SS-6) over Aedes' memory store and aedes-persistence-redis:
 * every stored payload sealed, bound to its topic (and client), packets never changed in place,
 * wrong or missing keys refused at start, key rotation, and the profile section.
 */
import { describe, it, expect, afterEach, beforeAll, afterAll } from 'vitest';
import { inject } from 'vitest';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import { createCoreBroker, type BastionBroker } from '@bastion/core';
import { openStore, isSealed, sealedKeyId, decodeRecord, encodeRecord, Keyring, MEMORY_SEAL_AFTER, type Store, type StoredPacket, type AedesPersistence, type EncryptingPersistence } from '@bastion/persistence';
import { checkProfile, resolveProfile, type ProfileInput } from '@bastion/profile';
import type { PersistenceControl } from '../packages/broker/src/controls/persistence.js';
import { connect, nextMessage, collect, collectCount, waitFor } from './support/mqtt.js';
import { OwnRedis, containing, keyFile, scanAll, tempDir, uniquePrefix } from './support/persistence.js';
import { makeTestPki } from './support/pki.js';
import { freePort } from './support/redis-server.js';
import { bastion } from './support/cli.js';
import path from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';

const silent = pino({ level: 'silent' });
const redisUrl = inject('redisUrl');
let raw: Redis;
const brokers: Array<Bastion | BastionBroker> = [];
const stores: Store[] = [];
const clients: mqtt.MqttClient[] = [];
const ownRedis: OwnRedis[] = [];
const dir = tempDir('persistence');

beforeAll(() => {
  raw = new Redis(redisUrl);
});
afterAll(async () => {
  await raw.quit();
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  for (const b of brokers.splice(0)) await b.close();
  for (const s of stores.splice(0)) await s.close();
  for (const r of ownRedis.splice(0)) await r.stop();
});

async function client(url: string, opts: mqtt.IClientOptions = {}) {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

function redisSection(prefix: string, keys: Array<{ file: string } | { value: string }> | undefined, extra: Record<string, unknown> = {}) {
  return {
    store: 'redis' as const,
    redis: { url: redisUrl, prefix },
    ...(keys ? { encryption: { keys } } : {}),
    ...extra,
  };
}

async function start(persistence: Record<string, unknown> | undefined, extra: Partial<ProfileInput> = {}) {
  const profile = { version: 1, listeners: [{ protocol: 'mqtt', port: 0 }], authentication: { anonymous: true }, ...(persistence ? { persistence } : {}), ...extra } as ProfileInput;
  const broker = await createBroker({ profile, baseDir: dir, logger: silent });
  brokers.push(broker);
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  const url = `mqtt://127.0.0.1:${Object.values(broker.addresses())[0]!.port}`;
  const control = broker.controls.get<PersistenceControl>('persistence');
  return { broker, url, events, control };
}

/** Read every record a wrapped store holds for a client and for retained messages, as stored (sealed). */
async function storedRecords(inner: AedesPersistence, clientId: string): Promise<{ queued: StoredPacket[]; retained: StoredPacket[] }> {
  const queued: StoredPacket[] = [];
  for await (const p of inner.outgoingStream({ id: clientId })) queued.push(p as StoredPacket);
  const retained: StoredPacket[] = [];
  for await (const p of inner.createRetainedStream('#')) retained.push(p as StoredPacket);
  return { queued, retained };
}

describe('the encrypting persistence over the memory store', () => {
  it('queues and retained messages are sealed in the store and delivered in plaintext', async () => {
    const key = keyFile(dir, 'mem.key');
    const { url, control } = await start({ encryption: { keys: [{ file: key.path }] } });
    const sub = await client(url, { clientId: 'mem-sub', clean: false });
    await sub.subscribeAsync('secret/#', { qos: 1 });
    sub.end(true);
    const pub = await client(url, { clientId: 'mem-pub' });
    for (let i = 0; i < 5; i++) await pub.publishAsync('secret/a', `plaintext-mem-${i}`, { qos: 1 });
    await pub.publishAsync('secret/r', 'retained-mem-secret', { qos: 1, retain: true });

    const persistence = control!.store.persistence as EncryptingPersistence;
    const inner = persistence.inner;
    // queued records rest in plaintext for MEMORY_SEAL_AFTER ms at most, then are sealed in place
    await waitFor(() => persistence.atRest!.pending === 0, 2000, 'the queued records sealed at rest');
    expect(persistence.atRest!.sealed).toBe(6);
    const { queued, retained } = await storedRecords(inner, 'mem-sub');
    expect(queued.length).toBe(6);
    // Aedes asks this before it builds a (decrypting) stream for a CONNECT: answered through the seal
    expect([persistence.hasOutgoing({ id: 'mem-sub' }), persistence.hasOutgoing({ id: 'mem-pub' })]).toEqual([true, false]);
    expect(retained.length).toBe(1);
    for (const r of [...queued, ...retained]) {
      expect(isSealed(r.payload)).toBe(true);
      expect(sealedKeyId(r.payload)).toBe(Keyring.fromBytes(key.bytes).current.id);
      expect((r.payload as Buffer).includes(Buffer.from('plaintext-mem'))).toBe(false);
      expect((r.payload as Buffer).includes(Buffer.from('retained-mem-secret'))).toBe(false);
      expect(r.topic.startsWith('secret/')).toBe(true); // topics stay as Aedes needs them
    }

    const back = mqtt.connect(url, { clientId: 'mem-sub', clean: false, reconnectPeriod: 0, protocolVersion: 4 });
    clients.push(back);
    const got = collectCount(back, 6);
    await new Promise((r) => back.once('connect', r));
    const msgs = await got;
    expect(msgs.map((m) => m.payload).sort()).toEqual([0, 1, 2, 3, 4].map((i) => `plaintext-mem-${i}`).concat('retained-mem-secret').sort());

    const late = await client(url, { clientId: 'mem-late' });
    const retainedMsg = nextMessage(late);
    await late.subscribeAsync('secret/r', { qos: 1 });
    expect(await retainedMsg).toMatchObject({ topic: 'secret/r', payload: 'retained-mem-secret', retain: true });
  });
});

describe('sealing at rest (memory store)', () => {
  const topic = 'rest/a';
  const packet = (n: number, payload: string): StoredPacket => ({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false, brokerId: 'b', brokerCounter: n });
  async function memoryStore() {
    const store = await openStore({ store: 'memory', cluster: false, encryption: { keys: [{ value: Buffer.alloc(32, 9).toString('hex') }] } });
    stores.push(store);
    return store.persistence as EncryptingPersistence;
  }
  const queued = async (p: EncryptingPersistence, id: string) => {
    const out: StoredPacket[] = [];
    for await (const r of p.inner.outgoingStream({ id })) out.push(r as StoredPacket);
    return out;
  };

  it('a record acknowledged before it has rested is never sealed; one left in the queue is sealed in place, and reads always get plaintext', async () => {
    const p = await memoryStore();
    expect(p.atRest?.after).toBe(MEMORY_SEAL_AFTER);
    // queued for two subscribers, delivered and acknowledged by both at once: no seal at all
    await p.outgoingEnqueueCombi([{ clientId: 'x' }, { clientId: 'y' }], packet(1, 'acked-quickly'));
    for (const id of ['x', 'y']) {
      await p.outgoingUpdate({ id }, { ...packet(1, 'acked-quickly'), messageId: 7 });
      await p.outgoingClearMessageId({ id }, { messageId: 7 });
    }
    expect(p.atRest!.skipped).toBe(1);
    // queued for an offline subscriber: plaintext while it rests (the reader gets a copy) …
    await p.outgoingEnqueue({ clientId: 'z' }, packet(2, 'left-in-the-queue'));
    const early: Buffer[] = [];
    for await (const r of p.outgoingStream({ id: 'z' })) early.push((r as StoredPacket).payload as Buffer);
    expect(early.map(String)).toEqual(['left-in-the-queue']);
    // … then sealed in place: the store holds an envelope, not the plaintext
    await waitFor(() => p.atRest!.pending === 0, 2000, 'the record sealed');
    expect(p.atRest!.sealed).toBe(1);
    const [stored] = await queued(p, 'z');
    expect(isSealed(stored!.payload)).toBe(true);
    expect((stored!.payload as Buffer).includes(Buffer.from('left-in-the-queue'))).toBe(false);
    // the copy handed out earlier was not overwritten by the seal, and reading now opens the envelope
    expect(early.map(String)).toEqual(['left-in-the-queue']);
    const late: string[] = [];
    for await (const r of p.outgoingStream({ id: 'z' })) late.push(String((r as StoredPacket).payload));
    expect(late).toEqual(['left-in-the-queue']);
  });

  it('a subscriber that acknowledges only one of two queues leaves the record to be sealed for the other', async () => {
    const p = await memoryStore();
    await p.outgoingEnqueueCombi([{ clientId: 'on' }, { clientId: 'off' }], packet(3, 'half-acked'));
    await p.outgoingUpdate({ id: 'on' }, { ...packet(3, 'half-acked'), messageId: 1 });
    await p.outgoingClearMessageId({ id: 'on' }, { messageId: 1 });
    await waitFor(() => p.atRest!.pending === 0, 2000, 'the record sealed');
    expect(p.atRest!.sealed).toBe(1);
    const [stored] = await queued(p, 'off');
    expect(isSealed(stored!.payload)).toBe(true);
  });

  it('a buffer every queue released is wiped and reused for the next record of its length, and never offered again for its old message', async () => {
    const p = await memoryStore();
    // a record from another broker, delivered to 'a' as message id 5
    await p.outgoingEnqueue({ clientId: 'a' }, { ...packet(99, 'other-broker'), brokerId: 'o' });
    await p.outgoingUpdate({ id: 'a' }, { ...packet(99, 'other-broker'), brokerId: 'o', messageId: 5 });
    // message 10 queued for 'm', delivered and acknowledged: its buffer is released …
    const m10 = packet(10, 'first-record'); // Aedes hands the store the same payload each time
    await p.outgoingEnqueue({ clientId: 'm' }, m10);
    const [held] = await queued(p, 'm');
    await p.outgoingUpdate({ id: 'm' }, { ...m10, messageId: 1 });
    await p.outgoingClearMessageId({ id: 'm' }, { messageId: 1 });
    const buf = held!.payload as Buffer;
    expect(buf.includes(Buffer.from('first-record'))).toBe(false); // … and wiped at once
    // … and reused for the next record of the same length
    await p.outgoingEnqueue({ clientId: 'n' }, packet(11, 'other-record'));
    const [next] = await queued(p, 'n');
    expect(next!.payload).toBe(buf);
    expect(p.atRest!.reused).toBe(1);
    const read: string[] = [];
    for await (const r of p.outgoingStream({ id: 'n' })) read.push(String((r as StoredPacket).payload));
    expect(read).toEqual(['other-record']);
    // a late re-store of message 10 (here replacing 'a''s record with the same message id) is sealed
    // afresh: the buffer it was queued in now holds message 11
    await p.outgoingUpdate({ id: 'a' }, { ...m10, messageId: 5 });
    const onA: string[] = [];
    for await (const r of p.outgoingStream({ id: 'a' })) onA.push(String((r as StoredPacket).payload));
    expect(onA).toEqual(['first-record']);
    // message 11, left in its queue, is still sealed at rest in that buffer
    await waitFor(() => p.atRest!.pending === 0, 2000, 'the record sealed');
    expect(isSealed(buf)).toBe(true);
    expect(buf.includes(Buffer.from('other-record'))).toBe(false);
  });
});

describe('the encrypting persistence over Redis', () => {
  async function harness(prefix: string, keys: Buffer[] = [Buffer.alloc(32, 7)]) {
    const store = await openStore(
      { store: 'redis', redis: { url: redisUrl, prefix, connectTimeout: 5000 }, cluster: false, encryption: { keys: keys.map((k) => ({ value: k.toString('hex') })) } },
    );
    stores.push(store);
    const events: unknown[] = [];
    store.onEvent = (e) => events.push(e);
    const core = await createCoreBroker({ listeners: [{ transport: 'mqtt', port: 0 }], persistence: store.persistence, logger: silent });
    brokers.push(core);
    const url = `mqtt://127.0.0.1:${Object.values(core.addresses())[0]!.port}`;
    return { store, persistence: store.persistence as EncryptingPersistence, events, url, aedes: core.aedes };
  }

  it('every record kind is sealed in Redis: retained, queued (also re-stored by outgoingUpdate), incoming QoS 2, wills', async () => {
    const prefix = uniquePrefix('kinds');
    const { persistence, url } = await harness(prefix);
    const packet = (topic: string, payload: string, extra: Partial<StoredPacket> = {}): StoredPacket => ({
      cmd: 'publish',
      topic,
      payload: Buffer.from(payload),
      qos: 1,
      retain: false,
      dup: false,
      brokerId: 'b1',
      brokerCounter: 41,
      ...extra,
    });
    await persistence.storeRetained(packet('k/retained', 'SECRET-retained', { retain: true }));
    await persistence.outgoingEnqueueCombi([{ clientId: 'c1' }, { clientId: 'c2' }], packet('k/queued', 'SECRET-queued'));
    await persistence.outgoingUpdate({ id: 'c1' }, packet('k/queued', 'SECRET-queued', { messageId: 7 }));
    await persistence.outgoingEnqueueCombi([{ clientId: 'c1' }], packet('k/q2', 'SECRET-qos2', { qos: 2, brokerCounter: 42 }));
    await persistence.outgoingUpdate({ id: 'c1' }, packet('k/q2', 'SECRET-qos2', { qos: 2, brokerCounter: 42, messageId: 8 }));
    await persistence.incomingStorePacket({ id: 'c3' }, packet('k/incoming', 'SECRET-incoming', { qos: 2, messageId: 9 }));
    // a will, through a real client: Aedes stores it before the CONNACK
    const willer = await client(url, { clientId: 'c4', will: { topic: 'k/will', payload: Buffer.from('SECRET-will'), qos: 1, retain: false } });

    const values = await scanAll(raw, prefix);
    expect(values.length).toBeGreaterThan(5);
    expect(containing(values, 'SECRET')).toEqual([]);
    // each payload kind is there, sealed
    const types = new Set(values.map((v) => v.key.slice(prefix.length).split(':')[0]));
    for (const t of ['retained', 'packet', 'incoming', 'will', 'outgoing']) expect(types.has(t)).toBe(true);

    // and everything reads back in plaintext
    const retained: StoredPacket[] = [];
    for await (const p of persistence.createRetainedStream('k/#')) retained.push(p as StoredPacket);
    expect(retained.map((p) => String(p.payload))).toEqual(['SECRET-retained']);
    const queued: StoredPacket[] = [];
    for await (const p of persistence.outgoingStream({ id: 'c1' })) queued.push(p as StoredPacket);
    expect(queued.map((p) => String(p.payload)).sort()).toEqual(['SECRET-qos2', 'SECRET-queued']);
    expect(String((await persistence.incomingGetPacket({ id: 'c3' }, { messageId: 9 })).payload)).toBe('SECRET-incoming');
    expect(String((await persistence.getWill({ id: 'c4' }))?.payload)).toBe('SECRET-will');
    willer.end(true);
  });

  it('the packet Aedes re-stores on delivery reuses the envelope sealed at enqueue (whatever the key id)', async () => {
    // one key whose id has its top bit set, one without
    const high = [...Array(256).keys()].map((i) => Buffer.alloc(32, i)).find((b) => Keyring.fromBytes(b).current.idNumber >= 2 ** 31)!;
    const low = [...Array(256).keys()].map((i) => Buffer.alloc(32, i)).find((b) => Keyring.fromBytes(b).current.idNumber < 2 ** 31)!;
    for (const key of [high, low]) {
      const prefix = uniquePrefix('reuse');
      const { persistence } = await harness(prefix, [key]);
      const payload = Buffer.from('SECRET-reuse');
      const p: StoredPacket = { cmd: 'publish', topic: 'r/x', payload, qos: 1, retain: false, dup: false, brokerId: 'b9', brokerCounter: 5 };
      const stored = async () => decodeRecord((await raw.getBuffer(`${prefix}packet:b9:5`))!)!.payload as Buffer;
      await persistence.outgoingEnqueueCombi([{ clientId: 'c' }], p);
      const atEnqueue = await stored();
      await persistence.outgoingUpdate({ id: 'c' }, { ...p, messageId: 1 }); // the same message, as Aedes' QoSPacket carries it
      expect((await stored()).equals(atEnqueue)).toBe(true);
      await persistence.outgoingUpdate({ id: 'c' }, { ...p, payload: Buffer.from('SECRET-reuse'), messageId: 1 }); // equal bytes, another buffer: sealed afresh
      const resealed = await stored();
      expect(resealed.equals(atEnqueue)).toBe(false);
      expect(sealedKeyId(resealed)).toBe(Keyring.fromBytes(key).current.id);
    }
  });

  it('an empty retained payload (a delete) passes through and removes the retained message', async () => {
    const prefix = uniquePrefix('delete');
    const { url } = await harness(prefix);
    const p = await client(url);
    // Aedes acknowledges before it stores: wait for the store
    const stored = async (want: number) => {
      for (let i = 0; i < 100 && (await raw.hexists(`${prefix}retained`, 'd/x')) !== want; i++) await new Promise((r) => setTimeout(r, 20));
      return raw.hexists(`${prefix}retained`, 'd/x');
    };
    await p.publishAsync('d/x', 'SECRET-d', { qos: 1, retain: true });
    expect(await stored(1)).toBe(1);
    await p.publishAsync('d/x', '', { qos: 1, retain: true });
    expect(await stored(0)).toBe(0);
    const c = await client(url);
    const got = collect(c, 500);
    await c.subscribeAsync('d/#');
    expect(await got).toEqual([]);
  });

  it('never changes the packet it is given (Aedes hands the same object to subscribers)', async () => {
    const { persistence } = await harness(uniquePrefix('nomutate'));
    const payload = Buffer.from('SECRET-live');
    const p: StoredPacket = { cmd: 'publish', topic: 'm/x', payload, qos: 1, retain: true, dup: false, brokerId: 'b', brokerCounter: 1, writeCallback: () => undefined };
    const before = { ...p };
    await persistence.storeRetained(p);
    await persistence.outgoingEnqueueCombi([{ clientId: 'x' }], p);
    await persistence.outgoingUpdate({ id: 'x' }, { ...p, messageId: 3 });
    await persistence.incomingStorePacket({ id: 'x' }, p);
    await persistence.putWill({ id: 'x' }, p);
    expect(p).toEqual(before);
    expect(p.payload).toBe(payload);
    expect(payload.toString()).toBe('SECRET-live');
  });

  it('a live subscriber and a persistent session both get plaintext while the store gets sealed records', async () => {
    const prefix = uniquePrefix('live');
    const { url } = await harness(prefix);
    const live = await client(url, { clientId: 'live-sub' });
    await live.subscribeAsync('live/#', { qos: 1 });
    const persistent = await client(url, { clientId: 'persistent-sub', clean: false });
    await persistent.subscribeAsync('live/#', { qos: 1 });
    const a = collectCount(live, 3);
    const b = collectCount(persistent, 3);
    const pub = await client(url);
    for (let i = 0; i < 3; i++) await pub.publishAsync('live/t', `SECRET-live-${i}`, { qos: 1 });
    expect((await a).map((m) => m.payload)).toEqual(['SECRET-live-0', 'SECRET-live-1', 'SECRET-live-2']);
    expect((await b).map((m) => m.payload)).toEqual(['SECRET-live-0', 'SECRET-live-1', 'SECRET-live-2']);
    expect(containing(await scanAll(raw, prefix), 'SECRET')).toEqual([]);
  });

  it('a record moved to another topic or another client does not open: it is reported and never served', async () => {
    const prefix = uniquePrefix('moved');
    const { persistence, events, url } = await harness(prefix);
    await persistence.storeRetained({ cmd: 'publish', topic: 'a/secret', payload: Buffer.from('SECRET-a'), qos: 0, retain: true, dup: false });
    await persistence.incomingStorePacket({ id: 'alice' }, { cmd: 'publish', topic: 'a/in', payload: Buffer.from('SECRET-in'), qos: 2, messageId: 5 });
    // an attacker with Redis access copies the sealed retained record to another topic (rewriting its topic field too)
    const msgpack = { decode: (b: Buffer) => decodeRecord(b)!, encode: encodeRecord };
    const sealed = (await raw.hgetBuffer(`${prefix}retained`, 'a/secret'))!;
    const moved = msgpack.decode(sealed);
    moved.topic = 'b/public';
    await raw.hset(`${prefix}retained`, 'b/public', msgpack.encode(moved));
    // and alice's incoming QoS 2 record to mallory
    await raw.hset(`${prefix}incoming:mallory`, '5', (await raw.hgetBuffer(`${prefix}incoming:alice`, '5'))!);

    const c = await client(url);
    const got = collect(c, 600);
    await c.subscribeAsync('b/public', { qos: 0 });
    expect(await got).toEqual([]);
    await expect(persistence.incomingGetPacket({ id: 'mallory' }, { messageId: 5 })).rejects.toThrow('no such packet');
    expect(String((await persistence.incomingGetPacket({ id: 'alice' }, { messageId: 5 })).payload)).toBe('SECRET-in');
    expect(events).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ type: 'record-rejected', kind: 'R', reason: 'forged', topic: 'b/public' }),
        expect.objectContaining({ type: 'record-rejected', kind: 'I', reason: 'forged', clientId: 'mallory' }),
      ]),
    );
  });
});

describe('keys: fail closed at start, rotation', () => {
  it('a missing key file, a wrong key, an encrypted store without keys and a plaintext store with keys are refused at start', async () => {
    const prefix = uniquePrefix('wrong');
    const right = keyFile(dir, 'right.key');
    const wrong = keyFile(dir, 'wrong.key');
    const first = await start(redisSection(prefix, [{ file: right.path }]));
    const pub = await client(first.url);
    await pub.publishAsync('w/x', 'SECRET-w', { qos: 1, retain: true });
    pub.end(true);
    await first.broker.close();

    const refused = async (persistence: Record<string, unknown>) => {
      const err = await start(persistence).then(
        () => undefined,
        (e: unknown) => e as { code?: string; message: string },
      );
      expect(err, 'the broker must not start').toBeDefined();
      return err!;
    };
    const missing = await refused(redisSection(prefix, [{ file: path.join(dir, 'no-such.key') }]));
    expect(missing.code).toBe('BASTION_ERR_PERSISTENCE_KEY');
    expect(missing.message).toContain('no-such.key');
    const wrongKey = await refused(redisSection(prefix, [{ file: wrong.path }]));
    expect(wrongKey.code).toBe('BASTION_ERR_PERSISTENCE_KEY');
    expect(wrongKey.message).toContain(Keyring.fromBytes(right.bytes).current.id);
    const noKey = await refused(redisSection(prefix, undefined));
    expect(noKey.code).toBe('BASTION_ERR_PERSISTENCE_KEY');

    const plainPrefix = uniquePrefix('plain');
    const plain = await start(redisSection(plainPrefix, undefined));
    const p2 = await client(plain.url);
    await p2.publishAsync('w/x', 'plain', { qos: 1, retain: true });
    p2.end(true);
    await plain.broker.close();
    const sealedOnPlain = await refused(redisSection(plainPrefix, [{ file: right.path }]));
    expect(sealedOnPlain.code).toBe('BASTION_ERR_PERSISTENCE_PLAINTEXT');

    // the right key still works, and the retained message is intact
    const again = await start(redisSection(prefix, [{ file: right.path }]));
    const c = await client(again.url);
    const m = nextMessage(c);
    await c.subscribeAsync('w/x');
    expect((await m).payload).toBe('SECRET-w');
  });

  it('rotation: a new first key writes, old records stay readable, `bastion keys rotate` re-seals them, then the old key can go', async () => {
    const prefix = uniquePrefix('rotate');
    const k1 = keyFile(dir, 'k1.key');
    const k2 = keyFile(dir, 'k2.key');
    const id1 = Keyring.fromBytes(k1.bytes).current.id;
    const id2 = Keyring.fromBytes(k2.bytes).current.id;
    const a = await start(redisSection(prefix, [{ file: k1.path }]));
    const p = await client(a.url);
    await p.publishAsync('r/old', 'SECRET-old', { qos: 1, retain: true });
    p.end(true);
    await a.broker.close();

    const b = await start(redisSection(prefix, [{ file: k2.path }, { file: k1.path }]));
    const p2 = await client(b.url);
    await p2.publishAsync('r/new', 'SECRET-new', { qos: 1, retain: true });
    const r = await client(b.url);
    const got = collectCount(r, 2);
    await r.subscribeAsync('r/#');
    expect((await got).map((m) => m.payload).sort()).toEqual(['SECRET-new', 'SECRET-old']);
    const ids = async () => {
      const out: string[] = [];
      for (const [, v] of Object.entries(await raw.hgetallBuffer(`${prefix}retained`))) out.push(String(sealedKeyId(decodeRecord(v)!.payload)));
      return out.sort();
    };
    expect(await ids()).toEqual([id1, id2].sort());
    for (const c of clients.splice(0)) c.end(true);
    await b.broker.close();

    const profileFile = path.join(dir, 'rotate.yaml');
    writeFileSync(
      profileFile,
      JSON.stringify({ version: 1, listeners: [{ protocol: 'mqtt', port: 0 }], authentication: { anonymous: true }, persistence: redisSection(prefix, [{ file: k2.path }, { file: k1.path }]) }),
    );
    const rotated = bastion(['keys', 'rotate', '--profile', profileFile]);
    expect(rotated.stderr).toBe('');
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toMatch(/re-sealed 1 record/);
    expect(await ids()).toEqual([id2, id2]);

    // now k2 alone opens the store
    const c2 = await start(redisSection(prefix, [{ file: k2.path }]));
    const r2 = await client(c2.url);
    const got2 = collectCount(r2, 2);
    await r2.subscribeAsync('r/#');
    expect((await got2).map((m) => m.payload).sort()).toEqual(['SECRET-new', 'SECRET-old']);
  });
});

describe('the persistence profile section', () => {
  const resolve = (persistence: unknown, tier = 1) => resolveProfile({ version: 1, tier, listeners: [{ protocol: 'mqtt', port: 1883 }], audit: { file: 'audit.log' }, persistence } as ProfileInput, { baseDir: dir });

  it('defaults to the memory store, unencrypted, no cluster', () => {
    expect(resolve(undefined).persistence).toEqual({ store: 'memory', cluster: false });
  });

  it('resolves a Redis store with TLS, a password from the environment and key files relative to the profile', async () => {
    const file = path.join(dir, 'section.yaml');
    writeFileSync(
      file,
      [
        'version: 1',
        'tier: 3',
        'listeners: [{ protocol: mqtt, port: 1883 }]',
        'audit: { file: audit.log }',
        'persistence:',
        '  store: redis',
        '  cluster: true',
        '  redis:',
        '    url: rediss://redis.internal:6380/2',
        '    password: ${env:BASTION_TEST_REDIS_PASSWORD}',
        '    tls: { ca: redis-ca.pem }',
        '  encryption:',
        '    keys:',
        '      - file: keys/current.key',
        '      - value: ${env:BASTION_TEST_OLD_KEY}',
      ].join('\n'),
    );
    process.env['BASTION_TEST_REDIS_PASSWORD'] = 'pw-from-env';
    process.env['BASTION_TEST_OLD_KEY'] = 'a'.repeat(64);
    const r = await checkProfile(file);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.profile.persistence).toEqual({
      store: 'redis',
      cluster: true,
      redis: { url: 'rediss://redis.internal:6380/2', password: 'pw-from-env', prefix: 'bastion:', connectTimeout: 10_000, tls: { ca: [path.join(dir, 'redis-ca.pem')] } },
      encryption: { keys: [{ file: path.join(dir, 'keys/current.key') }, { value: 'a'.repeat(64) }] },
    });
  });

  it('refuses what would leave data unprotected: an unencrypted Redis store at tier 3, a cluster without keys, plain Redis off-host at tier 3, a malformed key', () => {
    const issues = (persistence: unknown, tier: number) => {
      try {
        resolve(persistence, tier);
        return [];
      } catch (err) {
        return ((err as { issues?: Array<{ path: string; message: string }> }).issues ?? []).map((i) => `${i.path}: ${i.message}`);
      }
    };
    expect(issues({ store: 'redis', redis: { url: 'redis://127.0.0.1:6379' } }, 3).join('\n')).toMatch(/persistence\.store: at tier 3 .* must be encrypted/);
    expect(issues({ store: 'redis', redis: { url: 'redis://127.0.0.1:6379' } }, 2)).toEqual([]);
    expect(issues({ store: 'redis', cluster: true, redis: { url: 'redis://127.0.0.1:6379' } }, 1).join('\n')).toMatch(/persistence\.cluster: .*encryption\.keys/);
    expect(issues({ store: 'redis', redis: { url: 'redis://10.1.2.3:6379' }, encryption: { keys: [{ file: 'k' }] } }, 3).join('\n')).toMatch(/persistence\.redis\.url: .*needs TLS/);
    expect(issues({ store: 'redis', redis: { url: 'rediss://10.1.2.3:6379' }, encryption: { keys: [{ file: 'k' }] } }, 3)).toEqual([]);
    expect(issues({ encryption: { keys: [{ value: 'not-a-key' }] } }, 1).join('\n')).toMatch(/persistence\.encryption\.keys\[0\]\.value: expected 32 bytes/);
    expect(issues({ store: 'memory', cluster: true, encryption: { keys: [{ file: 'k' }] } }, 1).join('\n')).toMatch(/store: redis/);
  });
});

describe('the Redis connection', () => {
  it('TLS (rediss://, the server certificate verified against the profile CA) and a password from the environment', async () => {
    const pki = makeTestPki();
    const port = await freePort();
    const own = new OwnRedis(port, [
      '--port', '0', '--tls-port', String(port),
      '--tls-cert-file', path.join(pki.dir, 'server.pem'), '--tls-key-file', path.join(pki.dir, 'server-key.pem'),
      '--tls-ca-cert-file', path.join(pki.dir, 'ca.pem'), '--tls-auth-clients', 'no',
      '--requirepass', 'redis-secret-pw',
    ]);
    ownRedis.push(own);
    await own.start();
    process.env['BASTION_TEST_REDIS_PW'] = 'redis-secret-pw';
    const key = keyFile(dir, 'tls.key');
    const section = (ca: string, password: string) => ({
      store: 'redis',
      redis: { url: `rediss://localhost:${port}/0`, password, tls: { ca }, prefix: 'tls:', connectTimeout: '3s' },
      encryption: { keys: [{ file: key.path }] },
    });
    const { url } = await start(section(path.join(pki.dir, 'ca.pem'), '${env:BASTION_TEST_REDIS_PW}'));
    const c = await client(url);
    await c.publishAsync('tls/x', 'over-tls', { qos: 1, retain: true });
    const m = nextMessage(c);
    await c.subscribeAsync('tls/x');
    expect((await m).payload).toBe('over-tls');

    const otherCa = makeTestPki();
    const untrusted = await start(section(path.join(otherCa.dir, 'ca.pem'), '${env:BASTION_TEST_REDIS_PW}')).then(() => undefined, (e: { code?: string; message: string }) => e);
    expect(untrusted?.code).toBe('BASTION_ERR_PERSISTENCE_UNAVAILABLE');
    expect(untrusted?.message).toMatch(/certificate/i);
    const badPassword = await start(section(path.join(pki.dir, 'ca.pem'), 'wrong-password')).then(() => undefined, (e: { code?: string; message: string }) => e);
    expect(badPassword?.code).toBe('BASTION_ERR_PERSISTENCE_UNAVAILABLE');
    expect(badPassword?.message).toMatch(/WRONGPASS|invalid password/i);
    expect(badPassword?.message).not.toContain('wrong-password');
  }, 30_000);

  it('a Redis that cannot be reached at start fails the start with a clear error', async () => {
    const port = await freePort(); // nothing listens there
    const err = await start({ store: 'redis', redis: { url: `redis://127.0.0.1:${port}`, connectTimeout: '1s' } }).then(() => undefined, (e: { code?: string; message: string }) => e);
    expect(err?.code).toBe('BASTION_ERR_PERSISTENCE_UNAVAILABLE');
    expect(err?.message).toContain(`redis://127.0.0.1:${port}`);
  });
});

describe('docs/persistence.md', () => {
  it('its profile examples are valid profiles', async () => {
    const doc = readFileSync(new URL('../docs/persistence.md', import.meta.url), 'utf8');
    const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((b) => b.includes('version: 1'));
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    process.env['REDIS_PASSWORD'] = 'x';
    process.env['BASTION_OLD_KEY'] = 'b'.repeat(64);
    for (const [i, b] of blocks.entries()) {
      const f = path.join(dir, `doc-example-${i}.yaml`);
      writeFileSync(f, b);
      const r = await checkProfile(f);
      expect(r.ok ? [] : r.errors.map((e) => `${e.path}: ${e.message}`), `example ${i}`).toEqual([]);
    }
  });
});
