/**
 * Live state across a cluster: two broker processes (`bastion start`) on one Redis. What an operator
 * changes on node A through the admin API — an ACL rule, a certificate revocation, a user — is in
 * force on node B (withdrawn subscriptions, kicked connections, refused reconnects); a rate-limit
 * budget with the Redis store is one budget for both nodes. In-process nodes check the embedding
 * API, the whole-set replace and that nothing is echoed back.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { inject } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import { hashToken, newToken } from '@bastion/admin';
import { createCRL, type Issued } from '@bastion/pki';
import { hashPassword, serializeUsers, type Acl, type AclRule, type Revocation } from '@bastion/middleware';
import type { ProfileInput } from '@bastion/profile';
import type { PersistenceControl } from '../packages/broker/src/controls/persistence.js';
import { bastionStart, type Running } from './support/cli.js';
import { connect, tryConnect, isRefusal, closed, waitFor } from './support/mqtt.js';
import { freePort } from './support/redis-server.js';
import { keyFile, tempDir, uniquePrefix } from './support/persistence.js';
import { makeTestPki, type TestPki } from './support/pki.js';

const silent = pino({ level: 'silent' });
const redisUrl = inject('redisUrl');
const OPS = newToken();
/** Generous: the changes take a Redis round trip; a loaded test machine must not fail them. */
const SOON = 5000;
const running: Running[] = [];
const brokers: Bastion[] = [];
const clients: mqtt.MqttClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await Promise.all(running.splice(0).map((r) => (r.child.exitCode === null && r.child.signalCode === null ? r.stop('SIGTERM') : undefined)));
  for (const b of brokers.splice(0)) await b.close();
});

function clusterSection(prefix: string, keyPath: string) {
  return { store: 'redis', cluster: true, redis: { url: redisUrl, prefix }, encryption: { keys: [{ file: keyPath }] } };
}

interface Node {
  /** MQTT URL of the node's first listener. */
  mqtt: string;
  /** Admin API base URL. */
  api: string;
  run: Running;
}

/** One `bastion start` process with a cluster store and the admin API; `profile` is merged over the base. */
async function node(dir: string, name: string, profile: Record<string, unknown>): Promise<Node> {
  const port = await freePort();
  const adminPort = await freePort();
  const { listeners, ...rest } = profile as { listeners?: Array<Record<string, unknown>> };
  const file = path.join(dir, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      version: 1,
      listeners: (listeners ?? [{ protocol: 'mqtt' }]).map((l) => ({ host: '127.0.0.1', ...l, port })),
      admin: { port: adminPort, tokens: [{ name: 'ops', hash: hashToken(OPS) }] },
      logging: { level: 'warn' },
      ...rest,
    }),
  );
  const run = bastionStart(['--profile', file], { cwd: dir });
  running.push(run);
  const m = await run.waitFor(/listening on (mqtts?):\/\/[^\s]+/, 20_000);
  const api = `http://127.0.0.1:${adminPort}`;
  await eventually(async () => (await call(api, 'GET', '/v1/health')).status === 200, SOON, `the admin API of ${name}`);
  return { mqtt: `${m[1]}://${m[1] === 'mqtts' ? 'localhost' : '127.0.0.1'}:${port}`, api, run };
}

async function call(api: string, method: string, p: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(api + p, {
    method,
    headers: { authorization: `Bearer ${OPS}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

/** Poll an async condition (HTTP, …) until it holds. */
async function eventually(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const start = Date.now();
  for (;;) {
    if (await cond().catch(() => false)) return;
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function client(url: string, opts: mqtt.IClientOptions): Promise<mqtt.MqttClient> {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

/** Everything a client receives, in order. */
function inbox(c: mqtt.MqttClient): Array<{ topic: string; payload: string }> {
  const got: Array<{ topic: string; payload: string }> = [];
  c.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
  return got;
}

const ids = (rules: AclRule[]) => rules.map((r) => r.id);

describe('ACL changes, user changes and revocations made on node A are in force on node B', () => {
  const ACL_RULES = [
    { id: 'read-feed', effect: 'allow', actions: ['subscribe', 'read'], topics: ['feed/#'] },
    { id: 'publish-feed', effect: 'allow', actions: ['publish'], topics: ['feed/#'] },
    { id: 'fence', effect: 'allow', actions: ['subscribe', 'read', 'publish'], topics: ['fence/#'] },
    { id: 'read-alerts', effect: 'allow', actions: ['subscribe', 'read'], topics: ['alerts/#'] },
  ];

  async function passwordPair(tag: string) {
    const dir = tempDir(tag);
    const prefix = uniquePrefix(tag);
    const key = keyFile(dir, 'cluster.key');
    const users = serializeUsers([
      { username: 'alice', hash: await hashPassword('alice-password'), groups: [] },
      { username: 'bob', hash: await hashPassword('bob-password'), groups: [] },
    ]);
    // each node its own users file: nothing reaches B through a shared file
    writeFileSync(path.join(dir, 'users-a.txt'), users, { mode: 0o600 });
    writeFileSync(path.join(dir, 'users-b.txt'), users, { mode: 0o600 });
    const base = (usersFile: string) => ({
      authentication: { passwords: { file: usersFile } },
      acl: { defaultEffect: 'deny', publishDenied: 'drop', rules: ACL_RULES },
      persistence: clusterSection(prefix, key.path),
    });
    const [a, b] = await Promise.all([node(dir, 'a', base('users-a.txt')), node(dir, 'b', base('users-b.txt'))]);
    return { a, b };
  }

  it('a rule removed on A withdraws a live subscription on B; a rule added on A lets a client publish on B; a replace on B converges A', async () => {
    const { a, b } = await passwordPair('acl');
    const sub = await client(b.mqtt, { clientId: 'sub-on-b', username: 'alice', password: 'alice-password' });
    await sub.subscribeAsync(['feed/#', 'fence/#'], { qos: 1 });
    const got = inbox(sub);
    const pubA = await client(a.mqtt, { clientId: 'pub-on-a', username: 'bob', password: 'bob-password' });
    await eventually(async () => {
      await pubA.publishAsync('feed/1', 'before', { qos: 1 }); // until A has heard of B's subscription
      return got.some((m) => m.topic === 'feed/1');
    }, SOON, 'a message from A on B');

    // removed on A …
    expect((await call(a.api, 'DELETE', '/v1/acl/read-feed')).status).toBe(200);
    // … gone from B's rules and from the subscriber's live subscriptions there
    await eventually(async () => !ids((await call(b.api, 'GET', '/v1/acl')).json.rules).includes('read-feed'), SOON, 'the removal on B');
    await eventually(async () => {
      const subs = (await call(b.api, 'GET', '/v1/clients/sub-on-b')).json.subscriptions as Array<{ topic: string }>;
      return subs.length === 1 && subs[0]!.topic === 'fence/#';
    }, SOON, 'the subscription withdrawn on B');
    // nothing more on feed/#: a message on feed/ then one on fence/ from the same publisher; the fence arrives, feed/2 does not
    const pubB = await client(b.mqtt, { clientId: 'pub-on-b', username: 'bob', password: 'bob-password' });
    await pubB.publishAsync('feed/2', 'after', { qos: 1 });
    await pubB.publishAsync('fence/1', 'fence', { qos: 1 });
    await waitFor(() => got.some((m) => m.topic === 'fence/1'), SOON, 'the fence message');
    expect(got.filter((m) => m.topic === 'feed/2')).toEqual([]);
    expect(sub.connected).toBe(true); // onRevoked: unsubscribe (the default)

    // added on A: B's client may publish to alerts/ (refused before), read by a subscriber on A
    const watch = await client(a.mqtt, { clientId: 'watch-on-a', username: 'alice', password: 'alice-password' });
    await watch.subscribeAsync(['alerts/#', 'fence/#'], { qos: 1 });
    const seen = inbox(watch);
    await eventually(async () => {
      await pubB.publishAsync('alerts/0', 'refused', { qos: 1 }); // dropped by B's ACL
      await pubB.publishAsync('fence/2', 'fence', { qos: 1 });
      return seen.some((m) => m.topic === 'fence/2');
    }, SOON, 'the fence on A');
    expect(seen.filter((m) => m.topic === 'alerts/0')).toEqual([]);
    const added = await call(a.api, 'POST', '/v1/acl', { id: 'publish-alerts', effect: 'allow', actions: ['publish'], topics: ['alerts/#'] });
    expect(added.status).toBe(201);
    await eventually(async () => ids((await call(b.api, 'GET', '/v1/acl')).json.rules).includes('publish-alerts'), SOON, 'the new rule on B');
    await pubB.publishAsync('alerts/1', 'allowed', { qos: 1 });
    await waitFor(() => seen.some((m) => m.topic === 'alerts/1' && m.payload === 'allowed'), SOON, 'the allowed message on A');

    // a whole-set replace on B carries the set: both nodes end with the same rules
    const genA = (await call(a.api, 'GET', '/v1/acl')).json.generation as number;
    const replaced = await call(b.api, 'PUT', '/v1/acl', [ACL_RULES[2], { id: 'read-all', effect: 'allow', actions: ['subscribe', 'read'], topics: ['#'] }]);
    expect(replaced.status).toBe(200);
    await eventually(async () => ids((await call(a.api, 'GET', '/v1/acl')).json.rules).join() === 'fence,read-all', SOON, 'the replace on A');
    const [onA, onB] = await Promise.all([call(a.api, 'GET', '/v1/acl'), call(b.api, 'GET', '/v1/acl')]);
    expect(onA.json.rules).toEqual(onB.json.rules);
    // applied once on A: B did not echo A's earlier changes back (they would have come before the replace)
    expect(onA.json.generation).toBe(genA + 1);
  }, 90_000);

  it('a user removed on A loses their session on B and cannot log in there; a password changed on A ends the old one on B', async () => {
    const { a, b } = await passwordPair('users');
    const alice = await client(b.mqtt, { clientId: 'alice-on-b', username: 'alice', password: 'alice-password' });
    const bob = await client(b.mqtt, { clientId: 'bob-on-b', username: 'bob', password: 'bob-password' });
    const aliceGone = closed(alice, SOON);
    expect((await call(a.api, 'DELETE', '/v1/users/alice')).status).toBe(200);
    await aliceGone;
    expect(isRefusal(await tryConnect(b.mqtt, { clientId: 'alice-again', username: 'alice', password: 'alice-password' }))).toBe(true);
    expect(bob.connected).toBe(true);

    const bobGone = closed(bob, SOON);
    expect((await call(a.api, 'POST', '/v1/users/bob/password', { password: 'bob-new-password' })).status).toBe(200);
    await bobGone;
    expect(isRefusal(await tryConnect(b.mqtt, { clientId: 'bob-again', username: 'bob', password: 'bob-password' }))).toBe(true);
    // on A, where the users file changed, the new password works
    clients.push(await connect(a.mqtt, { clientId: 'bob-on-a', username: 'bob', password: 'bob-new-password' }));
  }, 90_000);
});

describe('a certificate revoked on node A', () => {
  it('is kicked on B, and refused there when it reconnects', async () => {
    const pki: TestPki = makeTestPki();
    const prefix = uniquePrefix('revoke');
    const key = keyFile(pki.dir, 'cluster.key');
    pki.write('crl.pem', createCRL(pki.ca, [], { crlNumber: 1 }));
    const meter = pki.client('meter-7');
    const other = pki.client('meter-8');
    const profile = {
      listeners: [{ protocol: 'mqtts' }],
      tls: { cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem', clientCertificate: 'required' },
      authentication: { certificates: { identity: 'cn' } },
      revocation: { crl: 'crl.pem', stale: 'warn' },
      persistence: clusterSection(prefix, key.path),
    };
    const [a, b] = await Promise.all([node(pki.dir, 'ra', profile), node(pki.dir, 'rb', profile)]);
    const tls = (c: Issued) => ({ ca: pki.ca.certPem, cert: c.certPem, key: c.keyPem, rejectUnauthorized: true });
    const onA = await client(a.mqtt, { clientId: 'meter-7-a', ...tls(meter) });
    const onB = await client(b.mqtt, { clientId: 'meter-7-b', ...tls(meter) });
    const bystander = await client(b.mqtt, { clientId: 'meter-8-b', ...tls(other) });
    const goneA = closed(onA, SOON);
    const goneB = closed(onB, SOON);

    // the admin API's revoke finds the certificate of the user's live connection on A and revokes its serial
    const r = await call(a.api, 'POST', '/v1/responses/revoke', { username: 'meter-7', reason: 'key leaked' });
    expect(r.status).toBe(201);
    expect(r.json.action).toMatchObject({ outcome: 'done', detail: { credential: 'certificate' } });
    await Promise.all([goneA, goneB]);
    expect(isRefusal(await tryConnect(b.mqtt, { clientId: 'meter-7-again', ...tls(meter) }))).toBe(true);
    expect(bystander.connected).toBe(true);
    clients.push(await connect(b.mqtt, { clientId: 'meter-8-again', ...tls(other) }));
  }, 90_000);
});

describe('a rate-limit budget in a cluster', () => {
  it('with the Redis store, one per-address budget for both nodes: 10 connections in all, not 10 per node', async () => {
    const dir = tempDir('cluster-rl');
    const prefix = uniquePrefix('rl');
    const key = keyFile(dir, 'cluster.key');
    const profile = {
      authentication: { anonymous: true },
      persistence: clusterSection(prefix, key.path),
      // tarpit off: refused sockets closed at once (this counts them; a held one waits out the client's timeout)
      rateLimits: { store: { redis: { url: redisUrl, keyPrefix: `${prefix}rl:` } }, connections: { perIp: { rate: 10, per: '60s' } }, tarpit: false },
    };
    const [a, b] = await Promise.all([node(dir, 'la', profile), node(dir, 'lb', profile)]);
    let accepted = 0;
    for (let i = 0; i < 30; i++) {
      const r = await tryConnect(i % 2 === 0 ? a.mqtt : b.mqtt, { clientId: `burst-${i}` });
      if (!isRefusal(r)) {
        accepted++;
        clients.push(r);
      }
    }
    expect(accepted).toBe(10);
  }, 90_000);
});

describe('the embedding API on in-process nodes', () => {
  const dir = tempDir('cluster-embed');

  async function inProcess(prefix: string, keyPath: string, extra: Partial<ProfileInput> = {}) {
    const broker = await createBroker({
      profile: { version: 1, listeners: [{ protocol: 'mqtt', port: 0 }], authentication: { anonymous: true }, persistence: clusterSection(prefix, keyPath), ...extra } as ProfileInput,
      baseDir: dir,
      logger: silent,
    });
    brokers.push(broker);
    const events: SecurityEvent[] = [];
    broker.events.on((e) => events.push(e));
    return { broker, events };
  }

  it('acl.addRule/removeRule/setRules spread both ways, each applied once (no echo); an add of a known id replaces it; a set a node refuses is reported', async () => {
    const prefix = uniquePrefix('acl-embed');
    const key = keyFile(dir, 'acl.key');
    const acl = { defaultEffect: 'deny', rules: [{ id: 'base', effect: 'allow', actions: ['subscribe', 'read', 'publish'], topics: ['base/#'] }] } as ProfileInput['acl'];
    const A = await inProcess(prefix, key.path, { acl });
    const B = await inProcess(prefix, key.path, { acl });
    const aclA = A.broker.controls.get<Acl>('acl')!;
    const aclB = B.broker.controls.get<Acl>('acl')!;
    const stateOf = (n: { broker: Bastion }) => n.broker.controls.get<PersistenceControl>('persistence')!.state!;
    const origins = (n: { events: SecurityEvent[] }) => n.events.filter((e) => e.type === 'acl.changed').map((e) => (e.detail as { origin: string }).origin);
    const genA = aclA.generation;
    const genB = aclB.generation;

    await aclA.addRule({ id: 'x', effect: 'allow', actions: ['publish'], topics: ['x/#'] });
    await waitFor(() => aclB.rules().some((r) => r.id === 'x'), SOON, 'x on B');
    await aclB.addRule({ id: 'y', effect: 'allow', actions: ['publish'], topics: ['y/#'] });
    await waitFor(() => aclA.rules().some((r) => r.id === 'y'), SOON, 'y on A');
    await aclA.removeRule('y');
    await aclA.setRules([...aclA.codeRules().filter((r) => r.id !== 'x'), { id: 'x', effect: 'deny', actions: ['publish'], topics: ['x/secret'] }]);
    await waitFor(() => aclB.rules().find((r) => r.id === 'x')?.effect === 'deny', SOON, 'the replaced x on B');
    expect(aclB.codeRules()).toEqual(aclA.codeRules());
    expect(aclB.check({ id: 'c' }, 'publish', 'x/secret').effect).toBe('deny');

    // a fence from B: anything B echoed of A's changes would have reached A before it
    await aclB.addRule({ id: 'fence', effect: 'allow', actions: ['publish'], topics: ['fence'] });
    await waitFor(() => aclA.rules().some((r) => r.id === 'fence'), SOON, 'the fence on A');
    expect(aclA.generation - genA).toBe(5); // x, y (from B), remove y, set, fence (from B): each once
    expect(aclB.generation - genB).toBe(5);
    const fromB = `cluster:${stateOf(B).nodeId}`;
    await waitFor(() => origins(A).length === 5 && origins(B).length === 5, SOON, 'the acl.changed events');
    expect([...origins(A)].sort()).toEqual(['api', 'api', 'api', fromB, fromB].sort());
    expect(origins(B).filter((o) => o === 'api')).toHaveLength(2);

    // an add whose id the receiver holds replaces that rule (last writer wins per id)
    await stateOf(A).publish('acl', { op: 'add', rule: { id: 'x', effect: 'allow', actions: ['publish'], topics: ['x/open'] } });
    await waitFor(() => aclB.rules().find((r) => r.id === 'x')?.topics[0] === 'x/open', SOON, 'x replaced on B');
    expect(aclB.codeRules().filter((r) => r.id === 'x')).toHaveLength(1);

    // a set this node refuses changes nothing here and is reported
    const before = aclB.generation;
    await stateOf(A).publish('acl', { op: 'replace', rules: [{ id: 'bad', effect: 'allow', actions: ['publish'], topics: ['a/#/b'] }] });
    await waitFor(() => B.events.some((e) => e.type === 'cluster.message-rejected' && (e.detail as { kind?: string }).kind === 'acl'), SOON, 'the refusal on B');
    expect(aclB.generation).toBe(before);
    expect(aclB.rules().some((r) => r.id === 'bad')).toBe(false);
  }, 30_000);

  it('revocation.revoke/unrevoke spread to the other node', async () => {
    const pki = makeTestPki();
    pki.write('crl.pem', createCRL(pki.ca, [], { crlNumber: 1 }));
    const prefix = uniquePrefix('revoke-embed');
    const key = keyFile(pki.dir, 'revoke.key');
    const extra = {
      listeners: [{ protocol: 'mqtts', port: 0 }],
      tls: { cert: path.join(pki.dir, 'server.pem'), key: path.join(pki.dir, 'server-key.pem'), ca: path.join(pki.dir, 'ca.pem'), clientCertificate: 'required' },
      authentication: { certificates: { identity: 'cn' } },
      revocation: { crl: path.join(pki.dir, 'crl.pem'), stale: 'warn' },
    } as Partial<ProfileInput>;
    const A = await inProcess(prefix, key.path, extra);
    const B = await inProcess(prefix, key.path, extra);
    const revA = A.broker.controls.get<Revocation>('revocation')!;
    const revB = B.broker.controls.get<Revocation>('revocation')!;
    const cert = pki.client('sensor-1');
    const url = `mqtts://localhost:${Object.values(B.broker.addresses())[0]!.port}`;
    const onB = await client(url, { clientId: 'sensor-1', ca: pki.ca.certPem, cert: cert.certPem, key: cert.keyPem });
    const gone = closed(onB, SOON);

    revA.revoke(cert.serial, { reason: 'keyCompromise' });
    await gone;
    expect(revB.revoked()).toEqual(revA.revoked());
    expect(revB.revoked()[0]).toMatchObject({ reason: 'keyCompromise' });
    expect(B.events.find((e) => e.type === 'certificate.revoked')).toMatchObject({ detail: { origin: expect.stringMatching(/^cluster:/), action: 'disconnected' } });

    revB.unrevoke(cert.serial);
    await waitFor(() => revA.revoked().length === 0, SOON, 'the unrevoke on A');
    clients.push(await connect(url, { clientId: 'sensor-1', ca: pki.ca.certPem, cert: cert.certPem, key: cert.keyPem }));
  }, 30_000);
});
