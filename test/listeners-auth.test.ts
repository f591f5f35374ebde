import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createCA, issueClientCert, normalizeSerial } from '@bastion/pki';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import { hashPassword, serializeUsers } from '@bastion/middleware';
import type { ProfileInput } from '@bastion/profile';
import { connect, tryConnect, isRefusal, nextMessage, waitFor } from './support/mqtt.js';
import { makeTestPki, type TestPki } from './support/pki.js';

const silent = pino({ level: 'silent' });
let pki: TestPki;
let broker: Bastion | undefined;
const clients: mqtt.MqttClient[] = [];

beforeAll(async () => {
  pki = makeTestPki();
  pki.write('users.txt', serializeUsers([
    { username: 'alice', hash: await hashPassword('alice-password'), groups: [] },
    { username: 'device-1', hash: await hashPassword('device-1-password'), groups: [] },
  ]));
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
});

const tls = (clientCertificate: 'none' | 'optional' | 'required') => ({ cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem', clientCertificate });

async function start(profile: Omit<ProfileInput, 'version'>) {
  broker = await createBroker({ profile: { version: 1, ...profile } as ProfileInput, baseDir: pki.dir, logger: silent });
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  const url = (name: string) => {
    const a = broker!.addresses()[name]!;
    const scheme = a.transport;
    return `${scheme}://localhost:${a.port}${scheme.startsWith('ws') ? '/mqtt' : ''}`;
  };
  return { url, events };
}

const tlsClient = (cert?: { certPem: string; keyPem: string }) => ({
  ca: pki.ca.certPem,
  rejectUnauthorized: true,
  ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}),
});

async function client(url: string, opts: mqtt.IClientOptions = {}) {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

describe('listeners', () => {
  it('mqtt, mqtts, ws and wss all connect, exchange messages and report address, listener and certificate', async () => {
    const { url } = await start({
      listeners: [
        { name: 'tcp', protocol: 'mqtt', port: 0 },
        { name: 'tls', protocol: 'mqtts', port: 0, tls: tls('optional') },
        { name: 'ws', protocol: 'ws', port: 0 },
        { name: 'wss', protocol: 'wss', port: 0, tls: tls('optional') },
      ],
      authentication: { anonymous: false, passwords: { file: 'users.txt' }, certificates: { identity: 'cn' } },
    });
    const device = pki.client('device-1');
    const subs = await Promise.all([
      client(url('tcp'), { clientId: 's-tcp', username: 'alice', password: 'alice-password' }),
      client(url('tls'), { clientId: 's-tls', ...tlsClient(device) }),
      client(url('ws'), { clientId: 's-ws', username: 'alice', password: 'alice-password' }),
      client(url('wss'), { clientId: 's-wss', ...tlsClient(device) }),
    ]);
    for (const s of subs) await s.subscribeAsync('fleet/#');
    expect(broker!.client('s-tcp')).toMatchObject({ listener: 'tcp', transport: 'mqtt', remoteAddress: '127.0.0.1', username: 'alice', certificate: undefined });
    expect(broker!.client('s-ws')).toMatchObject({ listener: 'ws', transport: 'ws', remoteAddress: '127.0.0.1' });
    for (const id of ['s-tls', 's-wss']) {
      const c = broker!.client(id)!;
      expect(c.username).toBe('device-1');
      expect(c.certificate?.commonName).toBe('device-1');
      expect(c.certificate?.serial).toBe(normalizeSerial(device.serial));
      expect(c.tls?.protocol).toMatch(/^TLSv1\.[23]$/);
      expect(c.remoteAddress).toBe('127.0.0.1');
    }
    const received = subs.map((s) => new Promise<string[]>((resolve) => {
      const got: string[] = [];
      s.on('message', (t) => { got.push(t); if (got.length === 4) resolve(got.sort()); });
    }));
    for (const [i, s] of subs.entries()) s.publish(`fleet/${i}`, 'x');
    for (const r of received) expect(await r).toEqual(['fleet/0', 'fleet/1', 'fleet/2', 'fleet/3']);
  });

  it('TLS listeners refuse TLS below 1.2 and non-AEAD suites, and the default minimum is TLSv1.2', async () => {
    const { url } = await start({ listeners: [{ name: 'tls', protocol: 'mqtts', port: 0, tls: tls('none') }], authentication: { anonymous: true } });
    const old = await tryConnect(url('tls'), { ...tlsClient(), maxVersion: 'TLSv1.1', minVersion: 'TLSv1' } as mqtt.IClientOptions);
    expect(isRefusal(old)).toBe(true);
    const cbc = await tryConnect(url('tls'), { ...tlsClient(), maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-SHA256:AES128-SHA' } as mqtt.IClientOptions);
    expect(isRefusal(cbc)).toBe(true);
    const ok = await client(url('tls'), { ...tlsClient(), maxVersion: 'TLSv1.2', clientId: 'v12' } as mqtt.IClientOptions);
    expect(ok.connected).toBe(true);
    expect(broker!.client('v12')!.tls).toMatchObject({ protocol: 'TLSv1.2', cipher: expect.stringMatching(/^ECDHE-.*(GCM|CHACHA20)/) });
  });
});

describe('mutual TLS', () => {
  const profile = (clientCertificate: 'required' | 'optional') => ({
    listeners: [
      { name: 'tls', protocol: 'mqtts' as const, port: 0, tls: tls(clientCertificate) },
      { name: 'wss', protocol: 'wss' as const, port: 0, tls: tls(clientCertificate) },
    ],
    authentication: { anonymous: false, certificates: { identity: 'cn' as const } },
  });

  for (const listener of ['tls', 'wss']) {
    it(`${listener}: accepts a good certificate; refuses none, another CA's, an expired and a not-yet-valid one`, async () => {
      const { url, events } = await start(profile('required'));
      const good = await client(url(listener), { clientId: 'device-1', ...tlsClient(pki.client('device-1')) });
      expect(good.connected).toBe(true);
      const none = await tryConnect(url(listener), tlsClient());
      expect(isRefusal(none)).toBe(true);
      const otherCa = createCA({ commonName: 'Rogue CA' });
      const rogue = await tryConnect(url(listener), tlsClient(issueClientCert(otherCa, { commonName: 'device-1' })));
      expect(isRefusal(rogue)).toBe(true);
      const day = 86_400_000;
      const expired = await tryConnect(url(listener), tlsClient(pki.client('old', { notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) })));
      expect(isRefusal(expired)).toBe(true);
      const future = await tryConnect(url(listener), tlsClient(pki.client('future', { notBefore: new Date(Date.now() + day), notAfter: new Date(Date.now() + 10 * day) })));
      expect(isRefusal(future)).toBe(true);
      await waitFor(() => events.filter((e) => e.type === 'connection.refused').length >= 4);
      expect(events.filter((e) => e.type === 'connection.refused').every((e) => e.control === 'PR.AC-1' && e.reason === 'certificate-rejected')).toBe(true);
      expect(good.connected).toBe(true);
    });
  }

  it('with clientCertificate optional, a presented but invalid certificate is refused', async () => {
    const { url } = await start({ ...profile('optional'), authentication: { anonymous: true } });
    const rogue = await tryConnect(url('tls'), tlsClient(issueClientCert(createCA({ commonName: 'Rogue' }), { commonName: 'x' })));
    expect(isRefusal(rogue)).toBe(true);
    const anon = await client(url('tls'), tlsClient());
    expect(anon.connected).toBe(true);
  });
});

describe('certificate identity mappings', () => {
  const cert = pkiClient();
  function pkiClient() {
    return () => pki.client('cn-name', { dnsNames: ['meter-7.grid.example'], uris: ['urn:dev:meter-7'], emails: ['ops@grid.example'] });
  }
  for (const [identity, expected] of [['cn', 'cn-name'], ['san-dns', 'meter-7.grid.example'], ['san-uri', 'urn:dev:meter-7'], ['san-email', 'ops@grid.example']] as const) {
    it(`identity ${identity} names the client ${expected}`, async () => {
      const { url } = await start({
        listeners: [{ name: 'tls', protocol: 'mqtts', port: 0, tls: tls('required') }],
        authentication: { anonymous: false, certificates: { identity } },
      });
      await client(url('tls'), { clientId: 'x1', ...tlsClient(cert()) });
      expect(broker!.client('x1')!.username).toBe(expected);
    });
  }

  it('clientIdMustMatch refuses a client id other than the certificate identity (CONNACK 2)', async () => {
    const { url, events } = await start({
      listeners: [{ name: 'tls', protocol: 'mqtts', port: 0, tls: tls('required') }],
      authentication: { anonymous: false, certificates: { identity: 'cn', clientIdMustMatch: true } },
    });
    const dev = pki.client('device-1');
    const wrong = await tryConnect(url('tls'), { clientId: 'device-2', ...tlsClient(dev) });
    expect(isRefusal(wrong) && wrong.code).toBe(2);
    expect(events.find((e) => e.type === 'auth.failed')).toMatchObject({ reason: 'client-id-rejected', source: 'certificates' });
    await client(url('tls'), { clientId: 'device-1', ...tlsClient(dev) });
  });

  it('a certificate without the chosen SAN is refused (CONNACK 5)', async () => {
    const { url } = await start({
      listeners: [{ name: 'tls', protocol: 'mqtts', port: 0, tls: tls('required') }],
      authentication: { anonymous: false, certificates: { identity: 'san-uri' } },
    });
    const r = await tryConnect(url('tls'), tlsClient(pki.client('plain')));
    expect(isRefusal(r) && r.code).toBe(5);
  });
});

describe('two-factor authentication (PR.CS-3)', () => {
  it('needs the certificate AND the password of the same identity', async () => {
    const { url, events } = await start({
      listeners: [{ name: 'tls', protocol: 'mqtts', port: 0, tls: tls('optional') }],
      authentication: { anonymous: false, passwords: { file: 'users.txt' }, certificates: { identity: 'cn' }, require: ['certificate', 'password'] },
    });
    const dev = pki.client('device-1');
    const both = await client(url('tls'), { clientId: 'd1', username: 'device-1', password: 'device-1-password', ...tlsClient(dev) });
    expect(both.connected).toBe(true);
    const certOnly = await tryConnect(url('tls'), tlsClient(dev));
    expect(isRefusal(certOnly) && certOnly.code).toBe(5);
    const passwordOnly = await tryConnect(url('tls'), { username: 'device-1', password: 'device-1-password', ...tlsClient() });
    expect(isRefusal(passwordOnly) && passwordOnly.code).toBe(5);
    const wrongPassword = await tryConnect(url('tls'), { username: 'device-1', password: 'nope', ...tlsClient(dev) });
    expect(isRefusal(wrongPassword) && wrongPassword.code).toBe(4);
    const mixed = await tryConnect(url('tls'), { username: 'alice', password: 'alice-password', ...tlsClient(dev) });
    expect(isRefusal(mixed) && mixed.code).toBe(5);
    const failed = events.filter((e) => e.type === 'auth.failed');
    expect(failed.map((e) => e.message)).toEqual([
      'missing required factor: password',
      'missing required factor: certificate',
      'wrong username or password',
      'authentication factors name different identities',
    ]);
    expect(events.find((e) => e.type === 'auth.succeeded')).toMatchObject({ control: 'PR.CS-3', detail: { factors: ['certificate', 'password'] } });
    const got = nextMessage(both);
    await both.subscribeAsync('x');
    both.publish('x', 'y');
    expect((await got).payload).toBe('y');
  });
});
