/**
 * The broker's TLS material over time, over real TLS: server certificate hot reload without
 * dropping connections (RC.RP-5), session-ticket key rotation (PR.SS-7), expiry warnings (ID.AM-4).
 */
import { describe, it, expect, afterEach } from 'vitest';
import tls from 'node:tls';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { issueServerCert, normalizeSerial, writePrivateFile, writePublicFile, type Issued } from '@bastion/pki';
import { buildBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import type { ProfileInput } from '@bastion/profile';
import { connect, nextMessage, waitFor } from './support/mqtt.js';
import { makeTestPki, type TestPki } from './support/pki.js';

const silent = pino({ level: 'silent' });
const DAY = 86_400_000;
let broker: Bastion | undefined;
const clients: mqtt.MqttClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
});

interface TlsCertificatesApi {
  reload(): Promise<{ reloaded: string[]; failed: Array<{ listener: string; message: string }> }>;
  rotateTicketKeys(): string[];
  status(): Array<{ listener: string; serial: string; error?: string }>;
}

async function start(pki: TestPki, extra: Partial<ProfileInput> = {}) {
  broker = await buildBroker({
    profile: {
      version: 1,
      listeners: [
        { name: 'tls', protocol: 'mqtts', port: 0 },
        { name: 'wss', protocol: 'wss', port: 0 },
      ],
      tls: { cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem', clientCertificate: 'optional' },
      authentication: { anonymous: true },
      ...extra,
    } as ProfileInput,
    baseDir: pki.dir,
    logger: silent,
  });
  // subscribed before listen(), so that warnings about the start state are heard too
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  await broker.listen();
  const port = (name: string) => broker!.addresses()[name]!.port;
  const url = (name: string) => `${name === 'wss' ? 'wss' : 'mqtts'}://localhost:${port(name)}${name === 'wss' ? '/mqtt' : ''}`;
  return { port, url, events, api: broker.controls.get('tls-certificates') as unknown as TlsCertificatesApi };
}

/** A bare TLS handshake: the server certificate's serial, the session to resume, and whether it was resumed. */
function handshake(port: number, ca: string, session?: Buffer): Promise<{ serial: string; session: Buffer | undefined; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca, ...(session ? { session } : {}) });
    let ticket: Buffer | undefined;
    let result: { serial: string; reused: boolean } | undefined;
    let done = false;
    const finish = () => {
      // TLS 1.3 sends its tickets after the handshake: wait for one unless this session was resumed
      if (done || result === undefined || (ticket === undefined && !result.reused)) return;
      done = true;
      s.destroy();
      resolve({ ...result, session: ticket });
    };
    s.on('session', (x: Buffer) => {
      ticket ??= x;
      finish();
    });
    s.once('error', (err) => !done && reject(err));
    s.once('secureConnect', () => {
      const peer = s.getPeerCertificate();
      result = { serial: peer?.serialNumber ? normalizeSerial(peer.serialNumber) : '', reused: s.isSessionReused() };
      finish();
    });
  });
}

async function client(url: string, opts: mqtt.IClientOptions) {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

/** Install a new server certificate the way `bastion certs renew server` does: key first, then certificate. */
async function install(pki: TestPki, issued: Issued, which: { key?: boolean; cert?: boolean } = { key: true, cert: true }) {
  if (which.key) await writePrivateFile(`${pki.dir}/server-key.pem`, issued.keyPem);
  if (which.cert) await writePublicFile(`${pki.dir}/server.pem`, issued.certPem);
}

describe('server certificate hot reload', () => {
  it('a new client sees the new certificate while a connection made before keeps working (mqtts and wss)', async () => {
    const pki = makeTestPki();
    const { port, url, events, api } = await start(pki);
    const old = pki.server.serial;
    for (const l of ['tls', 'wss']) expect((await handshake(port(l), pki.ca.certPem)).serial).toBe(old);
    const before = await client(url('tls'), { clientId: 'before-tls', ca: pki.ca.certPem });
    const beforeWs = await client(url('wss'), { clientId: 'before-wss', ca: pki.ca.certPem });
    await before.subscribeAsync('t/#');

    const renewed = issueServerCert(pki.ca, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const t0 = Date.now();
    await install(pki, renewed);
    await waitFor(() => events.filter((e) => e.type === 'certificate.reloaded').length === 2, 5000, 'both listeners reloaded');
    console.log(`[figure] server certificate files replaced -> both listeners serve it: ${Date.now() - t0} ms`);
    for (const e of events.filter((e) => e.type === 'certificate.reloaded')) {
      expect(e).toMatchObject({ control: 'RC.RP-5', detail: { serial: renewed.serial, previousSerial: old } });
    }
    for (const l of ['tls', 'wss']) expect((await handshake(port(l), pki.ca.certPem)).serial, l).toBe(renewed.serial);
    expect(api.status().map((s) => s.serial)).toEqual([renewed.serial, renewed.serial]);

    // the earlier connections never dropped and still carry traffic
    expect(events.some((e) => e.type === 'client.disconnected')).toBe(false);
    const got = nextMessage(before);
    beforeWs.publish('t/1', 'after reload');
    expect((await got).payload).toBe('after reload');
    expect(normalizeSerial((before.stream as tls.TLSSocket).getPeerCertificate().serialNumber)).toBe(old);
  });

  it('a certificate that does not match the key, or has expired, is refused and the previous one stays', async () => {
    const pki = makeTestPki();
    const { port, events, api } = await start(pki);
    const other = issueServerCert(pki.ca, { commonName: 'localhost' });
    await install(pki, other, { cert: true }); // certificate without its key
    await waitFor(() => events.some((e) => e.type === 'certificate.reload-failed'), 8000, 'reload-failed');
    const failed = events.filter((e) => e.type === 'certificate.reload-failed');
    expect(failed[0]).toMatchObject({ control: 'RC.RP-5', detail: { serial: pki.server.serial } });
    expect(failed[0]!.message).toContain('does not match the private key');
    expect((await handshake(port('tls'), pki.ca.certPem)).serial).toBe(pki.server.serial);

    const expired = issueServerCert(pki.ca, { commonName: 'localhost', notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
    await install(pki, expired);
    await waitFor(() => api.status().every((l) => /expired/.test(l.error ?? '')), 8000, 'expired refused on both listeners');
    expect(events.filter((e) => e.type === 'certificate.reload-failed' && /expired/.test(e.message ?? '')).map((e) => e.listener).sort()).toEqual(['tls', 'wss']);
    expect((await handshake(port('wss'), pki.ca.certPem)).serial).toBe(pki.server.serial);

    // the good pair, finally, is taken
    const good = issueServerCert(pki.ca, { commonName: 'localhost' });
    await install(pki, good);
    await waitFor(() => events.some((e) => e.type === 'certificate.reloaded'), 8000, 'good pair reloaded');
    expect((await handshake(port('tls'), pki.ca.certPem)).serial).toBe(good.serial);
  });

  it('with watching off, the embedding API (and SIGHUP) reloads', async () => {
    const pki = makeTestPki();
    const { port, api } = await start(pki, { certificates: { watch: false } });
    const renewed = issueServerCert(pki.ca, { commonName: 'localhost' });
    await install(pki, renewed);
    await new Promise((r) => setTimeout(r, 400));
    expect((await handshake(port('tls'), pki.ca.certPem)).serial).toBe(pki.server.serial);
    expect((await api.reload()).reloaded).toEqual(['tls', 'wss']);
    expect((await handshake(port('tls'), pki.ca.certPem)).serial).toBe(renewed.serial);
    const again = issueServerCert(pki.ca, { commonName: 'localhost' });
    await install(pki, again);
    process.emit('SIGHUP', 'SIGHUP');
    await waitFor(() => api.status()[0]!.serial === again.serial, 5000, 'SIGHUP reload');
  });
});

describe('session-ticket key rotation (PR.SS-7)', () => {
  it('a session resumes before a rotation and needs a full handshake after it', async () => {
    const pki = makeTestPki();
    const { port, events, api } = await start(pki, { certificates: { ticketKeyRotation: '24h' } });
    for (const l of ['tls', 'wss']) {
      const first = await handshake(port(l), pki.ca.certPem);
      expect(first.reused).toBe(false);
      const resumed = await handshake(port(l), pki.ca.certPem, first.session);
      expect(resumed.reused, `${l}: resumed before rotation`).toBe(true);
      expect(api.rotateTicketKeys()).toEqual(['tls', 'wss']);
      const after = await handshake(port(l), pki.ca.certPem, resumed.session ?? first.session);
      expect(after.reused, `${l}: not resumed after rotation`).toBe(false);
      const resumedAgain = await handshake(port(l), pki.ca.certPem, after.session);
      expect(resumedAgain.reused, `${l}: new tickets resume`).toBe(true);
    }
    expect(events.find((e) => e.type === 'tls.ticket-keys-rotated')).toMatchObject({ control: 'PR.SS-7', detail: { listeners: ['tls', 'wss'] } });
  });

  it('rotates on the profile schedule', async () => {
    const pki = makeTestPki();
    const { events } = await start(pki, { certificates: { ticketKeyRotation: '1s' } });
    await waitFor(() => events.filter((e) => e.type === 'tls.ticket-keys-rotated').length >= 2, 6000, 'two scheduled rotations');
    expect(events.find((e) => e.type === 'tls.ticket-keys-rotated')).toMatchObject({ detail: { periodMs: 1000, listeners: ['tls', 'wss'] } });
  });

  it('the tier of PR.SS sets the default period', async () => {
    const pki = makeTestPki();
    await start(pki, { tiers: { 'PR.SS': 4 } });
    expect(broker!.profile.certificates.ticketKeyRotation).toBe(15 * 60_000);
    await broker!.close();
    await start(pki, { tiers: { 'PR.SS': 1 } });
    expect(broker!.profile.certificates.ticketKeyRotation).toBe(DAY);
  });
});

describe('expiry monitoring (ID.AM-4)', () => {
  it('warns about its own certificate and a connecting client\'s close to expiry; the client listing shows expiry', async () => {
    const pki = makeTestPki();
    const short = issueServerCert(pki.ca, { commonName: 'localhost', validityDays: 10 });
    pki.write('server.pem', short.certPem);
    pki.write('server-key.pem', short.keyPem);
    const { url, events } = await start(pki, { certificates: { expiryWarning: '30d' } });
    await waitFor(() => events.some((e) => e.type === 'certificate.expiring'), 5000, 'own certificate warning');
    const own = events.filter((e) => e.type === 'certificate.expiring');
    expect(own.map((e) => e.listener).sort()).toEqual(['tls']); // one warning per certificate a day, not per listener
    expect(own[0]).toMatchObject({ control: 'ID.AM-4', detail: { serial: short.serial, kind: 'server', daysLeft: 9 } });

    const dev = pki.client('soon', { validityDays: 5 });
    const longLived = pki.client('later', { validityDays: 365 });
    await client(url('tls'), { clientId: 'soon', ca: pki.ca.certPem, cert: dev.certPem, key: dev.keyPem });
    await client(url('wss'), { clientId: 'later', ca: pki.ca.certPem, cert: longLived.certPem, key: longLived.keyPem });
    await waitFor(() => events.some((e) => e.type === 'certificate.expiring' && e.clientId === 'soon'), 5000, 'client warning');
    expect(events.find((e) => e.type === 'certificate.expiring' && e.clientId === 'soon')).toMatchObject({ detail: { serial: dev.serial, kind: 'client', daysLeft: 4 } });
    expect(events.some((e) => e.type === 'certificate.expiring' && e.clientId === 'later')).toBe(false);

    const listed = Object.fromEntries([...broker!.clients()].map((c) => [c.id, JSON.parse(JSON.stringify(c)) as { certificate: { validTo: string } }]));
    expect(new Date(listed.soon!.certificate.validTo).getTime()).toBe(dev.notAfter.getTime());
    expect(new Date(listed.later!.certificate.validTo).getTime()).toBe(longLived.notAfter.getTime());
  });
});
