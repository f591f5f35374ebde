/**
 * The admin API over real sockets: a broker from a profile with an `admin` section, real mqtt.js
 * clients (TCP and mutual TLS), HTTP(S) requests to the API, the users file on disk.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import { hashPassword, readUsersFile, serializeUsers } from '@bastion/middleware';
import { AuthFailureLimiter, hashToken, newToken, type AdminServer } from '@bastion/admin';
import type { ProfileInput } from '@bastion/profile';
import { createCA, issueClientCert, normalizeSerial } from '@bastion/pki';
import { connect, tryConnect, isRefusal, closed, nextMessage, waitFor, collectCount } from './support/mqtt.js';
import { makeTestPki, type TestPki } from './support/pki.js';

const silent = pino({ level: 'silent' });
const OPS = newToken();
const VIEWER = newToken();
let pki: TestPki;
let usersFile: string;
let broker: Bastion | undefined;
const clients: mqtt.MqttClient[] = [];

beforeAll(async () => {
  pki = makeTestPki();
  pki.write('admin-server.pem', pki.server.certPem);
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
});

async function writeUsers(): Promise<void> {
  usersFile = pki.write('users.txt', serializeUsers([
    { username: 'alice', hash: await hashPassword('alice-password'), groups: [] },
    { username: 'bob', hash: await hashPassword('bob-password'), groups: ['operators'] },
  ]));
}

const tls = (clientCertificate: 'none' | 'optional' | 'required') => ({ cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem', clientCertificate });

interface Started {
  api: string;
  events: SecurityEvent[];
  mqttUrl: (listener: string) => string;
}

async function start(admin: NonNullable<ProfileInput['admin']> = {}, extra: Partial<ProfileInput> = {}): Promise<Started> {
  await writeUsers();
  broker = await createBroker({
    profile: {
      version: 1,
      listeners: [
        { name: 'tcp', protocol: 'mqtt', port: 0 },
        { name: 'tls', protocol: 'mqtts', port: 0, tls: tls('optional') },
      ],
      authentication: { passwords: { file: 'users.txt' }, certificates: { identity: 'cn' } },
      admin: { port: 0, tokens: [{ name: 'ops', hash: hashToken(OPS) }, { name: 'viewer', hash: hashToken(VIEWER), readOnly: true }], ...admin },
      ...extra,
    } as ProfileInput,
    baseDir: pki.dir,
    logger: silent,
  });
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  const service = broker.controls.services.find((s) => s.name === 'admin') as unknown as { server: AdminServer };
  const mqttUrl = (name: string) => {
    const a = broker!.addresses()[name]!;
    return `${a.transport}://localhost:${a.port}`;
  };
  return { api: service.server.url, events, mqttUrl };
}

async function call(api: string, method: string, path: string, opts: { token?: string | undefined; body?: unknown; raw?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined;
  if (opts.raw !== undefined) body = opts.raw;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
  const res = await fetch(api + path, { method, headers, body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: (text ? JSON.parse(text) : undefined) as any };
}

async function mqttClient(url: string, opts: mqtt.IClientOptions): Promise<mqtt.MqttClient> {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

describe('admin API authentication', () => {
  it('no token → 401 and an admin.denied event; a wrong token → 401; the right token → 200 and an admin.action event naming it', async () => {
    const { api, events } = await start();
    const none = await call(api, 'GET', '/v1/clients');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(none.json.error.code).toBe('unauthorized');
    const denied = events.filter((e) => e.type === 'admin.denied');
    expect(denied).toHaveLength(1);
    expect(denied[0]).toMatchObject({ control: 'PR.AC-3', source: 'admin', remoteAddress: '127.0.0.1', detail: { method: 'GET', path: '/v1/clients', status: 401 } });

    const wrong = await call(api, 'GET', '/v1/clients', { token: newToken() });
    expect(wrong.status).toBe(401);
    const malformed = await call(api, 'GET', '/v1/clients', { headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } });
    expect(malformed.status).toBe(401);
    expect(events.filter((e) => e.type === 'admin.denied')).toHaveLength(3);
    // the token never appears in any event
    expect(JSON.stringify(events)).not.toContain(OPS);

    const ok = await call(api, 'GET', '/v1/clients', { token: OPS });
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({ clients: [] });
    expect(ok.headers.get('cache-control')).toBe('no-store');
    expect(events.find((e) => e.type === 'admin.action')).toMatchObject({ control: 'ID.AM-1', detail: { actor: 'token:ops', action: 'clients.list', status: 200 } });
    expect(JSON.stringify(events)).not.toContain(OPS);
  });

  it('a read-only token reads but changes nothing (403); browser requests and foreign Host headers are refused', async () => {
    const { api, events, mqttUrl } = await start();
    await mqttClient(mqttUrl('tcp'), { clientId: 'c1', username: 'alice', password: 'alice-password' });
    expect((await call(api, 'GET', '/v1/clients', { token: VIEWER })).status).toBe(200);
    const kick = await call(api, 'POST', '/v1/clients/c1/disconnect', { token: VIEWER });
    expect(kick.status).toBe(403);
    expect(broker!.client('c1')).toBeDefined();
    expect(events.filter((e) => e.type === 'admin.denied').at(-1)).toMatchObject({ detail: { actor: 'token:viewer', status: 403 } });

    const fromBrowser = await call(api, 'GET', '/v1/clients', { token: OPS, headers: { origin: 'https://evil.example' } });
    expect(fromBrowser.status).toBe(403);
    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 (fetch cannot set Host: plain http)
    const rebound = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${api}/v1/clients`, { headers: { host: 'evil.example:8884', authorization: `Bearer ${OPS}` } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(rebound).toBe(403);
    expect(events.filter((e) => e.type === 'admin.denied').at(-1)).toMatchObject({ message: expect.stringContaining('evil.example') });
  });

  it('HTTPS with client certificates: an allowed CN gets in, another CN and no credentials get 401, a token still works', async () => {
    const { api, events } = await start({ tls: { cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem', clientCertificate: 'optional' }, certificates: { allow: ['ops-admin'] } });
    expect(api).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const get = (cert?: { certPem: string; keyPem: string }, token?: string) =>
      new Promise<number>((resolve, reject) => {
        const req = https.request(`${api}/v1/health`, { ca: pki.ca.certPem, ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}), headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    expect(await get(pki.client('ops-admin'))).toBe(200);
    expect(await get(pki.client('device-1'))).toBe(401);
    expect(await get()).toBe(401);
    expect(await get(undefined, OPS)).toBe(200);
    expect(events.filter((e) => e.type === 'admin.denied').map((e) => e.detail?.actor)).toContain('cert:device-1');
  });

  it('mutual TLS required: no client certificate fails the handshake (admin.denied, PR.AC-1); an allowed one gets in', async () => {
    const { api, events } = await start({ tls: { cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem', clientCertificate: 'required' }, certificates: { allow: ['ops-admin'] } });
    const get = (cert?: { certPem: string; keyPem: string }) =>
      new Promise<number | string>((resolve) => {
        const req = https.request(`${api}/v1/health`, { ca: pki.ca.certPem, ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}) }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
        req.end();
      });
    expect(typeof (await get())).toBe('string');
    await waitFor(() => events.some((e) => e.type === 'admin.denied' && e.control === 'PR.AC-1'), 3000, 'handshake refusal event');
    expect(events.find((e) => e.type === 'admin.denied')).toMatchObject({ reason: 'certificate-rejected', remoteAddress: '127.0.0.1' });
    expect(await get(pki.client('ops-admin'))).toBe(200);
  });

  it('the profile refuses an anonymous API outside dev-on-loopback, an API off loopback without TLS, and an API nobody can call', async () => {
    await writeUsers();
    const make = (admin: NonNullable<ProfileInput['admin']>) =>
      createBroker({ profile: { version: 1, listeners: [{ protocol: 'mqtt', port: 0 }], authentication: { anonymous: true }, admin: { port: 0, ...admin } }, baseDir: pki.dir, logger: silent });
    await expect(make({ anonymous: true })).rejects.toThrow(/admin\.anonymous.*dev: true/);
    await expect(make({ anonymous: true, dev: true, host: '0.0.0.0', tls: { cert: 'server.pem', key: 'server-key.pem' } })).rejects.toThrow(/loopback/);
    await expect(make({ host: '0.0.0.0', tokens: [{ name: 'ops', hash: hashToken(OPS) }] })).rejects.toThrow(/admin\.host.*tls/);
    await expect(make({})).rejects.toThrow(/no way in/);
    await expect(make({ tokens: [{ name: 'ops', hash: 'sha256:abc' }] })).rejects.toThrow(/admin\.tokens\[0\]\.hash/);
    const fine = await make({ tokens: [{ name: 'ops', hash: hashToken(OPS) }] });
    await fine.close();
    // tier 3 of PR.AC: TLS even on loopback
    await expect(
      createBroker({ profile: { version: 1, tiers: { 'PR.AC': 3 }, listeners: [{ protocol: 'mqtt', port: 0 }], authentication: { anonymous: true }, admin: { port: 0, tokens: [{ name: 'ops', hash: hashToken(OPS) }] } }, baseDir: pki.dir, logger: silent }),
    ).rejects.toThrow(/tier 3/);
  });

  it('anonymous access works only as configured: dev: true on loopback', async () => {
    const { api, events } = await start({ anonymous: true, dev: true, tokens: [] });
    const r = await call(api, 'GET', '/v1/health');
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ status: 'ok', actor: 'anonymous' });
    await call(api, 'GET', '/v1/users');
    expect(events.find((e) => e.type === 'admin.action')?.detail).toMatchObject({ actor: 'anonymous' });
    // a wrong token is still wrong
    expect((await call(api, 'GET', '/v1/health', { token: newToken() })).status).toBe(401);
  });
});

/** A GET from a chosen local address (127.0.0.2 plays a second caller), with or without a token. */
function getFrom(api: string, localAddress: string, token: string | undefined) {
  return new Promise<{ status: number; retryAfter: string | undefined; body: any }>((resolve, reject) => {
    const req = http.request(`${api}/v1/health`, { localAddress, agent: false, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('admin API: failed logins per address', () => {
  it('10 wrong tokens from an address → the 11th request gets 429 with Retry-After, even with the right token; one rate.limited event; another address still gets in', async () => {
    const { api, events } = await start();
    for (let i = 0; i < 10; i++) expect((await getFrom(api, '127.0.0.1', newToken())).status).toBe(401);
    expect(events.filter((e) => e.type === 'rate.limited')).toHaveLength(1); // the 10th failure spent the budget

    const eleventh = await getFrom(api, '127.0.0.1', newToken());
    expect(eleventh.status).toBe(429);
    expect(eleventh.body.error.code).toBe('too-many-requests');
    expect(Number(eleventh.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(eleventh.retryAfter)).toBeLessThanOrEqual(60);
    // during the lockout the credentials are not looked at: the right token is refused the same way
    const right = await getFrom(api, '127.0.0.1', OPS);
    expect(right.status).toBe(429);
    expect(right.body).toEqual(eleventh.body);
    // refusals during a lockout are not 401s: no admin.denied for them, no admin.action for the right token
    expect(events.filter((e) => e.type === 'admin.denied')).toHaveLength(10);
    expect(events.filter((e) => e.type === 'admin.action')).toHaveLength(0);

    const lockout = events.filter((e) => e.type === 'rate.limited');
    expect(lockout).toHaveLength(1);
    expect(lockout[0]).toMatchObject({
      control: 'PR.SS-5',
      source: 'admin',
      listener: 'admin',
      remoteAddress: '127.0.0.1',
      reason: 'rate-limited',
      detail: { limit: 'admin.authFailures.perIp', consequence: 'refuse', rate: 10, per: 60_000 },
    });

    // another address has its own budget
    const other = await getFrom(api, '127.0.0.2', OPS);
    expect(other.status).toBe(200);
    expect(other.body).toMatchObject({ status: 'ok', actor: 'token:ops' });
    expect((await getFrom(api, '127.0.0.2', newToken())).status).toBe(401);
  });

  it('admin.authFailures: a smaller budget locks out sooner and its window ends; perIp: false counts nothing', async () => {
    const { api, events } = await start({ authFailures: { perIp: { rate: 2, per: '1s' } } } as NonNullable<ProfileInput['admin']>);
    expect((await getFrom(api, '127.0.0.1', undefined)).status).toBe(401); // no credentials is a failure too
    expect((await getFrom(api, '127.0.0.1', newToken())).status).toBe(401);
    const locked = await getFrom(api, '127.0.0.1', OPS);
    expect(locked.status).toBe(429);
    expect(locked.retryAfter).toBe('1');
    expect(events.find((e) => e.type === 'rate.limited')?.detail).toMatchObject({ rate: 2, per: 1000 });
    // after the window the address starts afresh
    const until = Date.now() + 1000;
    await waitFor(() => Date.now() > until, 3000, 'the end of the window');
    expect((await getFrom(api, '127.0.0.1', OPS)).status).toBe(200);
    await broker!.close();

    const off = await start({ authFailures: { perIp: false } } as NonNullable<ProfileInput['admin']>);
    for (let i = 0; i < 15; i++) expect((await getFrom(off.api, '127.0.0.1', newToken())).status).toBe(401);
    expect((await getFrom(off.api, '127.0.0.1', OPS)).status).toBe(200);
    expect(off.events.some((e) => e.type === 'rate.limited')).toBe(false);
  });

  it('memory is bounded: beyond capacity the oldest address is forgotten first, expired windows before live ones', () => {
    let now = 0;
    const limiter = new AuthFailureLimiter({ perIp: { rate: 2, per: 1000 }, capacity: 3 }, () => now);
    for (const ip of ['10.0.0.1', '10.0.0.2', '10.0.0.3']) {
      limiter.fail(ip);
      expect(limiter.fail(ip)).toBe(1000); // the failure that spends the budget reports the lockout, once
    }
    expect(limiter.lockedFor('10.0.0.1')).toBe(1000);
    limiter.fail('10.0.0.4'); // full of live windows: the oldest goes
    expect(limiter.size).toBe(3);
    expect(limiter.lockedFor('10.0.0.1')).toBe(0);
    expect(limiter.lockedFor('10.0.0.2')).toBe(1000);
    now = 1500; // 2 and 3 expired; 4 too
    limiter.fail('10.0.0.5');
    expect(limiter.size).toBe(1);
    expect(limiter.lockedFor('10.0.0.2')).toBe(0);
  });
});

describe('admin API: failed TLS handshakes', () => {
  it('a client below the minimum TLS version → admin.denied tls-handshake-failed; a certificate from another CA → certificate-rejected', async () => {
    const { api, events } = await start({ tls: { cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem', minVersion: 'TLSv1.3', clientCertificate: 'required' }, certificates: { allow: ['ops-admin'] } });
    const get = (opts: https.RequestOptions) =>
      new Promise<number | string>((resolve) => {
        const req = https.request(`${api}/v1/health`, { ca: pki.ca.certPem, agent: false, ...opts }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
        req.end();
      });
    const admin = pki.client('ops-admin');
    expect(typeof (await get({ cert: admin.certPem, key: admin.keyPem, maxVersion: 'TLSv1.2' }))).toBe('string');
    await waitFor(() => events.some((e) => e.type === 'admin.denied'), 3000, 'handshake refusal event');
    expect(events.find((e) => e.type === 'admin.denied')).toMatchObject({ control: 'PR.AC-1', reason: 'tls-handshake-failed', remoteAddress: '127.0.0.1', detail: { code: 'ERR_SSL_UNSUPPORTED_PROTOCOL' } });

    const rogue = issueClientCert(createCA({ commonName: 'Rogue CA' }), { commonName: 'ops-admin' });
    expect(typeof (await get({ cert: rogue.certPem, key: rogue.keyPem }))).toBe('string');
    await waitFor(() => events.filter((e) => e.type === 'admin.denied').length >= 2, 3000, 'second refusal event');
    expect(events.filter((e) => e.type === 'admin.denied')[1]).toMatchObject({ control: 'PR.AC-1', reason: 'certificate-rejected', message: expect.stringMatching(/^TLS handshake failed: client certificate rejected: /) });
    expect(await get({ cert: admin.certPem, key: admin.keyPem })).toBe(200);
  });
});

describe('admin API: clients', () => {
  it('lists a real mqtts client with address, listener, certificate serial and expiry, subscriptions and traffic; then kicks it', async () => {
    const { api, events, mqttUrl } = await start();
    const device = pki.client('device-1');
    const sub = await mqttClient(mqttUrl('tls'), { clientId: 'device-1', ca: pki.ca.certPem, cert: device.certPem, key: device.keyPem, rejectUnauthorized: true });
    await sub.subscribeAsync('fleet/#', { qos: 1 });
    const pub = await mqttClient(mqttUrl('tcp'), { clientId: 'alice-1', username: 'alice', password: 'alice-password' });
    const got = new Promise<void>((resolve) => {
      let n = 0;
      sub.on('message', () => ++n === 2 && resolve());
    });
    await pub.publishAsync('fleet/a', 'hello', { qos: 1 });
    await pub.publishAsync('fleet/b', 'world!', { qos: 1 });
    await got;

    const list = await call(api, 'GET', '/v1/clients', { token: OPS });
    expect(list.status).toBe(200);
    expect(list.json.clients.map((c: { id: string }) => c.id)).toEqual(['alice-1', 'device-1']);
    const d = list.json.clients.find((c: { id: string }) => c.id === 'device-1');
    expect(d).toMatchObject({
      username: 'device-1',
      remoteAddress: '127.0.0.1',
      listener: 'tls',
      transport: 'mqtts',
      protocolVersion: 4,
      tls: { protocol: expect.stringMatching(/^TLSv1\.[23]$/) },
      certificate: { commonName: 'device-1', serial: normalizeSerial(device.serial), validTo: device.notAfter.toISOString().replace(/\.\d+Z$/, '.000Z') },
      subscriptions: [{ topic: 'fleet/#', qos: 1 }],
      messagesIn: 0,
      messagesOut: 2,
      bytesOut: 11,
    });
    expect(Date.parse(d.connectedAt)).toBeGreaterThan(0);
    const a = list.json.clients.find((c: { id: string }) => c.id === 'alice-1');
    expect(a).toMatchObject({ username: 'alice', listener: 'tcp', transport: 'mqtt', certificate: null, subscriptions: [], messagesIn: 2, bytesIn: 11, messagesOut: 0 });

    const one = await call(api, 'GET', `/v1/clients/${encodeURIComponent('device-1')}`, { token: OPS });
    expect(one.json).toMatchObject({ id: 'device-1', listener: 'tls' });
    expect((await call(api, 'GET', '/v1/clients/nobody', { token: OPS })).status).toBe(404);

    const gone = closed(sub);
    const kick = await call(api, 'POST', '/v1/clients/device-1/disconnect', { token: OPS, body: { reason: 'incident 42' } });
    expect(kick.status).toBe(200);
    await gone;
    await waitFor(() => events.some((e) => e.type === 'client.disconnected' && e.clientId === 'device-1'), 3000, 'disconnect event');
    expect(events.find((e) => e.type === 'client.disconnected' && e.clientId === 'device-1')).toMatchObject({ reason: 'kicked', message: 'by admin token:ops: incident 42' });
    expect(events.find((e) => e.type === 'admin.action' && e.detail?.action === 'clients.disconnect')).toMatchObject({ control: 'RS.RP-3', detail: { actor: 'token:ops', clientId: 'device-1', status: 200 } });
    expect(broker!.client('alice-1')).toBeDefined(); // the other client is untouched
    expect((await call(api, 'POST', '/v1/clients/device-1/disconnect', { token: OPS })).status).toBe(404);
  });
});

describe('admin API: clients behind a load balancer', () => {
  it('a client relayed with a PROXY v1 header is listed with the header\'s address, and proxy = the balancer; a direct client has proxy null', async () => {
    const { api, mqttUrl } = await start({}, {
      listeners: [
        { name: 'tcp', protocol: 'mqtt', port: 0 },
        { name: 'lb', protocol: 'mqtt', port: 0, proxyProtocol: { trusted: ['127.0.0.1'] } },
      ],
    } as Partial<ProfileInput>);
    const lbPort = broker!.addresses().lb!.port;
    const relayed = new mqtt.MqttClient(
      () => {
        const s = net.connect({ host: '127.0.0.1', port: lbPort });
        s.write('PROXY TCP4 192.0.2.10 192.0.2.1 40001 1883\r\n');
        return s;
      },
      { clientId: 'behind-lb', username: 'alice', password: 'alice-password', reconnectPeriod: 0, protocolVersion: 4 },
    );
    clients.push(relayed);
    await new Promise<void>((resolve, reject) => {
      relayed.once('connect', () => resolve());
      relayed.once('error', reject);
    });
    await mqttClient(mqttUrl('tcp'), { clientId: 'direct', username: 'bob', password: 'bob-password' });

    const list = await call(api, 'GET', '/v1/clients', { token: OPS });
    expect(list.status).toBe(200);
    const lb = list.json.clients.find((c: { id: string }) => c.id === 'behind-lb');
    expect(lb).toMatchObject({ remoteAddress: '192.0.2.10', remotePort: 40001, listener: 'lb', proxy: { address: '127.0.0.1', port: expect.any(Number) } });
    expect(lb.proxy.port).toBe(broker!.client('behind-lb')!.proxy!.port);
    expect(list.json.clients.find((c: { id: string }) => c.id === 'direct')).toMatchObject({ remoteAddress: '127.0.0.1', listener: 'tcp', proxy: null });
    expect((await call(api, 'GET', '/v1/clients/behind-lb', { token: OPS })).json.proxy).toEqual(lb.proxy);
  });
});

describe('admin API: validation', () => {
  it('a bad JSON body → 400 with the reason; a wrong field → 400 naming it; a non-JSON body → 415; too big → 413; unknown paths 404, wrong methods 405', async () => {
    const { api } = await start({ maxBodySize: '2KiB' });
    const bad = await call(api, 'POST', '/v1/users', { token: OPS, raw: '{"username": "carol", ' });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatchObject({ code: 'bad-request', message: expect.stringMatching(/^the body is not valid JSON: /) });
    const field = await call(api, 'POST', '/v1/users', { token: OPS, body: { username: 'carol', password: 'short', admin: true } });
    expect(field.status).toBe(400);
    expect(field.json.error.message).toMatch(/password: a password needs at least 8 characters/);
    expect(field.json.error.message).toMatch(/admin/);
    const acl = await call(api, 'GET', '/v1/acl', { token: OPS });
    expect(acl.status).toBe(404); // no acl section at tier 1: the ACL is off
    expect(acl.json.error.code).toBe('not-enabled');
    const form = await call(api, 'POST', '/v1/users', { token: OPS, raw: 'username=carol', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(form.status).toBe(415);
    const empty = await call(api, 'POST', '/v1/users', { token: OPS });
    expect(empty.status).toBe(400);
    expect(empty.json.error.message).toBe('a JSON body is required here');
    const big = await call(api, 'POST', '/v1/users', { token: OPS, body: { username: 'carol', password: 'x'.repeat(4096) } });
    expect(big.status).toBe(413);
    expect((await call(api, 'GET', '/v1/nothing', { token: OPS })).status).toBe(404);
    const wrong = await call(api, 'PATCH', '/v1/clients', { token: OPS });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('GET');
  });
});

describe('admin API: users', () => {
  it('adds a user who can then connect; a password reset kicks their session; removing them disconnects them for good and rewrites the users file', async () => {
    const { api, events, mqttUrl } = await start();
    const add = await call(api, 'POST', '/v1/users', { token: OPS, body: { username: 'carol', password: 'carol-password', groups: ['field'] } });
    expect(add.status).toBe(201);
    expect((await readUsersFile(usersFile)).get('carol')).toMatchObject({ username: 'carol', groups: ['field'] });
    expect(readFileSync(usersFile, 'utf8')).not.toContain('carol-password');
    expect((await call(api, 'POST', '/v1/users', { token: OPS, body: { username: 'carol', password: 'carol-password' } })).status).toBe(409);

    const carol = await mqttClient(mqttUrl('tcp'), { clientId: 'carol-1', username: 'carol', password: 'carol-password' });
    const bob = await mqttClient(mqttUrl('tcp'), { clientId: 'bob-1', username: 'bob', password: 'bob-password' });
    const list = await call(api, 'GET', '/v1/users', { token: OPS });
    expect(list.json.users).toEqual([
      { username: 'alice', groups: [], sessions: 0 },
      { username: 'bob', groups: ['operators'], sessions: 1 },
      { username: 'carol', groups: ['field'], sessions: 1 },
    ]);

    // reset: the session ends, the old password no longer works, the new one does
    const kicked = closed(carol);
    const reset = await call(api, 'POST', '/v1/users/carol/password', { token: OPS, body: { password: 'carol-new-password' } });
    expect(reset.status).toBe(200);
    expect(reset.json).toEqual({ username: 'carol', disconnected: 1 });
    await kicked;
    expect(isRefusal(await tryConnect(mqttUrl('tcp'), { clientId: 'carol-2', username: 'carol', password: 'carol-password' }))).toBe(true);
    const carol2 = await mqttClient(mqttUrl('tcp'), { clientId: 'carol-3', username: 'carol', password: 'carol-new-password' });

    // remove: disconnected, refused afterwards, gone from the file; bob keeps working
    const gone = closed(carol2);
    const rm = await call(api, 'DELETE', '/v1/users/carol', { token: OPS });
    expect(rm.status).toBe(200);
    expect(rm.json).toEqual({ removed: 'carol', disconnected: 1 });
    await gone;
    const again = await tryConnect(mqttUrl('tcp'), { clientId: 'carol-4', username: 'carol', password: 'carol-new-password' });
    expect(isRefusal(again) && again.code).toBe(4);
    expect((await readUsersFile(usersFile)).has('carol')).toBe(false);
    expect((await readUsersFile(usersFile)).has('bob')).toBe(true);
    expect(bob.connected).toBe(true);
    expect((await call(api, 'DELETE', '/v1/users/carol', { token: OPS })).status).toBe(404);

    const actions = events.filter((e) => e.type === 'admin.action').map((e) => [e.detail?.action, e.control]);
    expect(actions).toEqual(expect.arrayContaining([['users.add', 'PR.AC-3'], ['users.password', 'RS.RP-2'], ['users.remove', 'RS.RP-2']]));
    expect(JSON.stringify(events)).not.toMatch(/carol-(new-)?password/);
  });

  it('generates device tokens: returned once, only their hash on disk; a new token ends the sessions of the old one', async () => {
    const { api, events, mqttUrl } = await start();
    const add = await call(api, 'POST', '/v1/users', { token: OPS, body: { username: 'meter-9', token: true, groups: ['meters'] } });
    expect(add.status).toBe(201);
    expect(add.json.user).toEqual({ username: 'meter-9', groups: ['meters'] });
    const token = add.json.token as string;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await readUsersFile(usersFile)).get('meter-9')?.hash).toMatch(/^\$sha256\$/);
    expect(readFileSync(usersFile, 'utf8')).not.toContain(token);
    const meter = await mqttClient(mqttUrl('tcp'), { clientId: 'meter-9', username: 'meter-9', password: token });

    const kicked = closed(meter);
    const renew = await call(api, 'POST', '/v1/users/meter-9/password', { token: OPS, body: { token: true } });
    expect(renew.status).toBe(200);
    expect(renew.json).toMatchObject({ username: 'meter-9', disconnected: 1 });
    const next = renew.json.token as string;
    expect(next).not.toBe(token);
    await kicked;
    expect(isRefusal(await tryConnect(mqttUrl('tcp'), { clientId: 'meter-9', username: 'meter-9', password: token }))).toBe(true);
    await mqttClient(mqttUrl('tcp'), { clientId: 'meter-9', username: 'meter-9', password: next });

    // one of the two, not both, not neither
    for (const body of [{ username: 'x-1', password: 'a-password-1', token: true }, { username: 'x-1' }, { username: 'x-1', token: false }]) {
      const bad = await call(api, 'POST', '/v1/users', { token: OPS, body });
      expect(bad.status, JSON.stringify(body)).toBe(400);
    }
    // the tokens are in the two responses only: not in events (the audit log's source) nor the log
    expect(JSON.stringify(events)).not.toContain(token);
    expect(JSON.stringify(events)).not.toContain(next);
    const added = events.find((e) => e.type === 'admin.action' && e.detail?.action === 'users.add');
    expect(added?.detail).toMatchObject({ username: 'meter-9', credential: 'device-token' });
  });
});

describe('admin API: bans', () => {
  it('a ban kicks the live client and refuses it until the ban expires; bans are listed and lifted', async () => {
    const { api, events, mqttUrl } = await start();
    const device = await mqttClient(mqttUrl('tcp'), { clientId: 'dev-7', username: 'alice', password: 'alice-password' });
    const other = await mqttClient(mqttUrl('tcp'), { clientId: 'bob-1', username: 'bob', password: 'bob-password' });
    const gone = closed(device);
    // the kick, the refused reconnect (a password check) and the listing below must all fit in the ban,
    // with room for a loaded machine (1500 ms was tight); the test then waits out the rest
    const r = await call(api, 'POST', '/v1/bans', { token: OPS, body: { clientId: 'dev-7', duration: '2500ms', reason: 'flooding' } });
    expect(r.status).toBe(201);
    expect(r.json.ban).toMatchObject({ clientId: 'dev-7', reason: 'flooding', actor: 'admin token:ops', expiresAt: expect.any(String) });
    await gone;
    expect(other.connected).toBe(true);
    const refused = await tryConnect(mqttUrl('tcp'), { clientId: 'dev-7', username: 'alice', password: 'alice-password' });
    expect(isRefusal(refused)).toBe(true);
    expect((await call(api, 'GET', '/v1/bans', { token: OPS })).json.bans).toHaveLength(1);
    // after the expiry the same client gets in again
    await waitFor(() => Date.now() > Date.parse(r.json.ban.expiresAt), 5000, 'ban expiry');
    const back = await mqttClient(mqttUrl('tcp'), { clientId: 'dev-7', username: 'alice', password: 'alice-password' });
    expect(back.connected).toBe(true);

    // a permanent ban, lifted by id
    const perm = await call(api, 'POST', '/v1/bans', { token: OPS, body: { username: 'bob', duration: 'permanent' } });
    expect(perm.json.ban.expiresAt).toBeNull();
    expect(isRefusal(await tryConnect(mqttUrl('tcp'), { clientId: 'bob-2', username: 'bob', password: 'bob-password' }))).toBe(true);
    expect((await call(api, 'DELETE', `/v1/bans/${perm.json.ban.id}`, { token: OPS })).status).toBe(200);
    await mqttClient(mqttUrl('tcp'), { clientId: 'bob-3', username: 'bob', password: 'bob-password' });
    expect((await call(api, 'DELETE', `/v1/bans/${perm.json.ban.id}`, { token: OPS })).status).toBe(404);

    const bad = await call(api, 'POST', '/v1/bans', { token: OPS, body: { ip: '10.0.0.300', duration: '15m' } });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/ip/);
    const noDuration = await call(api, 'POST', '/v1/bans', { token: OPS, body: { ip: '10.0.0.1', duration: 'soon' } });
    expect(noDuration.status).toBe(400);
    expect(noDuration.json.error.message).toMatch(/duration: expected a duration like 15m/);
    expect(events.filter((e) => e.type === 'admin.action' && e.detail?.action === 'bans.add' && e.detail?.status === 201)).toHaveLength(2);
  });
});

describe('admin API: ACL', () => {
  const everyone = [{ id: 'all', effect: 'allow', users: ['*'], actions: ['publish', 'subscribe', 'read'], topics: ['#'] }];

  it('replacing the ACL withdraws an existing subscription it no longer allows; a bad rule set changes nothing (400)', async () => {
    const { api, events, mqttUrl } = await start({}, { acl: { defaultEffect: 'deny', rules: everyone } } as Partial<ProfileInput>);
    const alice = await mqttClient(mqttUrl('tcp'), { clientId: 'alice-1', username: 'alice', password: 'alice-password' });
    const bob = await mqttClient(mqttUrl('tcp'), { clientId: 'bob-1', username: 'bob', password: 'bob-password' });
    await alice.subscribeAsync(['plant/#', 'other/#']);
    const first = nextMessage(alice);
    await bob.publishAsync('plant/1', 'a', { qos: 1 });
    expect((await first).topic).toBe('plant/1');

    const before = await call(api, 'GET', '/v1/acl', { token: OPS });
    expect(before.json.rules).toEqual(everyone);

    const invalid = await call(api, 'PUT', '/v1/acl', { token: OPS, body: { rules: [{ id: 'x', effect: 'allow', users: ['bob'], actions: ['publish'], topics: ['plant/#'] }, { id: 'y', effect: 'maybe', actions: ['read'], topics: ['a'] }] } });
    expect(invalid.status).toBe(400);
    expect(invalid.json.error.message).toMatch(/rule 1 \(id "y"\), effect/);
    expect((await call(api, 'GET', '/v1/acl', { token: OPS })).json.rules).toEqual(everyone);

    const rules = [
      { id: 'bob-publishes', effect: 'allow', users: ['bob'], actions: ['publish'], topics: ['plant/#', 'other/#'] },
      { id: 'alice-other', effect: 'allow', users: ['alice'], actions: ['subscribe', 'read'], topics: ['other/#'] },
    ];
    const put = await call(api, 'PUT', '/v1/acl', { token: OPS, body: { rules } });
    expect(put.status).toBe(200);
    expect(put.json.change).toMatchObject({ rules: 2, withdrawn: 1 });
    expect(broker!.subscriptionsOf('alice-1')).toEqual([{ topic: 'other/#', qos: 0 }]);
    const received = collectCount(alice, 1);
    await bob.publishAsync('plant/2', 'b', { qos: 1 });
    await bob.publishAsync('other/2', 'c', { qos: 1 });
    expect((await received).map((m) => m.topic)).toEqual(['other/2']);
    expect(events.find((e) => e.type === 'admin.action' && e.detail?.action === 'acl.replace' && e.detail?.status === 200)).toMatchObject({ control: 'PR.AC-5', detail: { actor: 'token:ops', status: 200 } });

    // add one rule (an id is made), then remove it by id
    const add = await call(api, 'POST', '/v1/acl', { token: OPS, body: { effect: 'allow', users: ['alice'], actions: ['subscribe', 'read'], topics: ['plant/#'] } });
    expect(add.status).toBe(201);
    const id = add.json.rule.id as string;
    expect(id).toMatch(/^api-[0-9a-f]{8}$/);
    await alice.subscribeAsync('plant/#');
    const again = nextMessage(alice);
    await bob.publishAsync('plant/3', 'd', { qos: 1 });
    expect((await again).topic).toBe('plant/3');
    expect((await call(api, 'DELETE', `/v1/acl/${id}`, { token: OPS })).status).toBe(200);
    expect(broker!.subscriptionsOf('alice-1')).toEqual([{ topic: 'other/#', qos: 0 }]);
    expect((await call(api, 'DELETE', `/v1/acl/${id}`, { token: OPS })).status).toBe(404);
  });
});

describe('admin API: response actions for people', () => {
  it('blocks a topic, locks the broker down and lifts both, revokes a credential; each is recorded', async () => {
    const { api, events, mqttUrl } = await start();
    const sub = await mqttClient(mqttUrl('tcp'), { clientId: 'watcher', username: 'alice', password: 'alice-password' });
    await sub.subscribeAsync('grid/#');
    const pub = await mqttClient(mqttUrl('tcp'), { clientId: 'pub', username: 'alice', password: 'alice-password' });

    const bad = await call(api, 'POST', '/v1/responses/block-topic', { token: OPS, body: { duration: 'soon' } });
    expect(bad.status).toBe(400);
    expect((await call(api, 'POST', '/v1/responses/block-topic', { token: OPS, body: { topic: 'grid/control/#', duration: '15m' } })).status).toBe(201);
    let got = collectCount(sub, 1);
    pub.publish('grid/control/open', 'x');
    pub.publish('grid/data/v', '120');
    expect((await got).map((m) => m.topic)).toEqual(['grid/data/v']);
    expect((await call(api, 'POST', '/v1/responses/unblock-topic', { token: OPS, body: { topic: 'grid/control/#' } })).status).toBe(200);
    got = collectCount(sub, 1);
    pub.publish('grid/control/open', 'y');
    expect((await got).map((m) => m.topic)).toEqual(['grid/control/open']);

    expect((await call(api, 'POST', '/v1/responses/lockdown', { token: OPS, body: { reason: 'drill' } })).status).toBe(201);
    const refused = await tryConnect(mqttUrl('tcp'), { clientId: 'late', username: 'alice', password: 'alice-password' });
    expect(isRefusal(refused)).toBe(true);
    expect(sub.connected).toBe(true);
    expect((await call(api, 'DELETE', '/v1/responses/lockdown', { token: OPS })).status).toBe(200);
    await mqttClient(mqttUrl('tcp'), { clientId: 'late', username: 'alice', password: 'alice-password' });

    const gone = closed(sub);
    expect((await call(api, 'POST', '/v1/responses/revoke', { token: OPS, body: { username: 'alice' } })).status).toBe(201);
    await gone;
    expect(isRefusal(await tryConnect(mqttUrl('tcp'), { username: 'alice', password: 'alice-password' }))).toBe(true);

    const listed = await call(api, 'GET', '/v1/responses', { token: OPS });
    expect(listed.json.lockedDown).toBe(false);
    expect(listed.json.history.length).toBeGreaterThanOrEqual(5);
    expect(events.filter((e) => e.type === 'response.action').length).toBeGreaterThanOrEqual(5);
    expect((await call(api, 'POST', '/v1/responses/shutdown', { token: OPS, body: {} })).status).toBe(400); // needs confirm
    expect((await call(api, 'POST', '/v1/responses/lockdown', { token: VIEWER })).status).toBe(403);
  });
});
