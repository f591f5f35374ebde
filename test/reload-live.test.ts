/**
 * Reloading the settings of the limit, detection, audit, metrics and admin controls into a running
 * broker: applied live and to the clients already connected, or — when something cannot be done
 * (a port taken, a store that cannot change) — refused whole, with the running configuration left
 * exactly as it was. Real sockets, real mqtt.js clients, real files.
 */
import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import { mkdtempSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import type { Detectors, Metrics } from '@bastion/detect';
import { verifyAuditFiles } from '@bastion/detect';
import { hashToken, newToken } from '@bastion/admin';
import { hashPassword, serializeUsers } from '@bastion/middleware';
import { closed, connect, isRefusal, nextMessage, tryConnect, waitFor } from './support/mqtt.js';

const silent = pino({ level: 'silent' });
let hashes: { alice: string; bob: string };
let broker: Bastion | undefined;
let events: SecurityEvent[] = [];
const clients: mqtt.MqttClient[] = [];
const blockers: net.Server[] = [];

beforeAll(async () => {
  hashes = {
    alice: await hashPassword('alice-password', { ln: 10, r: 8, p: 1 }),
    bob: await hashPassword('bob-password', { ln: 10, r: 8, p: 1 }),
  };
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
  events = [];
  for (const b of blockers.splice(0)) await new Promise((r) => b.close(r));
});

/** A profile file in its own directory, with a users file beside it. */
function site(): { dir: string; file: string; write(body: string): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'bastion-reload-live-'));
  writeFileSync(
    path.join(dir, 'users.txt'),
    serializeUsers([
      { username: 'alice', hash: hashes.alice, groups: [] },
      { username: 'bob', hash: hashes.bob, groups: [] },
    ]),
    { mode: 0o600 },
  );
  const file = path.join(dir, 'site.yaml');
  const head = 'version: 1\ntier: 2\nlisteners:\n  - { name: plain, protocol: mqtt, port: 0 }\nauthentication:\n  passwords: { file: users.txt }\n';
  const acl = "acl:\n  rules:\n    - { id: all, effect: allow, users: [alice, bob], actions: [publish, subscribe, read], topics: ['#'] }\n";
  return { dir, file, write: (body) => writeFileSync(file, head + acl + body) };
}

async function start(file: string): Promise<string> {
  broker = await createBroker({ profile: file, logger: silent });
  broker.events.on((e) => events.push(e));
  return `mqtt://127.0.0.1:${broker.addresses()['plain']!.port}`;
}

async function client(url: string, opts: mqtt.IClientOptions): Promise<mqtt.MqttClient> {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

/** A port nobody listens on now. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A port someone else holds for the rest of the test. */
async function takenPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  blockers.push(s);
  return (s.address() as net.AddressInfo).port;
}

/** `n` QoS 0 PUBLISHes at once, then a QoS 1 one: resolves when the broker acknowledged it (everything before it was read). */
async function flood(c: mqtt.MqttClient, n: number): Promise<void> {
  for (let i = 0; i < n; i++) c.publish('data/flood', 'x');
  await c.publishAsync('data/flood', 'end', { qos: 1 });
}

const perClient = (rate: number) => `rateLimits:\n  publish:\n    perClient:\n      messages: { rate: ${rate}, consequence: disconnect, strikes: 3 }\n`;
const endpoint = (port: number) => `metrics:\n  sysTopics: false\n  endpoint: { port: ${port} }\n`;

describe('reload: limits reach the clients already connected', () => {
  it('a lowered per-client publish rate trips a flooding client connected before the reload; a legitimate one keeps working', async () => {
    const s = site();
    s.write(perClient(1000));
    const url = await start(s.file);
    const flooder = await client(url, { clientId: 'flooder', username: 'alice', password: 'alice-password' });
    const legit = await client(url, { clientId: 'legit', username: 'bob', password: 'bob-password' });
    const reader = await client(url, { clientId: 'reader', username: 'alice', password: 'alice-password' });
    await reader.subscribeAsync('data/legit');

    await flood(flooder, 40); // within 1000/s
    expect(flooder.connected).toBe(true);

    s.write(perClient(5));
    const r = await broker!.reload();
    expect(r.ok, JSON.stringify(r.issues)).toBe(true);
    expect(r.changes.join('\n')).toMatch(/rate-limit: reconfigured \(.*rateLimits\.publish\.perClient\.messages\.rate/);
    expect(r.changes.filter((c) => c.startsWith('rate-limit:'))).toHaveLength(1);
    expect(broker!.profile.rateLimits?.publish.perClient.messages?.rate).toBe(5);

    const gone = closed(flooder, 5000);
    for (let i = 0; i < 40 && flooder.connected; i++) flooder.publish('data/flood', 'x');
    await gone;
    await waitFor(() => events.some((e) => e.type === 'rate.limited' && e.clientId === 'flooder' && e.detail?.['consequence'] === 'disconnect'), 3000, 'the rate.limited event');
    expect(events.find((e) => e.type === 'rate.limited' && e.clientId === 'flooder')).toMatchObject({ control: 'PR.SS-5', detail: { limit: 'publish.perClient.messages', rate: 5 } });

    const got = nextMessage(reader);
    await legit.publishAsync('data/legit', 'hello', { qos: 1 });
    expect((await got).payload).toBe('hello');
    expect(legit.connected).toBe(true);
  });

  it('a new idle timeout applies to open connections; a rate-limit store change is refused (restart required)', async () => {
    const s = site();
    s.write('disconnect:\n  idleTimeout: 1h\n');
    const url = await start(s.file);
    const idle = await client(url, { clientId: 'idle', username: 'alice', password: 'alice-password', keepalive: 60 });
    const idleGone = closed(idle, 8000);

    s.write('disconnect:\n  idleTimeout: 1s\n');
    const r = await broker!.reload();
    expect(r.ok, JSON.stringify(r.issues)).toBe(true);
    expect(r.changes.join('\n')).toMatch(/auto-disconnect: reconfigured \(disconnect\.idleTimeout\)/);
    await idleGone;
    expect(events.find((e) => e.type === 'disconnect.enforced' && e.clientId === 'idle')).toMatchObject({ reason: 'idle-timeout', control: 'PR.SS-2' });

    // the Redis URL is never printed (it may carry a password)
    s.write(`disconnect:\n  idleTimeout: 1s\nrateLimits:\n  store: { redis: { url: 'redis://:secret@127.0.0.1:1' } }\n`);
    const refused = await broker!.reload();
    expect(refused.ok).toBe(false);
    expect(refused.issues).toEqual([{ path: 'rateLimits.store', message: 'rateLimits.store changed (memory → redis): restart required' }]);
    expect(broker!.profile.rateLimits?.store).toEqual({ type: 'memory' });
  });

  it('a lowered keepalive maximum (refuse) and a new maximum age reach open connections; lowered protocol limits meet the next packet', async () => {
    const s = site();
    s.write('protocol:\n  maxTopicLevels: 8\n');
    const url = await start(s.file);
    const long = await client(url, { clientId: 'long', username: 'alice', password: 'alice-password', keepalive: 600 });
    const short = await client(url, { clientId: 'short', username: 'bob', password: 'bob-password', keepalive: 60 });
    const deep = await client(url, { clientId: 'deep', username: 'alice', password: 'alice-password' });
    await deep.publishAsync('a/b/c/d/e', 'x', { qos: 1 }); // 5 levels: fine

    const longGone = closed(long);
    const deepGone = closed(deep);
    s.write('protocol:\n  maxTopicLevels: 3\ndisconnect:\n  keepalive: { max: 120, overMax: refuse }\n');
    const r = await broker!.reload();
    expect(r.ok, JSON.stringify(r.issues)).toBe(true);
    await longGone; // keepalive 600 is refused now: it must reconnect under the new rule
    expect(events.find((e) => e.type === 'disconnect.enforced' && e.clientId === 'long')?.message).toBe('keepalive 600 s is above the new maximum of 120 s');
    expect(isRefusal(await tryConnect(url, { clientId: 'long-2', username: 'alice', password: 'alice-password', keepalive: 600 }))).toBe(true);
    deep.publish('a/b/c/d/e', 'x');
    await deepGone; // a PUBLISH deeper than the new limit closes the connection (3.1.1 has no negative PUBACK)
    expect(short.connected).toBe(true);

    const shortGone = closed(short, 6000);
    s.write('protocol:\n  maxTopicLevels: 3\ndisconnect:\n  keepalive: { max: 120, overMax: refuse }\n  maxAge: 1s\n  maxAgeJitter: 0\n');
    expect((await broker!.reload()).ok).toBe(true);
    await shortGone; // connected before the reload: its new age counts from its CONNECT
    expect(events.find((e) => e.type === 'disconnect.enforced' && e.clientId === 'short')).toMatchObject({ reason: 'max-age', control: 'PR.SS-7' });
  });
});

describe('reload: detectors and responses', () => {
  it('a detector turned on by a reload detects the next attack; one turned off stops; response rules follow', async () => {
    const s = site();
    s.write('detectors:\n  authFailures: { enabled: false }\n  topicScanning: { maxTopics: 5 }\n');
    const url = await start(s.file);
    const scanner = await client(url, { clientId: 'scanner', username: 'alice', password: 'alice-password' });
    const scan = async (prefix: string) => {
      for (let i = 0; i < 10; i++) scanner.publish(`${prefix}/${i}`, 'x');
      await scanner.publishAsync(`${prefix}/end`, 'x', { qos: 1 });
    };
    const raised = (detector: string) => events.filter((e) => e.type === 'detection.raised' && e.detail?.['detector'] === detector);
    const failLogins = async (n: number) => {
      for (let i = 0; i < n; i++) expect(isRefusal(await tryConnect(url, { clientId: `guess-${i}`, username: 'alice', password: 'wrong' }))).toBe(true);
    };

    await scan('before');
    await waitFor(() => raised('topic-scanning').length >= 1, 3000, 'topic scanning (on at start)');
    await failLogins(4);
    await scanner.publishAsync('sync', 'x', { qos: 1 });
    expect(raised('auth-failures')).toHaveLength(0); // off at start
    const scans = raised('topic-scanning').length;

    s.write(
      'detectors:\n  authFailures: { perIp: 3, perUsername: 100, perClientId: 100 }\n  topicScanning: { enabled: false }\n' +
        'responses:\n  rules:\n    - { detector: auth-failures, actions: [{ action: ban-ip, duration: 1m }] }\n  allow: { usernames: [bob] }\n',
    );
    const r = await broker!.reload();
    expect(r.ok, JSON.stringify(r.issues)).toBe(true);
    expect(r.changes.join('\n')).toMatch(/detectors: reconfigured \(detectors\.authFailures/);
    expect(r.changes.join('\n')).toMatch(/responses: reconfigured \(.*responses\.allow/);

    await scan('after');
    await failLogins(4);
    await waitFor(() => raised('auth-failures').length === 1, 3000, 'auth failures (turned on by the reload)');
    expect(raised('topic-scanning')).toHaveLength(scans); // turned off: nothing new
    // the new response rule acted on the detection: the address is banned, the scanner (same address) with it
    await waitFor(() => events.some((e) => e.type === 'response.action' && e.detail?.['action'] === 'ban-ip' && e.detail?.['outcome'] === 'done'), 3000, 'the ban');
    expect(isRefusal(await tryConnect(url, { clientId: 'after-ban', username: 'alice', password: 'alice-password' }))).toBe(true);
    expect(broker!.controls.get<Detectors>('detectors')!.enabled).not.toContain('topic-scanning');
  });
});

describe('reload: audit log', () => {
  it('a new audit file is opened first, then written to; the old one ends pointing at it and the chain runs on', async () => {
    const s = site();
    s.write('audit: { file: audit-a/audit.log }\n');
    const url = await start(s.file);
    const a = path.join(s.dir, 'audit-a', 'audit.log');
    const b = path.join(s.dir, 'audit-b', 'audit.log');

    s.write('audit: { file: audit-b/audit.log }\n');
    const r = await broker!.reload();
    expect(r.ok, JSON.stringify(r.issues)).toBe(true);
    expect(r.changes.join('\n')).toMatch(/audit: reconfigured \(audit\.file\)/);
    expect(isRefusal(await tryConnect(url, { clientId: 'intruder', username: 'mallory', password: 'nope' }))).toBe(true);

    const lines = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; clientId?: string; detail?: Record<string, unknown> }) : []);
    await waitFor(() => lines(b).some((l) => l.type === 'auth.failed' && l.clientId === 'intruder'), 3000, 'the failed login in the new file');
    expect(lines(a).some((l) => l.clientId === 'intruder')).toBe(false);
    expect(lines(a).at(-1)).toMatchObject({ type: 'audit.stopped', detail: { reason: 'profile reloaded', nextFile: b } });
    expect(lines(b)[0]).toMatchObject({ type: 'audit.started', detail: { reload: true, previousFile: a, chain: 'continued' } });
    expect(lines(b).some((l) => l.type === 'profile.reloaded')).toBe(true); // the reload itself is in the new file
    const verified = await verifyAuditFiles([a, b]);
    expect(verified.break).toBeUndefined();
    expect(verified.ok).toBe(true);
  });

  it('new content in the HMAC key file: the reload re-reads it and rotates, so each file verifies under its own key', async () => {
    const s = site();
    const keyFile = path.join(s.dir, 'audit.key');
    const [keyA, keyB] = ['first-audit-key-0123456789', 'second-audit-key-9876543210'];
    writeFileSync(keyFile, keyA, { mode: 0o600 });
    s.write('audit: { file: audit/audit.log, hmacKey: { file: audit.key } }\n');
    const url = await start(s.file);
    writeFileSync(keyFile, keyB, { mode: 0o600 }); // the profile itself does not change
    const r = await broker!.reload();
    expect(r.ok, JSON.stringify(r.issues)).toBe(true);
    expect(r.changes).toContain('audit: files re-read');
    expect(isRefusal(await tryConnect(url, { clientId: 'intruder', username: 'mallory', password: 'nope' }))).toBe(true);

    const active = path.join(s.dir, 'audit', 'audit.log');
    const rotated = `${active}.1`;
    await waitFor(() => readFileSync(active, 'utf8').includes('"intruder"'), 3000, 'the failed login in the active file');
    const first = JSON.parse(readFileSync(active, 'utf8').split('\n')[0]!) as { type: string; detail: Record<string, unknown> };
    expect(first).toMatchObject({ type: 'audit.rotated', detail: { previousFile: rotated, reason: 'HMAC key changed' } });
    expect((await verifyAuditFiles([rotated], { key: Buffer.from(keyA) })).ok).toBe(true);
    expect((await verifyAuditFiles([active], { key: Buffer.from(keyB) })).ok).toBe(true);
    expect((await verifyAuditFiles([active], { key: Buffer.from(keyA) })).ok).toBe(false);
    expect((await verifyAuditFiles([rotated, active])).ok).toBe(true); // one chain across the key change
  });

  it('an audit file that cannot be opened fails the reload before anything is applied', async () => {
    const s = site();
    s.write(`audit: { file: audit-a/audit.log }\n${perClient(1000)}`);
    const url = await start(s.file);
    writeFileSync(path.join(s.dir, 'not-a-dir'), 'a file, not a directory');
    s.write(`audit: { file: not-a-dir/audit.log }\n${perClient(5)}`);
    const r = await broker!.reload();
    expect(r.ok).toBe(false);
    expect(r.issues[0]).toMatchObject({ path: 'audit.file', message: expect.stringMatching(/^audit: cannot open .*not-a-dir\/audit\.log/) });
    // the old limit holds: a burst the new one would punish passes
    const c = await client(url, { clientId: 'busy', username: 'alice', password: 'alice-password' });
    await flood(c, 40);
    expect(c.connected).toBe(true);
    await waitFor(() => readFileSync(path.join(s.dir, 'audit-a', 'audit.log'), 'utf8').includes('profile.reload.failed'), 3000, 'the refusal in the old audit file');
  });
});

describe('reload: metrics and admin endpoints', () => {
  it('a metrics endpoint moved by a reload serves on its new port and no longer on the old one', async () => {
    const s = site();
    s.write(endpoint(0));
    await start(s.file);
    const m = broker!.controls.get<Metrics>('metrics')!;
    const oldPort = m.endpoint!.port;
    expect((await fetch(`http://127.0.0.1:${oldPort}/metrics`)).status).toBe(200);

    const port = await freePort();
    s.write(endpoint(port));
    const r = await broker!.reload();
    expect(r.ok, JSON.stringify(r.issues)).toBe(true);
    expect(m.endpoint!.port).toBe(port);
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/bastion_clients_connected/);
    await expect(fetch(`http://127.0.0.1:${oldPort}/metrics`)).rejects.toThrow();

    // a token, in place (same port)
    process.env['BASTION_TEST_RELOAD_TOKEN'] = 'a-metrics-token-of-16+';
    s.write(endpoint(port).replace(' }\n', ", token: '${env:BASTION_TEST_RELOAD_TOKEN}' }\n"));
    expect((await broker!.reload()).ok).toBe(true);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(401);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: 'Bearer a-metrics-token-of-16+' } })).status).toBe(200);
  });

  it('a new metrics or admin port that is taken fails the reload with the reason; old ports serve on and old limits hold', async () => {
    const s = site();
    const token = newToken();
    const admin = (port: number, hash = hashToken(token)) => `admin:\n  port: ${port}\n  tokens: [{ name: ops, hash: '${hash}' }]\n`;
    s.write(endpoint(0) + admin(0) + perClient(1000));
    const url = await start(s.file);
    const metricsPort = broker!.controls.get<Metrics>('metrics')!.endpoint!.port;
    const api = (broker!.controls.services.find((x) => x.name === 'admin') as unknown as { server: { url: string } }).server;
    const adminUrl = api.url;
    const busy = await client(url, { clientId: 'busy', username: 'alice', password: 'alice-password' });

    const taken = await takenPort();
    s.write(endpoint(taken) + admin(0) + perClient(5));
    let r = await broker!.reload();
    expect(r.ok).toBe(false);
    expect(r.issues).toEqual([{ path: 'metrics.endpoint.port', message: `metrics endpoint cannot listen on 127.0.0.1:${taken}: EADDRINUSE` }]);
    expect(events.find((e) => e.type === 'profile.reload.failed')?.message).toMatch(/EADDRINUSE/);

    const other = await takenPort();
    s.write(endpoint(await freePort()) + admin(other, hashToken(newToken())) + perClient(5));
    r = await broker!.reload();
    expect(r.ok).toBe(false);
    expect(r.issues).toEqual([{ path: 'admin.port', message: `admin API cannot listen on 127.0.0.1:${other}: EADDRINUSE` }]);

    // everything as before: the old endpoints, the old token, the old limit
    expect(broker!.profile.rateLimits?.publish.perClient.messages?.rate).toBe(1000);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).status).toBe(200);
    expect(api.url).toBe(adminUrl);
    expect((await fetch(`${adminUrl}/v1/health`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    await flood(busy, 40);
    expect(busy.connected).toBe(true);
  });

  it('the admin API moves, through its own POST /v1/reload, and takes new tokens; the request is still answered', async () => {
    const s = site();
    const [oldToken, newTokenValue] = [newToken(), newToken()];
    const admin = (port: number, t: string) => `admin:\n  port: ${port}\n  tokens: [{ name: ops, hash: '${hashToken(t)}' }]\n`;
    s.write(admin(0, oldToken));
    await start(s.file);
    const api = (broker!.controls.services.find((x) => x.name === 'admin') as unknown as { server: { url: string } }).server;
    const oldUrl = api.url;
    const port = await freePort();
    s.write(admin(port, newTokenValue));
    const res = await fetch(`${oldUrl}/v1/reload`, { method: 'POST', headers: { authorization: `Bearer ${oldToken}`, 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { ok: boolean; changes: string[] };
    expect(body.ok).toBe(true);
    expect(body.changes.join('\n')).toMatch(/admin: reconfigured \(admin\.port/);
    expect(api.url).toBe(`http://127.0.0.1:${port}`);
    expect((await fetch(`${api.url}/v1/health`, { headers: { authorization: `Bearer ${newTokenValue}` } })).status).toBe(200);
    expect((await fetch(`${api.url}/v1/health`, { headers: { authorization: `Bearer ${oldToken}` } })).status).toBe(401);
    // the old address stops listening once that request was answered
    let oldServes = true;
    for (let i = 0; i < 100 && oldServes; i++) {
      oldServes = await fetch(`${oldUrl}/v1/health`).then(() => true, () => false);
      if (oldServes) await new Promise((r) => setTimeout(r, 50));
    }
    expect(oldServes).toBe(false);
  });
});
