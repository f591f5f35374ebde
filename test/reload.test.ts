/**
 * Reloading the profile into a running broker — `broker.reload()`, SIGHUP in `bastion start`,
 * `bastion reload` (signal or admin API): everything is read and checked first, then applied whole
 * to connected clients too, or nothing is applied and the reasons are given.
 */
import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import { hashToken, newToken } from '@bastion/admin';
import { hashPassword, serializeUsers } from '@bastion/middleware';
import { BIN, bastion, bastionStart, type CliResult, type Running } from './support/cli.js';
import { closed, connect, isRefusal, tryConnect, waitFor, collectCount } from './support/mqtt.js';
import { makeTestPki, type TestPki } from './support/pki.js';

const silent = pino({ level: 'silent' });
let pki: TestPki;
let users: { alice: string; bob: string };
let broker: Bastion | undefined;
let events: SecurityEvent[] = [];
let running: Running | undefined;
const clients: mqtt.MqttClient[] = [];

beforeAll(async () => {
  pki = makeTestPki();
  users = {
    alice: await hashPassword('alice-password', { ln: 10, r: 8, p: 1 }),
    bob: await hashPassword('bob-password', { ln: 10, r: 8, p: 1 }),
  };
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
  events = [];
  await running?.stop();
  running = undefined;
});

/** A profile file in its own dir, with the test PKI and a users file beside it. */
function siteDir(): { dir: string; file: string; write(yaml: string): void; users(names: Array<'alice' | 'bob'>): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'bastion-reload-'));
  for (const f of ['ca.pem', 'server.pem', 'server-key.pem']) writeFileSync(path.join(dir, f), readFileSync(path.join(pki.dir, f)));
  const file = path.join(dir, 'site.yaml');
  const site = {
    dir,
    file,
    write: (yaml: string) => writeFileSync(file, yaml),
    users: (names: Array<'alice' | 'bob'>) => writeFileSync(path.join(dir, 'users.txt'), serializeUsers(names.map((n) => ({ username: n, hash: users[n], groups: [] }))), { mode: 0o600 }),
  };
  site.users(['alice', 'bob']);
  return site;
}

async function start(file: string) {
  broker = await createBroker({ profile: file, logger: silent });
  broker.events.on((e) => events.push(e));
  return (name: string) => broker!.addresses()[name]!.port;
}

async function client(url: string, opts: mqtt.IClientOptions = {}) {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

const ACL = (topic: string) => `acl:\n  rules:\n    - { id: alice, effect: allow, users: [alice], actions: [publish, subscribe, read], topics: ['${topic}'] }\n    - { id: bob, effect: allow, users: [bob], actions: [publish], topics: ['#'] }\n`;
const PLAIN = (extra = '') => `version: 1\ntier: 2\nlisteners:\n  - { name: plain, protocol: mqtt, port: 0 }\nauthentication:\n  passwords: { file: users.txt }\n${extra}`;

describe('broker.reload()', () => {
  it('users and ACL rules: applied whole, to the clients already connected', async () => {
    const site = siteDir();
    site.write(PLAIN(ACL('a/#')));
    const port = await start(site.file);
    const url = `mqtt://127.0.0.1:${port('plain')}`;
    const alice = await client(url, { username: 'alice', password: 'alice-password' });
    await alice.subscribeAsync('a/#');
    const bob = await client(url, { username: 'bob', password: 'bob-password' });
    let got = collectCount(alice, 1);
    bob.publish('a/1', 'x');
    expect((await got).map((m) => m.topic)).toEqual(['a/1']);

    site.write(PLAIN(ACL('b/#')));
    const bobGone = closed(bob);
    site.users(['alice']);
    const r = await broker!.reload();
    expect(r).toMatchObject({ ok: true, issues: [] });
    expect(r.changes.join('\n')).toMatch(/acl: 2 profile rules/);
    expect(r.changes.join('\n')).toMatch(/users: 1 from .*users\.txt/);
    await bobGone; // bob's credential is gone: his session ends
    expect(isRefusal(await tryConnect(url, { username: 'bob', password: 'bob-password' }))).toBe(true);
    // alice's live subscription to a/# was withdrawn; b/# is hers now
    await alice.subscribeAsync('b/#');
    const carol = await client(url, { username: 'alice', password: 'alice-password', clientId: 'alice-2' });
    got = collectCount(alice, 1);
    carol.publish('a/2', 'old');
    carol.publish('b/2', 'new');
    expect((await got).map((m) => m.topic)).toEqual(['b/2']);
    expect(events.find((e) => e.type === 'profile.reloaded')).toMatchObject({ control: 'RC.RP-1', source: 'reload' });
    expect(broker!.profile.acl?.rules.map((x) => x.topics[0])).toEqual(['b/#', '#']);
  });

  it('access lists, initial bans and the anonymous policy reach connected clients', async () => {
    const site = siteDir();
    const base = `version: 1\nlisteners:\n  - { name: plain, protocol: mqtt, port: 0 }\nauthentication:\n  passwords: { file: users.txt }\n`;
    site.write(`${base}authentication:\n  anonymous: true\n  passwords: { file: users.txt }\naccessLists:\n  clientIds: { deny: [nobody] }\n`.replace(`authentication:\n  passwords: { file: users.txt }\n`, ''));
    const port = await start(site.file);
    const url = `mqtt://127.0.0.1:${port('plain')}`;
    const anon = await client(url, { clientId: 'anon' });
    const listed = await client(url, { clientId: 'meter-9', username: 'alice', password: 'alice-password' });
    const banned = await client(url, { clientId: 'meter-7', username: 'alice', password: 'alice-password' });
    const keeps = await client(url, { clientId: 'meter-1', username: 'alice', password: 'alice-password' });
    const gone = [closed(anon), closed(listed), closed(banned)];
    site.write(`${base}accessLists:\n  clientIds: { deny: ['meter-9'] }\nbans:\n  initial: [{ clientId: meter-7, reason: stolen }]\n`);
    const r = await broker!.reload();
    expect(r.ok, JSON.stringify(r.issues)).toBe(true);
    expect(r.changes.join('\n')).toMatch(/authentication: anonymous true → false/);
    expect(r.changes.join('\n')).toMatch(/bans\.initial: 1 added, 0 lifted/);
    await Promise.all(gone);
    expect(keeps.connected).toBe(true);
    expect(isRefusal(await tryConnect(url, { clientId: 'anon-2' }))).toBe(true);
  });

  it('TLS settings of a listener: new handshakes and connected clients meet them', async () => {
    const site = siteDir();
    const tls = (mode: string) => `version: 1\ntls: { cert: server.pem, key: server-key.pem, ca: ca.pem, clientCertificate: ${mode} }\nlisteners:\n  - { name: secure, protocol: mqtts, port: 0 }\nauthentication:\n  anonymous: true\n`;
    site.write(tls('optional'));
    const port = await start(site.file);
    const url = `mqtts://localhost:${port('secure')}`;
    const device = pki.client('device-1');
    const withCert = await client(url, { ca: pki.ca.certPem, cert: device.certPem, key: device.keyPem });
    const without = await client(url, { ca: pki.ca.certPem });
    const kicked = closed(without);
    site.write(tls('required'));
    const r = await broker!.reload();
    expect(r.ok, JSON.stringify(r.issues)).toBe(true);
    expect(r.changes.join('\n')).toMatch(/listeners\[0\] \(secure\): TLS clientCertificate optional → required/);
    await kicked;
    expect(withCert.connected).toBe(true);
    expect(broker!.addresses()['secure']!.port).toBe(port('secure'));
    expect(isRefusal(await tryConnect(url, { ca: pki.ca.certPem }))).toBe(true);
    const again = await client(url, { ca: pki.ca.certPem, cert: device.certPem, key: device.keyPem });
    expect(again.connected).toBe(true);
  });

  it('a failed reload leaves everything as it was and says why', async () => {
    const site = siteDir();
    site.write(PLAIN(ACL('a/#')));
    const port = await start(site.file);
    const url = `mqtt://127.0.0.1:${port('plain')}`;
    const alice = await client(url, { username: 'alice', password: 'alice-password' });

    // a profile error: file, line and key
    site.write(PLAIN(ACL('a/#')) + 'aclx: {}\n');
    let r = await broker!.reload();
    expect(r.ok).toBe(false);
    expect(r.issues[0]).toMatchObject({ file: site.file, line: 11, path: 'aclx' });
    const failed = events.find((e) => e.type === 'profile.reload.failed');
    expect(failed?.message).toMatch(/the running configuration is unchanged/);
    expect((failed?.detail as { issues: unknown[] }).issues).toHaveLength(1);

    // a listener that moves needs a restart
    site.write(PLAIN(ACL('a/#')).replace('port: 0', 'port: 1'));
    r = await broker!.reload();
    expect(r.issues.map((i) => i.message)).toEqual(['listener plain changed address (plain mqtt://127.0.0.1:0 → plain mqtt://127.0.0.1:1): restart required']);

    // so does a PROXY protocol setting (read when the listener starts)
    site.write(PLAIN(ACL('a/#')).replace('port: 0 }', 'port: 0, proxyProtocol: { trusted: [10.0.0.1] } }'));
    r = await broker!.reload();
    expect(r.issues.map((i) => `${i.path}: ${i.message}`)).toEqual(['listeners[0].proxyProtocol: listener plain: proxyProtocol changed: restart required']);

    // whole or nothing: a good ACL change with a broken users file applies neither
    site.write(PLAIN(ACL('b/#')));
    writeFileSync(path.join(site.dir, 'users.txt'), 'alice:not-a-hash\n');
    r = await broker!.reload();
    expect(r.ok).toBe(false);
    expect(r.issues[0]).toMatchObject({ path: 'authentication.passwords.file', message: expect.stringMatching(/the users file cannot be used/) });
    expect(r.changes.join('\n')).toMatch(/acl: 2 profile rules/); // what would have changed
    expect(broker!.profile.acl?.rules[0]?.topics).toEqual(['a/#']);
    expect((await alice.subscribeAsync('a/#'))[0]!.qos).toBe(0); // the old rules still hold
    await expect(alice.subscribeAsync('b/#')).rejects.toThrow();

    // a control the running broker does not have cannot be turned on: restart required, named
    site.users(['alice', 'bob']);
    site.write(PLAIN(ACL('a/#') + 'metrics:\n  sysTopics: false\n'));
    r = await broker!.reload();
    expect(r.ok).toBe(false);
    expect(r.issues.map((i) => i.message).join('\n')).toMatch(/metrics.* changed and would turn on metrics.*: restart required/);
    expect(alice.connected).toBe(true);
    expect(events.filter((e) => e.type === 'profile.reloaded')).toHaveLength(0);
  });

  it('the embedding API takes a new profile object too; reloads run one at a time', async () => {
    const site = siteDir();
    site.write(PLAIN(ACL('a/#')));
    await start(site.file);
    const next = { version: 1 as const, tier: 2 as const, listeners: [{ name: 'plain', protocol: 'mqtt' as const, port: 0 }], authentication: { passwords: { file: 'users.txt' } }, logging: { level: 'debug' as const } };
    const [a, b] = await Promise.all([broker!.reload(), broker!.reload({ ...next })]);
    expect(a.ok && b.ok).toBe(true);
    // the test's logger is its own: the profile's level is recorded, not forced on it
    expect(b.changes).toContain("logging.level: info → debug (not applied: the embedding application's logger decides)");
    expect(broker!.profile.logging.level).toBe('debug');
    expect(broker!.logger.level).toBe('silent');
  }, 20_000);
});

/** The CLI without blocking this process (a broker under test may run in it). */
function bastionAsync(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('bastion start and bastion reload', () => {
  it('SIGHUP reloads the whole profile; `bastion reload --pid-file` sends it; a bad profile is refused and the broker runs on', async () => {
    const site = siteDir();
    site.write(PLAIN(ACL('a/#')));
    const pidFile = path.join(site.dir, 'bastion.pid');
    running = bastionStart(['--profile', site.file, '--pid-file', pidFile]);
    const m = await running.waitFor(/plain listening on mqtt:\/\/127\.0\.0\.1:(\d+)/);
    const url = `mqtt://127.0.0.1:${m[1]}`;
    await waitFor(() => existsSync(pidFile), 5000, 'the pid file');
    const alice = await client(url, { username: 'alice', password: 'alice-password' });
    await expect(alice.subscribeAsync('b/#')).rejects.toThrow();

    site.write(PLAIN(ACL('b/#')));
    const sent = bastion(['reload', '--pid-file', pidFile]);
    expect(sent.code).toBe(0);
    expect(sent.stdout).toMatch(/sent SIGHUP to \d+/);
    await running.waitFor(/profile\.reloaded: profile reloaded from .*site\.yaml: acl: 2 profile rules/);
    expect((await alice.subscribeAsync('b/#'))[0]!.qos).toBe(0);

    site.write(PLAIN(ACL('b/#')).replace('port: 0', 'port: 1'));
    expect(bastion(['reload', '--pid-file', pidFile]).code).toBe(0);
    await running.waitFor(/profile\.reload\.failed: .*listener plain changed address .*restart required/);
    expect(alice.connected).toBe(true);
    expect(await running.stop()).toBe(0);
    expect(existsSync(pidFile)).toBe(false);
    rmSync(site.dir, { recursive: true, force: true });
  }, 60_000);

  it('`bastion reload --url` reloads through the admin API and prints what changed or why not', async () => {
    const site = siteDir();
    const token = newToken();
    const admin = `admin:\n  port: 0\n  tokens: [{ name: ops, hash: '${hashToken(token)}' }]\n`;
    site.write(PLAIN(ACL('a/#') + admin));
    await start(site.file);
    const url = (broker!.controls.services.find((s) => s.name === 'admin') as unknown as { server: { url: string } }).server.url;
    const tokenFile = path.join(site.dir, 'token');
    writeFileSync(tokenFile, token, { mode: 0o600 });

    site.write(PLAIN(ACL('c/#') + admin));
    let r = await bastionAsync(['reload', '--url', url, '--token-file', tokenFile]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^bastion: profile reloaded from .*site\.yaml\n {2}acl: 2 profile rules/);
    expect(broker!.profile.acl?.rules[0]?.topics).toEqual(['c/#']);
    expect(events.find((e) => e.type === 'admin.action' && e.detail?.['action'] === 'profile.reload')).toBeDefined();

    site.write(PLAIN(ACL('c/#') + admin).replace('tier: 2', 'tier: 9'));
    r = await bastionAsync(['reload', '--url', url, '--token-file', tokenFile]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/site\.yaml:2:7 tier: .*\nbastion: reload refused; the running configuration is unchanged \(1 issue\)\n$/);
    // usage
    expect(bastion(['reload']).code).toBe(2);
    expect(bastion(['reload', '--pid-file', path.join(site.dir, 'none.pid')]).code).toBe(1);
  }, 60_000);
});
