/**
 * Revocation (RS.RP-1) over real TLS: CRLs made by @bastion/pki, checked by the `revocation`
 * middleware on mqtts and wss, reloaded live, and acting on connections that are already up.
 */
import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import { writeFileSync } from 'node:fs';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createCA, createCRL, crlToDer, issueClientCert, writePublicFile, type Issued, type RevokedEntry } from '@bastion/pki';
import { buildBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import type { Revocation } from '@bastion/middleware';
import type { ProfileInput } from '@bastion/profile';
import { connect, tryConnect, isRefusal, nextMessage, waitFor, closed } from './support/mqtt.js';
import { makeTestPki, type TestPki } from './support/pki.js';

const silent = pino({ level: 'silent' });
const DAY = 86_400_000;
let pki: TestPki;
let broker: Bastion | undefined;
const clients: mqtt.MqttClient[] = [];
let crlNumber = 1000;

beforeAll(() => {
  pki = makeTestPki();
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
});

/** A CRL of the test CA, each call with a higher CRL number (as a CA would issue them). */
function crlOf(revoked: Issued[], opts: { reason?: RevokedEntry['reason']; thisUpdate?: Date; nextUpdate?: Date; ca?: Issued; number?: number } = {}): string {
  return createCRL(
    opts.ca ?? pki.ca,
    revoked.map((c) => ({ serial: c.serial, revokedAt: new Date(), ...(opts.reason ? { reason: opts.reason } : {}) })),
    { crlNumber: opts.number ?? ++crlNumber, ...(opts.thisUpdate ? { thisUpdate: opts.thisUpdate } : {}), ...(opts.nextUpdate ? { nextUpdate: opts.nextUpdate } : {}) },
  );
}

const tlsSettings = { cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem', clientCertificate: 'required' as const };

async function start(extra: Partial<ProfileInput> = {}, revocation: Record<string, unknown> = {}) {
  broker = await buildBroker({
    profile: {
      version: 1,
      listeners: [
        { name: 'tls', protocol: 'mqtts', port: 0 },
        { name: 'wss', protocol: 'wss', port: 0 },
      ],
      tls: tlsSettings,
      authentication: { certificates: { identity: 'cn' } },
      revocation: { crl: 'crl.pem', stale: 'refuse', ...revocation },
      ...extra,
    } as ProfileInput,
    baseDir: pki.dir,
    logger: silent,
  });
  // subscribed before listen(), so that warnings about the start state are heard too
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  await broker.listen();
  const url = (name: string) => {
    const a = broker!.addresses()[name]!;
    return `${a.transport}://localhost:${a.port}${a.transport === 'wss' ? '/mqtt' : ''}`;
  };
  return { url, events, mw: broker.controls.get<Revocation>('revocation')! };
}

const tlsClient = (cert: Issued, ca = pki.ca) => ({ ca: ca.certPem, cert: cert.certPem, key: cert.keyPem, rejectUnauthorized: true });

/** True when the connection is refused; a client that got in anyway is closed after the test. */
async function refused(url: string, opts: mqtt.IClientOptions): Promise<boolean> {
  const r = await tryConnect(url, opts);
  if (isRefusal(r)) return true;
  clients.push(r);
  return false;
}

async function client(url: string, opts: mqtt.IClientOptions) {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

/** Replace the CRL file the way `bastion certs revoke` does (write a temp file, rename it over). */
const writeCrl = (pem: string | Buffer, file = 'crl.pem') => writePublicFile(`${pki.dir}/${file}`, pem);

describe('revocation at connection time (mqtts and wss)', () => {
  it('refuses a revoked certificate on both listeners and accepts the others', async () => {
    const good = pki.client('good-1');
    const lost = pki.client('lost-1');
    writeFileSync(`${pki.dir}/crl.pem`, crlOf([lost], { reason: 'keyCompromise' }));
    const { url, events } = await start();
    for (const l of ['tls', 'wss']) {
      expect(await refused(url(l), { clientId: `lost-${l}`, ...tlsClient(lost) }), `${l}: revoked certificate refused`).toBe(true);
      const ok = await client(url(l), { clientId: `good-${l}`, ...tlsClient(good) });
      expect(ok.connected).toBe(true);
    }
    await waitFor(() => events.filter((e) => e.type === 'connection.refused' && e.source === 'revocation').length === 2);
    const refusals = events.filter((e) => e.type === 'connection.refused' && e.source === 'revocation');
    expect(refusals.map((e) => e.listener).sort()).toEqual(['tls', 'wss']);
    for (const e of refusals) {
      expect(e).toMatchObject({ control: 'RS.RP-1', reason: 'certificate-rejected' });
      expect(e.message).toContain(lost.serial);
      expect(e.message).toContain('keyCompromise');
    }
    // the legitimate clients kept working meanwhile
    const [a, b] = clients as [mqtt.MqttClient, mqtt.MqttClient];
    await a.subscribeAsync('plant/#');
    const got = nextMessage(a);
    b.publish('plant/x', 'still here');
    expect((await got).payload).toBe('still here');
  });

  it('refuses expired and not-yet-valid certificates on both listeners', async () => {
    writeFileSync(`${pki.dir}/crl.pem`, crlOf([]));
    const { url } = await start();
    const expired = pki.client('expired', { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
    const future = pki.client('future', { notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 10 * DAY) });
    for (const l of ['tls', 'wss']) {
      expect(await refused(url(l), tlsClient(expired)), `${l}: expired`).toBe(true);
      expect(await refused(url(l), tlsClient(future)), `${l}: not yet valid`).toBe(true);
      expect((await client(url(l), { clientId: `ok-${l}`, ...tlsClient(pki.client('valid')) })).connected).toBe(true);
    }
  });

  it('checks certificates of several CAs against their own CRL, PEM or DER', async () => {
    const ca2 = createCA({ commonName: 'Second Test CA', organization: 'Field' });
    writeFileSync(`${pki.dir}/ca2.pem`, ca2.certPem);
    writeFileSync(`${pki.dir}/ca-bundle.pem`, pki.ca.certPem + ca2.certPem);
    const lost2 = issueClientCert(ca2, { commonName: 'field-lost' });
    const good2 = issueClientCert(ca2, { commonName: 'field-good' });
    const good1 = pki.client('plant-good');
    writeFileSync(`${pki.dir}/crl.pem`, crlOf([]));
    writeFileSync(`${pki.dir}/crl2.der`, crlToDer(crlOf([lost2], { ca: ca2 })));
    const { url, mw } = await start({ tls: { ...tlsSettings, ca: 'ca-bundle.pem' } }, { crl: ['crl.pem', 'crl2.der'] });
    // the client side trusts the server's CA only; the server trusts both CAs for clients
    expect(await refused(url('tls'), tlsClient(lost2))).toBe(true);
    expect(await refused(url('wss'), tlsClient(lost2))).toBe(true);
    await client(url('tls'), { clientId: 'g2', ...tlsClient(good2) });
    await client(url('wss'), { clientId: 'g1', ...tlsClient(good1) });
    expect(mw.status().map((s) => [s.issuer, s.revoked, s.stale])).toEqual([
      ['CN=Test CA', 0, false],
      ['CN=Second Test CA,O=Field', 1, false],
    ]);
  });

  it('stale CRL: policy refuse turns clients of that CA away, policy warn lets them in; both raise crl.stale', async () => {
    const old = crlOf([], { thisUpdate: new Date(Date.now() - 10 * DAY), nextUpdate: new Date(Date.now() - DAY) });
    writeFileSync(`${pki.dir}/crl.pem`, old);
    const dev = pki.client('stale-dev');
    let s = await start({}, { stale: 'refuse' });
    expect(await refused(s.url('tls'), tlsClient(dev))).toBe(true);
    await waitFor(() => s.events.some((e) => e.type === 'connection.refused' && /stale/.test(e.message ?? '')));
    expect(s.events.find((e) => e.type === 'crl.stale')).toMatchObject({ control: 'RS.RP-1', detail: { policy: 'refuse' } });
    await broker!.close();

    s = await start({}, { stale: 'warn' });
    await client(s.url('tls'), { clientId: 'stale-ok', ...tlsClient(dev) });
    expect(s.mw.status()[0]!.stale).toBe(true);
    await waitFor(() => s.events.some((e) => e.type === 'crl.stale'), 3000, 'crl.stale');
    expect(s.events.find((e) => e.type === 'crl.stale')).toMatchObject({ control: 'RS.RP-1', detail: { policy: 'warn' } });
    // a fresh CRL ends the stale state
    await writeCrl(crlOf([]));
    await waitFor(() => s.mw.status()[0]!.stale === false, 5000, 'fresh CRL loaded');
  });

  it('unknownIssuer refuse: a certificate from a CA without a CRL is refused', async () => {
    const ca2 = createCA({ commonName: 'No CRL CA' });
    writeFileSync(`${pki.dir}/ca-bundle2.pem`, pki.ca.certPem + ca2.certPem);
    writeFileSync(`${pki.dir}/crl.pem`, crlOf([]));
    const { url } = await start({ tls: { ...tlsSettings, ca: 'ca-bundle2.pem' } }, { unknownIssuer: 'refuse', ca: 'ca.pem' });
    expect(await refused(url('tls'), tlsClient(issueClientCert(ca2, { commonName: 'orphan' })))).toBe(true);
    await client(url('tls'), { clientId: 'known', ...tlsClient(pki.client('known')) });
  });

  it('a broker does not start on a CRL that does not verify', async () => {
    const rogue = createCA({ commonName: 'Rogue CA' });
    writeFileSync(`${pki.dir}/crl.pem`, crlOf([], { ca: rogue }));
    await expect(start()).rejects.toMatchObject({ code: 'BASTION_ERR_REVOCATION', message: expect.stringContaining('Rogue CA') });
  });
});

describe('revocation of live connections', () => {
  it('a connected client is disconnected within a second of its serial entering the CRL file (mqtts and wss)', async () => {
    const victim = pki.client('victim');
    const bystander = pki.client('bystander');
    writeFileSync(`${pki.dir}/crl.pem`, crlOf([]));
    const { url, events } = await start();
    const v1 = await client(url('tls'), { clientId: 'victim-tls', ...tlsClient(victim) });
    const v2 = await client(url('wss'), { clientId: 'victim-wss', ...tlsClient(victim) });
    const ok = await client(url('tls'), { clientId: 'bystander', ...tlsClient(bystander) });
    const closedAt: number[] = [];
    const gone = [v1, v2].map((c) => closed(c, 10_000).then(() => closedAt.push(Date.now())));
    const t0 = Date.now();
    await writeCrl(crlOf([victim], { reason: 'keyCompromise' }));
    await Promise.all(gone);
    console.log(`[figure] CRL file rewrite -> revoked clients disconnected: ${closedAt.map((t) => t - t0).join(' ms, ')} ms`);
    const revokedEvents = events.filter((e) => e.type === 'certificate.revoked');
    expect(revokedEvents.map((e) => e.clientId).sort()).toEqual(['victim-tls', 'victim-wss']);
    for (const e of revokedEvents) {
      expect(e).toMatchObject({ control: 'RS.RP-1', source: 'revocation', detail: { serial: victim.serial, revocationReason: 'keyCompromise', source: 'crl' } });
    }
    await waitFor(() => events.filter((e) => e.type === 'client.disconnected' && e.reason === 'kicked').length === 2);
    expect(events.find((e) => e.type === 'crl.loaded' && (e.detail?.newlyRevoked as string[] | undefined)?.includes(victim.serial))).toBeDefined();
    // it cannot come back, and the bystander never noticed
    expect(await refused(url('tls'), tlsClient(victim))).toBe(true);
    expect(ok.connected).toBe(true);
    await ok.subscribeAsync('b');
    const got = nextMessage(ok);
    ok.publish('b', 'fine');
    expect((await got).payload).toBe('fine');
  });

  it('a corrupted CRL is refused with crl.rejected and the previous CRL stays in force', async () => {
    const lost = pki.client('lost-2');
    const good = pki.client('good-2');
    writeFileSync(`${pki.dir}/crl.pem`, crlOf([lost]));
    const { url, events, mw } = await start();
    const g = await client(url('tls'), { clientId: 'good-2', ...tlsClient(good) });
    await writeCrl('-----BEGIN X509 CRL-----\nMIIBAAAAthisisnotacrl\n-----END X509 CRL-----\n');
    await waitFor(() => events.some((e) => e.type === 'crl.rejected'), 5000, 'crl.rejected');
    expect(events.find((e) => e.type === 'crl.rejected')).toMatchObject({ control: 'RS.RP-1', detail: { problem: 'malformed' } });
    expect(mw.status()[0]).toMatchObject({ revoked: 1, error: expect.stringContaining('not a readable CRL') });
    expect(await refused(url('tls'), tlsClient(lost))).toBe(true);
    expect(await refused(url('wss'), tlsClient(lost))).toBe(true);
    expect(g.connected).toBe(true);
    await client(url('wss'), { clientId: 'good-2b', ...tlsClient(good) });
  });

  it('a CRL signed by another CA (other name, or same name with another key) or an older CRL is refused', async () => {
    const good = pki.client('good-3');
    writeFileSync(`${pki.dir}/crl.pem`, crlOf([]));
    const { url, events, mw } = await start();
    const g = await client(url('tls'), { clientId: 'good-3', ...tlsClient(good) });
    const rejected = () => events.filter((e) => e.type === 'crl.rejected');

    await writeCrl(crlOf([good], { ca: createCA({ commonName: 'Rogue CA' }) }));
    await waitFor(() => rejected().length === 1, 5000, 'foreign CRL rejected');
    expect(rejected()[0]!.message).toContain('Rogue CA');

    await writeCrl(crlOf([good], { ca: createCA({ commonName: 'Test CA' }) })); // same subject, forged
    await waitFor(() => rejected().length === 2, 5000, 'forged CRL rejected');
    expect(rejected()[1]!.message).toContain('signature does not verify');

    await writeCrl(crlOf([good], { number: 1 })); // genuine but older than the one in force
    await waitFor(() => rejected().length === 3, 5000, 'rollback rejected');
    expect(rejected()[2]!.detail).toMatchObject({ problem: 'rollback' });

    expect(g.connected).toBe(true);
    expect(events.some((e) => e.type === 'certificate.revoked')).toBe(false);
    expect(mw.check(broker!.client('good-3')!.certificate!)).toMatchObject({ revoked: false });
    await client(url('wss'), { clientId: 'good-3b', ...tlsClient(good) });
  });

  it('the embedding API revokes at once; SIGHUP reloads an unwatched CRL', async () => {
    const a = pki.client('api-victim');
    const b = pki.client('hup-victim');
    writeFileSync(`${pki.dir}/crl.pem`, crlOf([]));
    const { url, events, mw } = await start({}, { watch: false });
    const ca = await client(url('tls'), { clientId: 'api-victim', ...tlsClient(a) });
    const cb = await client(url('wss'), { clientId: 'hup-victim', ...tlsClient(b) });
    const t0 = Date.now();
    const gone = closed(ca);
    expect(mw.revoke(a.serial, { reason: 'privilegeWithdrawn' })).toBe(1);
    await gone;
    console.log(`[figure] API revoke -> client disconnected: ${Date.now() - t0} ms`);
    expect(events.find((e) => e.type === 'certificate.revoked')).toMatchObject({ clientId: 'api-victim', detail: { serial: a.serial, source: 'api' } });
    expect(await refused(url('tls'), tlsClient(a))).toBe(true);
    expect(mw.unrevoke(a.serial)).toBe(true);
    await client(url('tls'), { clientId: 'api-victim-back', ...tlsClient(a) });

    // not watched: the file change alone does nothing; SIGHUP (as `kill -HUP` would) reloads it
    writeFileSync(`${pki.dir}/crl.pem`, crlOf([b]));
    await new Promise((r) => setTimeout(r, 400));
    expect(cb.connected).toBe(true);
    const goneB = closed(cb);
    process.emit('SIGHUP', 'SIGHUP');
    await goneB;
    expect(events.filter((e) => e.type === 'certificate.revoked').map((e) => e.clientId)).toContain('hup-victim');
  });
});
