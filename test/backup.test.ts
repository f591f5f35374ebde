/**
 * Backup and restore (RC.RP-8): `bastion backup` writes an encrypted snapshot of a Redis store,
 * `bastion restore` loads it into an empty store, and a broker on the restored store serves the
 * sessions, queues and retained messages as before. Damaged or foreign files are refused before
 * anything is written. Also `bastion keys generate`.
 */
import { describe, it, expect, afterEach, beforeAll, afterAll } from 'vitest';
import { inject } from 'vitest';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { createBroker, type Bastion } from '@bastion/broker';
import { openStore, Keyring, type Store } from '@bastion/persistence';
import type { ProfileInput } from '@bastion/profile';
import { progressBar } from '../packages/cli/src/commands/backup.js';
import { BIN, bastion } from './support/cli.js';
import { connect, collectCount } from './support/mqtt.js';
import { containing, keyFile, scanAll, tempDir, uniquePrefix, type RawValue } from './support/persistence.js';

const silent = pino({ level: 'silent' });
const redisUrl = inject('redisUrl');
const dir = tempDir('backup');
let raw: Redis;
const brokers: Bastion[] = [];
const stores: Store[] = [];
const clients: mqtt.MqttClient[] = [];

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
});

function section(prefix: string, keyPath: string) {
  return { store: 'redis', redis: { url: redisUrl, prefix }, encryption: { keys: [{ file: keyPath }] } };
}

function profileFile(name: string, prefix: string, keyPath: string): string {
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ version: 1, listeners: [{ protocol: 'mqtt', port: 0 }], authentication: { anonymous: true }, persistence: section(prefix, keyPath) }));
  return file;
}

async function start(prefix: string, keyPath: string) {
  const broker = await createBroker({
    profile: { version: 1, listeners: [{ protocol: 'mqtt', port: 0 }], authentication: { anonymous: true }, persistence: section(prefix, keyPath) } as ProfileInput,
    baseDir: dir,
    logger: silent,
  });
  brokers.push(broker);
  return { broker, url: `mqtt://127.0.0.1:${Object.values(broker.addresses())[0]!.port}` };
}

async function client(url: string, opts: mqtt.IClientOptions = {}) {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

/** A store's content without its prefix, in a comparable form. */
function normalized(values: RawValue[], prefix: string) {
  return values
    .map((v) => ({ key: v.key.slice(prefix.length), type: v.type, parts: v.parts.slice(1).map((p) => p.toString('base64')).sort() }))
    .sort((a, b) => a.key.localeCompare(b.key));
}

describe('bastion backup / restore', () => {
  it('round trip: sessions, subscriptions, queues and retained messages come back in a new store and a broker serves them', async () => {
    const source = uniquePrefix('bk-src');
    const target = uniquePrefix('bk-dst');
    const key = keyFile(dir, 'backup.key');
    const { broker, url } = await start(source, key.path);
    const sub = await client(url, { clientId: 'bk-sub', clean: false });
    await sub.subscribeAsync(['bk/queue/#', 'bk/other'], { qos: 1 });
    sub.end(true);
    const pub = await client(url, { clientId: 'bk-pub' });
    for (let i = 0; i < 5; i++) await pub.publishAsync('bk/queue/x', `backup-plaintext-q${i}`, { qos: 1 });
    await pub.publishAsync('bk/retained/1', 'backup-plaintext-r1', { qos: 1, retain: true });
    await pub.publishAsync('bk/retained/2', 'backup-plaintext-r2', { qos: 1, retain: true });
    for (const c of clients.splice(0)) c.end(true);
    await broker.close(); // a clean close lets every acknowledged write land
    brokers.splice(0);
    const before = normalized(await scanAll(raw, source), source);
    expect(before.length).toBeGreaterThan(5);

    const out = path.join(dir, 'store.bak');
    const b = bastion(['backup', '--profile', profileFile('src', source, key.path), '--out', out]);
    expect(b.stderr).toBe(''); // not a TTY: no progress bar
    expect(b.code).toBe(0);
    expect(b.stdout).toMatch(new RegExp(`backed up ${before.length} keys to .*store\\.bak`));
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const file = readFileSync(out);
    for (const secret of ['backup-plaintext', 'bk-sub', 'bk/queue', 'bk/retained']) expect(file.includes(Buffer.from(secret))).toBe(false);

    const r = bastion(['restore', '--profile', profileFile('dst', target, key.path), '--in', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`restored ${before.length} keys`));
    expect(normalized(await scanAll(raw, target), target)).toEqual(before);

    // a broker on the restored store: the session, its queue and the retained messages are there
    const restored = await start(target, key.path);
    const back = mqtt.connect(restored.url, { clientId: 'bk-sub', clean: false, reconnectPeriod: 0, protocolVersion: 4 });
    clients.push(back);
    const queued = collectCount(back, 5);
    const connack = await new Promise<{ sessionPresent: boolean }>((res) => back.once('connect', (p) => res(p as { sessionPresent: boolean })));
    expect(connack.sessionPresent).toBe(true);
    expect((await queued).map((m) => m.payload)).toEqual([0, 1, 2, 3, 4].map((i) => `backup-plaintext-q${i}`));
    const late = await client(restored.url);
    const got = collectCount(late, 2);
    await late.subscribeAsync('bk/retained/#');
    expect((await got).map((m) => m.payload).sort()).toEqual(['backup-plaintext-r1', 'backup-plaintext-r2']);
  }, 60_000);

  it('refuses a non-empty target, a damaged, cut or foreign file — before writing anything', async () => {
    const source = uniquePrefix('bk2-src');
    const key = keyFile(dir, 'bk2.key');
    const other = keyFile(dir, 'bk2-other.key');
    const { broker, url } = await start(source, key.path);
    const p = await client(url);
    await p.publishAsync('bk2/r', 'r', { qos: 1, retain: true });
    for (const c of clients.splice(0)) c.end(true);
    await broker.close();
    brokers.splice(0);
    const out = path.join(dir, 'bk2.bak');
    expect(bastion(['backup', '--profile', profileFile('bk2-src', source, key.path), '--out', out]).code).toBe(0);

    const nonEmpty = bastion(['restore', '--profile', profileFile('bk2-src-again', source, key.path), '--in', out]);
    expect(nonEmpty.code).toBe(1);
    expect(nonEmpty.stderr).toMatch(/bastion: the target store \(prefix "t-bk2-src-.*"\) is not empty/);

    const empty = uniquePrefix('bk2-dst');
    const dst = profileFile('bk2-dst', empty, key.path);
    const good = readFileSync(out);
    const damaged = Buffer.from(good);
    damaged[damaged.length - 30] = damaged[damaged.length - 30]! ^ 0x40;
    writeFileSync(path.join(dir, 'damaged.bak'), damaged);
    writeFileSync(path.join(dir, 'cut.bak'), good.subarray(0, good.length - 10));
    for (const [f, why] of [
      ['damaged.bak', /does not open/],
      ['cut.bak', /truncated frame/],
    ] as const) {
      const r = bastion(['restore', '--profile', dst, '--in', path.join(dir, f)]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(why);
    }
    const foreign = bastion(['restore', '--profile', profileFile('bk2-foreign', empty, other.path), '--in', out]);
    expect(foreign.code).toBe(1);
    expect(foreign.stderr).toMatch(new RegExp(`sealed with key ${Keyring.fromBytes(key.bytes).current.id}, which is not among the configured keys`));
    expect(await scanAll(raw, empty)).toEqual([]); // nothing was written
  }, 60_000);

  it('a large store: several encrypted frames, and a progress bar on a terminal', async () => {
    const source = uniquePrefix('bk3-src');
    const target = uniquePrefix('bk3-dst');
    const key = keyFile(dir, 'bk3.key');
    const store = await openStore({ store: 'redis', cluster: false, redis: { url: redisUrl, prefix: source, connectTimeout: 5000 }, encryption: { keys: [{ file: key.path }] } });
    stores.push(store);
    await store.start();
    const payload = Buffer.alloc(1024, 'x');
    const N = 3000; // ~3 MiB: more than one 1 MiB frame
    await Promise.all(Array.from({ length: N }, (_, i) => store.persistence!.storeRetained({ cmd: 'publish', topic: `big/${i}`, payload, qos: 0, retain: true })));
    await store.close();

    // run under a pseudo-terminal (`script`) so stderr is a TTY
    const out = path.join(dir, 'big.bak');
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} backup --profile ${JSON.stringify(profileFile('bk3-src', source, key.path))} --out ${JSON.stringify(out)}`;
    const tty = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
    expect(tty.status).toBe(0);
    expect(tty.stdout).toMatch(/\rbackup \[#+\.*\] +\d+% \d+\/\d+/);
    expect(tty.stdout).toMatch(/100% \d+\/\d+/);
    const r = bastion(['restore', '--profile', profileFile('bk3-dst', target, key.path), '--in', out]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(await raw.hlen(`${target}retained`)).toBe(N);
    expect(containing(await scanAll(raw, target), 'xxxxxxxxxxxxxxxx')).toEqual([]);
  }, 90_000);

  it('the progress bar draws only on a terminal', () => {
    const written: string[] = [];
    const tty = { isTTY: true, write: (s: string) => written.push(s) } as unknown as NodeJS.WriteStream;
    const bar = progressBar('restore', tty);
    bar.update(5, 10);
    bar.update(10, 10);
    bar.done();
    expect(written.join('')).toContain('restore [###############...............]  50% 5/10');
    expect(written.join('')).toMatch(/100% 10\/10\n$/);
    const pipe: string[] = [];
    const quiet = progressBar('restore', { isTTY: false, write: (s: string) => pipe.push(s) } as unknown as NodeJS.WriteStream);
    quiet.update(1, 2);
    quiet.done();
    expect(pipe).toEqual([]);
  });
});

describe('bastion keys generate', () => {
  it('writes 32 random bytes, mode 0600, prints the key id, and never overwrites', () => {
    const f = path.join(dir, 'keys', 'new.key');
    const r = bastion(['keys', 'generate', f]);
    expect(r.code).toBe(0);
    const bytes = readFileSync(f);
    expect(bytes.length).toBe(32);
    expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(r.stdout).toContain(`key id ${Keyring.fromBytes(bytes).current.id}`);
    const again = bastion(['keys', 'generate', f]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already exists; a key file is never overwritten/);
    expect(readFileSync(f).equals(bytes)).toBe(true);
  });
});
