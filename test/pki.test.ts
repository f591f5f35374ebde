/**
 * @bastion/pki, judged by Node itself: real TLS handshakes (OpenSSL verifies chains, SANs,
 * validity and CRLs) and node:crypto's X509Certificate as an independent parser.
 */
import { X509Certificate, createPublicKey } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile, chmod } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  PkiError,
  certificateInfo,
  createCA,
  createCRL,
  initDevPki,
  issueClientCert,
  issueClientToDir,
  issueServerCert,
  listCertificates,
  loadCA,
  normalizeSerial,
  parseCRL,
  pkiPaths,
  revokeInDir,
  verifyCRL,
  writePrivateFile,
  type CertificateAuthority,
  type Issued,
  type RevocationReason,
} from '@bastion/pki';

const DAY = 24 * 60 * 60 * 1000;

// ---------------------------------------------------------------------------
// TLS helpers
// ---------------------------------------------------------------------------

interface Outcome {
  /** The server emitted 'secureConnection' (it accepted the client). */
  serverAccepted: boolean;
  /** Data the client received from the server ('hello' when the session was usable). */
  received: string;
  clientError?: NodeJS.ErrnoException;
  /** Server-side view of the client certificate, when accepted. */
  peerSerial?: string;
  peerCN?: string;
}

async function listen(server: net.Server, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as net.AddressInfo).port;
}

async function closeServer(server: net.Server): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/**
 * Runs one TLS session against a fresh server. The server writes 'hello' to every accepted
 * client; the client records what it gets and how the connection ended.
 */
async function handshake(
  serverOpts: tls.TlsOptions,
  clientOpts: tls.ConnectionOptions,
  host = '127.0.0.1',
): Promise<Outcome> {
  const outcome: Outcome = { serverAccepted: false, received: '' };
  const server = tls.createServer(serverOpts, (socket) => {
    outcome.serverAccepted = true;
    const peer = socket.getPeerCertificate();
    if (peer && peer.serialNumber) {
      outcome.peerSerial = peer.serialNumber;
      outcome.peerCN = Array.isArray(peer.subject?.CN) ? peer.subject.CN[0] : peer.subject?.CN;
    }
    socket.on('error', () => undefined);
    socket.end('hello');
  });
  server.on('tlsClientError', () => undefined);
  const port = await listen(server, host);
  await new Promise<void>((resolve) => {
    const client = tls.connect({ host, port, ...clientOpts });
    client.setEncoding('utf8');
    client.on('data', (d: string) => {
      outcome.received += d;
    });
    client.on('error', (err) => {
      outcome.clientError = err;
    });
    client.on('close', () => resolve());
  });
  await closeServer(server);
  return outcome;
}

/**
 * What OpenSSL thinks of the client certificate, from a server that requests but does not
 * enforce it: `authorizationError` names the exact reason (CERT_REVOKED, CERT_HAS_EXPIRED...).
 */
async function clientCertVerdict(
  serverOpts: tls.TlsOptions,
  clientOpts: tls.ConnectionOptions,
): Promise<{ authorized: boolean; error?: string }> {
  let verdict: { authorized: boolean; error?: string } | undefined;
  const server = tls.createServer({ ...serverOpts, requestCert: true, rejectUnauthorized: false }, (socket) => {
    verdict = socket.authorized
      ? { authorized: true }
      : { authorized: false, error: String(socket.authorizationError) };
    socket.on('error', () => undefined);
    socket.end('hello');
  });
  const port = await listen(server, '127.0.0.1');
  await new Promise<void>((resolve) => {
    const client = tls.connect({ host: '127.0.0.1', port, ...clientOpts });
    client.on('data', () => undefined);
    client.on('error', () => undefined);
    client.on('close', () => resolve());
  });
  await closeServer(server);
  if (!verdict) throw new Error('the probe server never completed a handshake');
  return verdict;
}

async function ipv6LoopbackAvailable(): Promise<boolean> {
  const probe = net.createServer();
  try {
    await listen(probe, '::1');
    await closeServer(probe);
    return true;
  } catch {
    return false;
  }
}

/** Canonical IP text via WHATWG URL (independent of the package's own IP formatting). */
function canonicalIp(ip: string): string {
  return ip.includes(':') ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : new URL(`http://${ip}/`).hostname;
}

/** Parses Node's X509Certificate#subjectAltName ("DNS:a, IP Address:1.2.3.4, URI:..., email:..."). */
function nodeAltNames(x: X509Certificate): { dns: string[]; ip: string[]; uri: string[]; email: string[] } {
  const out = { dns: [] as string[], ip: [] as string[], uri: [] as string[], email: [] as string[] };
  for (const part of (x.subjectAltName ?? '').split(', ').filter(Boolean)) {
    const idx = part.indexOf(':');
    const type = part.slice(0, idx);
    const value = part.slice(idx + 1);
    if (type === 'DNS') out.dns.push(value);
    else if (type === 'IP Address') out.ip.push(canonicalIp(value));
    else if (type === 'URI') out.uri.push(value);
    else if (type === 'email') out.email.push(value);
  }
  return out;
}

function expectPkiError(fn: () => unknown, code: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(PkiError);
  expect((caught as PkiError).code).toBe(code);
}

async function expectPkiErrorAsync(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PkiError);
  expect((err as PkiError).code).toBe(code);
}

function fileMode(path: string): Promise<number> {
  return stat(path).then((s) => s.mode & 0o777);
}

// ---------------------------------------------------------------------------
// Fixtures: one CA, one foreign CA, and certificates issued from them
// ---------------------------------------------------------------------------

let ca: CertificateAuthority & Issued;
let otherCa: CertificateAuthority & Issued;
let server: Issued;
let client: Issued;
let client2: Issued;

beforeAll(() => {
  ca = createCA({ commonName: 'Bastion Test CA', organization: 'Bastion', keyType: 'rsa-2048' });
  otherCa = createCA({ commonName: 'Bastion Test CA', organization: 'Impostor', keyType: 'rsa-2048' });
  server = issueServerCert(ca, {
    commonName: 'localhost',
    dnsNames: ['localhost', 'broker.test'],
    ipAddresses: ['127.0.0.1', '::1'],
  });
  client = issueClientCert(ca, {
    commonName: 'device-1',
    organizationalUnit: 'devices',
    uris: ['spiffe://bastion/device-1'],
    emails: ['device-1@example.com'],
    dnsNames: ['device-1.local'],
  });
  client2 = issueClientCert(ca, { commonName: 'device-2' });
});

function mtlsServer(extra: tls.TlsOptions = {}): tls.TlsOptions {
  return {
    cert: server.certPem,
    key: server.keyPem,
    ca: [ca.certPem],
    requestCert: true,
    rejectUnauthorized: true,
    ...extra,
  };
}

function asClient(c: Issued, extra: tls.ConnectionOptions = {}): tls.ConnectionOptions {
  return { cert: c.certPem, key: c.keyPem, ca: [ca.certPem], servername: 'localhost', ...extra };
}

// ---------------------------------------------------------------------------

describe('certificates as Node sees them', () => {
  it('creates a self-signed CA that Node recognises as a CA', () => {
    const x = new X509Certificate(ca.certPem);
    expect(x.ca).toBe(true);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.checkIssued(x)).toBe(true);
    expect(x.subject.split('\n')).toEqual(['O=Bastion', 'CN=Bastion Test CA']);
    expect(ca.subject).toBe('CN=Bastion Test CA,O=Bastion');
    expect(normalizeSerial(x.serialNumber)).toBe(ca.serial);
    expect(createPublicKey(ca.keyPem).asymmetricKeyType).toBe('rsa');
    expect(ca.keyPem).toContain(`-----BEGIN PRIVATE ${'KEY'}-----`); // split so no tracked file looks like a key
    // default validity: 3650 days
    expect(Math.round((ca.notAfter.getTime() - Date.now()) / DAY)).toBe(3650);
  });

  it('signs leaf certificates with the CA key (sha256WithRSA, v3, not CAs)', () => {
    const caX = new X509Certificate(ca.certPem);
    for (const leaf of [server, client, client2]) {
      const x = new X509Certificate(leaf.certPem);
      expect(x.verify(caX.publicKey)).toBe(true);
      expect(x.checkIssued(caX)).toBe(true);
      expect(x.ca).toBe(false);
      expect(x.verify(new X509Certificate(otherCa.certPem).publicKey)).toBe(false);
    }
    expect(new X509Certificate(server.certPem).keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']); // serverAuth
    expect(new X509Certificate(client.certPem).keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']); // clientAuth
  });

  it('certificateInfo agrees with crypto.X509Certificate on serial, names, SANs, validity and fingerprint', () => {
    for (const c of [ca, server, client, client2]) {
      const x = new X509Certificate(c.certPem);
      const info = certificateInfo(c.certPem);
      expect(info.serial).toBe(normalizeSerial(x.serialNumber));
      expect(info.serial).toBe(c.serial);
      expect(info.serial).toMatch(/^[0-9a-f]+$/);
      expect(info.notBefore.getTime()).toBe(new Date(x.validFrom).getTime());
      expect(info.notAfter.getTime()).toBe(new Date(x.validTo).getTime());
      expect(info.notBefore.getTime()).toBe(c.notBefore.getTime());
      expect(info.notAfter.getTime()).toBe(c.notAfter.getTime());
      expect(info.fingerprint256).toBe(x.fingerprint256);
      expect(info.subject).toBe(c.subject);
      // Node prints DER order one per line; certificateInfo uses RFC 4514 order (reversed).
      expect(info.subject).toBe(x.subject.split('\n').reverse().join(','));
      expect(info.issuer).toBe(x.issuer.split('\n').reverse().join(','));
      const alt = nodeAltNames(x);
      expect(info.dnsNames).toEqual(alt.dns);
      expect(info.ipAddresses.map(canonicalIp)).toEqual(alt.ip);
      expect(info.uris).toEqual(alt.uri);
      expect(info.emails).toEqual(alt.email);
    }
    const s = certificateInfo(server.certPem);
    expect(s.commonName).toBe('localhost');
    expect(s.dnsNames).toEqual(['localhost', 'broker.test']);
    expect(s.ipAddresses).toEqual(['127.0.0.1', '::1']);
    const c = certificateInfo(client.certPem);
    expect(c.subject).toBe('CN=device-1,OU=devices');
    expect(c.uris).toEqual(['spiffe://bastion/device-1']);
    expect(c.emails).toEqual(['device-1@example.com']);
    expect(c.dnsNames).toEqual(['device-1.local']);
    expect(c.issuer).toBe('CN=Bastion Test CA,O=Bastion');
  });

  it('uses the documented default validity periods and honours explicit dates', () => {
    const now = Date.now();
    expect(Math.round((server.notAfter.getTime() - now) / DAY)).toBe(825);
    expect(Math.round((client.notAfter.getTime() - now) / DAY)).toBe(365);
    const notBefore = new Date('2030-01-02T03:04:05.678Z');
    const notAfter = new Date('2031-01-02T03:04:05.000Z');
    const fixed = issueClientCert(ca, { commonName: 'fixed', notBefore, notAfter });
    const x = new X509Certificate(fixed.certPem);
    expect(new Date(x.validFrom).toISOString()).toBe('2030-01-02T03:04:05.000Z');
    expect(new Date(x.validTo).toISOString()).toBe('2031-01-02T03:04:05.000Z');
    expect(fixed.notBefore.toISOString()).toBe('2030-01-02T03:04:05.000Z');
  });

  it('serials are random, positive 16-byte integers', () => {
    const serials = new Set([ca.serial, otherCa.serial, server.serial, client.serial, client2.serial]);
    expect(serials.size).toBe(5);
    for (const s of serials) {
      expect(s).toMatch(/^[0-9a-f]{2,32}$/);
      expect(s.length).toBe(32); // first byte never zero, so no stripping happens
      expect(parseInt(s.slice(0, 2), 16)).toBeLessThan(0x80); // high bit clear: positive INTEGER
    }
  });

  it('normalizeSerial matches Node, OpenSSL and DER-padded spellings', () => {
    expect(normalizeSerial('0A1B2C')).toBe('0a1b2c');
    expect(normalizeSerial('0a:1b:2c')).toBe('0a1b2c');
    expect(normalizeSerial('00ff01')).toBe('ff01');
    expect(normalizeSerial('0000000a')).toBe('0a');
    expect(normalizeSerial('abc')).toBe('0abc');
    expect(normalizeSerial('00')).toBe('00');
    expectPkiError(() => normalizeSerial('xyz'), 'BASTION_ERR_PKI_BAD_INPUT');
  });
});

describe('mutual TLS with issued certificates (OpenSSL as the judge)', () => {
  it('accepts a client certificate issued by the trusted CA', async () => {
    const r = await handshake(mtlsServer(), asClient(client));
    expect(r.clientError).toBeUndefined();
    expect(r.serverAccepted).toBe(true);
    expect(r.received).toBe('hello');
    expect(normalizeSerial(r.peerSerial ?? '')).toBe(client.serial);
    expect(r.peerCN).toBe('device-1');
    expect(certificateInfo(client.certPem).serial).toBe(normalizeSerial(r.peerSerial ?? ''));
  });

  it('rejects a client certificate from another CA (even with the same CA common name)', async () => {
    const foreign = issueClientCert(otherCa, { commonName: 'device-1' });
    const r = await handshake(mtlsServer(), asClient(foreign));
    expect(r.serverAccepted).toBe(false);
    expect(r.received).toBe('');
    const verdict = await clientCertVerdict(mtlsServer(), asClient(foreign));
    expect(verdict.authorized).toBe(false);
    expect(verdict.error).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  it('rejects an expired client certificate', async () => {
    const expired = issueClientCert(ca, {
      commonName: 'expired',
      notBefore: new Date(Date.now() - 10 * DAY),
      notAfter: new Date(Date.now() - 1 * DAY),
    });
    const r = await handshake(mtlsServer(), asClient(expired));
    expect(r.serverAccepted).toBe(false);
    expect(r.received).toBe('');
    expect(await clientCertVerdict(mtlsServer(), asClient(expired))).toEqual({ authorized: false, error: 'CERT_HAS_EXPIRED' });
  });

  it('rejects a client certificate that is not yet valid', async () => {
    const future = issueClientCert(ca, {
      commonName: 'future',
      notBefore: new Date(Date.now() + 1 * DAY),
      notAfter: new Date(Date.now() + 10 * DAY),
    });
    const r = await handshake(mtlsServer(), asClient(future));
    expect(r.serverAccepted).toBe(false);
    expect(await clientCertVerdict(mtlsServer(), asClient(future))).toEqual({ authorized: false, error: 'CERT_NOT_YET_VALID' });
  });

  it('rejects a client that presents no certificate', async () => {
    const r = await handshake(mtlsServer(), { ca: [ca.certPem], servername: 'localhost' });
    expect(r.serverAccepted).toBe(false);
    expect(r.received).toBe('');
  });

  it('the client verifies the server certificate by DNS name and by IPv4 address', async () => {
    const byName = await handshake(mtlsServer(), asClient(client, { servername: 'localhost' }));
    expect(byName.clientError).toBeUndefined();
    expect(byName.received).toBe('hello');

    const otherName = await handshake(mtlsServer(), asClient(client, { servername: 'broker.test' }));
    expect(otherName.received).toBe('hello');

    // No servername: Node checks the IP literal against the IP SANs.
    const byIp = await handshake(mtlsServer(), asClient(client, { servername: undefined }), '127.0.0.1');
    expect(byIp.clientError).toBeUndefined();
    expect(byIp.received).toBe('hello');

    const wrongName = await handshake(mtlsServer(), asClient(client, { servername: 'evil.example' }));
    expect(wrongName.clientError?.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(wrongName.received).toBe('');

    const untrusted = await handshake(mtlsServer(), asClient(client, { ca: [otherCa.certPem] }));
    // Node's server sends the CA along with its certificate, so OpenSSL reports the untrusted root.
    expect(['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE']).toContain(untrusted.clientError?.code);
    expect(untrusted.received).toBe('');
  });

  it('the client verifies the server certificate over IPv6 loopback (::1 SAN) when available', async () => {
    if (!(await ipv6LoopbackAvailable())) {
      console.warn('IPv6 loopback (::1) is not available here; the ::1 handshake was not exercised');
      return;
    }
    const r = await handshake(mtlsServer(), asClient(client, { servername: undefined }), '::1');
    expect(r.clientError).toBeUndefined();
    expect(r.serverAccepted).toBe(true);
    expect(r.received).toBe('hello');

    // A server certificate without the ::1 SAN must fail the same check.
    const v4only = issueServerCert(ca, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const bad = await handshake(
      mtlsServer({ cert: v4only.certPem, key: v4only.keyPem }),
      asClient(client, { servername: undefined }),
      '::1',
    );
    expect(bad.clientError?.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('the client rejects an expired server certificate', async () => {
    const old = issueServerCert(ca, {
      commonName: 'localhost',
      notBefore: new Date(Date.now() - 30 * DAY),
      notAfter: new Date(Date.now() - 2 * DAY),
    });
    const r = await handshake(mtlsServer({ cert: old.certPem, key: old.keyPem }), asClient(client));
    expect(r.clientError?.code).toBe('CERT_HAS_EXPIRED');
    expect(r.received).toBe('');
  });
});

describe('certificate revocation lists', () => {
  it('a CRL passed to tls.createServer rejects the revoked client and accepts the others', async () => {
    const crlPem = createCRL(ca, [{ serial: client2.serial, revokedAt: new Date(), reason: 'keyCompromise' }]);
    expect(crlPem).toMatch(/^-----BEGIN X509 CRL-----\n/);

    const revoked = await handshake(mtlsServer({ crl: [crlPem] }), asClient(client2));
    expect(revoked.serverAccepted).toBe(false);
    expect(revoked.received).toBe('');

    const good = await handshake(mtlsServer({ crl: [crlPem] }), asClient(client));
    expect(good.clientError).toBeUndefined();
    expect(good.serverAccepted).toBe(true);
    expect(good.received).toBe('hello');

    expect(await clientCertVerdict(mtlsServer({ crl: [crlPem] }), asClient(client2))).toEqual({
      authorized: false,
      error: 'CERT_REVOKED',
    });
  });

  it('an empty CRL is accepted by OpenSSL too', async () => {
    const r = await handshake(mtlsServer({ crl: [createCRL(ca, [])] }), asClient(client2));
    expect(r.serverAccepted).toBe(true);
    expect(r.received).toBe('hello');
  });

  it('parseCRL round-trips serials, reasons, dates and the CRL number', () => {
    const reasons: RevocationReason[] = [
      'unspecified',
      'keyCompromise',
      'cACompromise',
      'affiliationChanged',
      'superseded',
      'cessationOfOperation',
      'certificateHold',
      'removeFromCRL',
      'privilegeWithdrawn',
      'aACompromise',
    ];
    const revokedAt = new Date('2025-06-01T12:00:00.000Z');
    const entries = reasons.map((reason, i) => ({
      serial: (0x10 + i).toString(16).padStart(4, '0') + client.serial.slice(4),
      revokedAt: new Date(revokedAt.getTime() + i * 1000),
      reason,
    }));
    const extra = [
      { serial: client.serial.toUpperCase(), revokedAt }, // no reason
      { serial: '00FF01', revokedAt }, // high bit set once leading zero is stripped
      { serial: '0a', revokedAt },
    ];
    const thisUpdate = new Date('2025-06-02T00:00:00.000Z');
    const nextUpdate = new Date('2060-06-09T00:00:00.000Z'); // GeneralizedTime territory
    const pem = createCRL(ca, [...entries, ...extra], { thisUpdate, nextUpdate, crlNumber: 42 });
    const parsed = parseCRL(pem);
    expect(parsed.issuer).toBe(ca.subject);
    expect(parsed.thisUpdate.toISOString()).toBe(thisUpdate.toISOString());
    expect(parsed.nextUpdate?.toISOString()).toBe(nextUpdate.toISOString());
    expect(parsed.crlNumber).toBe(42);
    expect(parsed.signatureOid).toBe('1.2.840.113549.1.1.11');
    expect(parsed.revoked).toEqual([
      ...entries.map((e) => ({ serial: normalizeSerial(e.serial), revokedAt: e.revokedAt, reason: e.reason })),
      { serial: client.serial, revokedAt },
      { serial: 'ff01', revokedAt },
      { serial: '0a', revokedAt },
    ]);
    // DER input gives the same result
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    expect(parseCRL(der)).toEqual(parsed);
  });

  it('defaults: nextUpdate is 7 days after thisUpdate and the CRL number is present', () => {
    const parsed = parseCRL(createCRL(ca, []));
    expect(parsed.revoked).toEqual([]);
    expect(parsed.nextUpdate!.getTime() - parsed.thisUpdate.getTime()).toBe(7 * DAY);
    expect(typeof parsed.crlNumber).toBe('number');
  });

  it('verifyCRL accepts the issuing CA and rejects another CA and tampered CRLs', () => {
    const pem = createCRL(ca, [{ serial: client2.serial, revokedAt: new Date(), reason: 'superseded' }]);
    expect(verifyCRL(pem, ca.certPem)).toBe(true);
    expect(verifyCRL(Buffer.from(pem), ca.certPem)).toBe(true);
    expect(verifyCRL(pem, otherCa.certPem)).toBe(false);
    // same subject DN as the issuing CA, different key: the signature decides
    const twin = createCA({ commonName: 'Bastion Test CA', organization: 'Bastion', keyType: 'rsa-2048' });
    expect(verifyCRL(pem, twin.certPem)).toBe(false);

    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    // Flip a bit inside the revoked serial (part of the signed TBS).
    const serialBytes = Buffer.from(client2.serial, 'hex');
    const at = der.indexOf(serialBytes);
    expect(at).toBeGreaterThan(0);
    const tamperedTbs = Buffer.from(der);
    tamperedTbs[at + serialBytes.length - 1]! ^= 0x01;
    expect(parseCRL(tamperedTbs).revoked[0]?.serial).not.toBe(client2.serial);
    expect(verifyCRL(tamperedTbs, ca.certPem)).toBe(false);
    // Flip a bit in the signature itself.
    const tamperedSig = Buffer.from(der);
    tamperedSig[tamperedSig.length - 1]! ^= 0x01;
    expect(verifyCRL(tamperedSig, ca.certPem)).toBe(false);
  });

  it('rejects malformed CRL input with BASTION_ERR_PKI_BAD_CRL', () => {
    expectPkiError(() => parseCRL('not a crl'), 'BASTION_ERR_PKI_BAD_CRL');
    expectPkiError(() => parseCRL(Buffer.from([0x30, 0x03, 0x02, 0x01])), 'BASTION_ERR_PKI_BAD_CRL');
    expectPkiError(() => parseCRL(ca.certPem), 'BASTION_ERR_PKI_BAD_CRL');
    expectPkiError(() => verifyCRL('garbage', ca.certPem), 'BASTION_ERR_PKI_BAD_CRL');
  });
});

describe('input validation and errors', () => {
  it('refuses to issue from a leaf certificate or a mismatched key', () => {
    expectPkiError(() => issueClientCert(server, { commonName: 'x' }), 'BASTION_ERR_PKI_BAD_CA');
    expectPkiError(() => issueClientCert({ certPem: ca.certPem, keyPem: otherCa.keyPem }, { commonName: 'x' }), 'BASTION_ERR_PKI_KEY_MISMATCH');
    expectPkiError(() => createCRL({ certPem: ca.certPem, keyPem: otherCa.keyPem }, []), 'BASTION_ERR_PKI_KEY_MISMATCH');
  });

  it('rejects bad names, addresses and dates', () => {
    expectPkiError(() => issueServerCert(ca, { commonName: 'x', ipAddresses: ['999.1.1.1'] }), 'BASTION_ERR_PKI_BAD_INPUT');
    expectPkiError(() => issueServerCert(ca, { commonName: 'x', ipAddresses: ['fe80::1%eth0'] }), 'BASTION_ERR_PKI_BAD_INPUT');
    expectPkiError(() => issueServerCert(ca, { commonName: 'x', dnsNames: ['bad name'] }), 'BASTION_ERR_PKI_BAD_INPUT');
    expectPkiError(() => issueClientCert(ca, { commonName: 'x', uris: ['not a uri'] }), 'BASTION_ERR_PKI_BAD_INPUT');
    expectPkiError(() => issueClientCert(ca, { commonName: '' }), 'BASTION_ERR_PKI_BAD_INPUT');
    expectPkiError(
      () => issueClientCert(ca, { commonName: 'x', notBefore: new Date(), notAfter: new Date(Date.now() - DAY) }),
      'BASTION_ERR_PKI_BAD_INPUT',
    );
    expectPkiError(() => createCRL(ca, [{ serial: 'zz', revokedAt: new Date() }]), 'BASTION_ERR_PKI_BAD_INPUT');
    expectPkiError(() => certificateInfo('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), 'BASTION_ERR_PKI_BAD_CERT');
  });

  it('a server certificate without explicit SANs gets its common name as SAN', () => {
    expect(certificateInfo(issueServerCert(ca, { commonName: 'mqtt.example.com' }).certPem).dnsNames).toEqual(['mqtt.example.com']);
    expect(certificateInfo(issueServerCert(ca, { commonName: '10.1.2.3' }).certPem).ipAddresses).toEqual(['10.1.2.3']);
  });
});

describe('PKI directory on disk', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bastion-pki-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('initDevPki creates CA, server, clients and CRL with private keys at 0600', async () => {
    const pkiDir = join(dir, 'dev');
    const res = await initDevPki(pkiDir);
    expect(res.created).toBe(true);
    expect(res.clients).toEqual(['device-1', 'device-2']);
    const paths = pkiPaths(pkiDir);
    expect(res.paths).toEqual(paths);
    expect(paths.caCert).toBe(join(pkiDir, 'ca.pem'));
    expect(paths.caKey).toBe(join(pkiDir, 'ca-key.pem'));
    expect(paths.serverCert).toBe(join(pkiDir, 'server.pem'));
    expect(paths.serverKey).toBe(join(pkiDir, 'server-key.pem'));
    expect(paths.crl).toBe(join(pkiDir, 'crl.pem'));
    expect(paths.revoked).toBe(join(pkiDir, 'revoked.json'));

    for (const key of [paths.caKey, paths.serverKey, join(pkiDir, 'clients', 'device-1-key.pem'), join(pkiDir, 'clients', 'device-2-key.pem')]) {
      expect(await fileMode(key)).toBe(0o600);
    }
    const srv = certificateInfo(await readFile(paths.serverCert, 'utf8'));
    expect(srv.dnsNames).toEqual(['localhost']);
    expect(srv.ipAddresses).toEqual(['127.0.0.1', '::1']);
    const caPem = await readFile(paths.caCert, 'utf8');
    expect(verifyCRL(await readFile(paths.crl, 'utf8'), caPem)).toBe(true);
    expect(JSON.parse(await readFile(paths.revoked, 'utf8'))).toEqual([]);

    // The files work for a real mutual-TLS session (with the CRL enabled).
    const r = await handshake(
      {
        cert: await readFile(paths.serverCert),
        key: await readFile(paths.serverKey),
        ca: [caPem],
        crl: [await readFile(paths.crl)],
        requestCert: true,
        rejectUnauthorized: true,
      },
      {
        cert: await readFile(join(pkiDir, 'clients', 'device-1.pem')),
        key: await readFile(join(pkiDir, 'clients', 'device-1-key.pem')),
        ca: [caPem],
        servername: 'localhost',
      },
    );
    expect(r.clientError).toBeUndefined();
    expect(r.received).toBe('hello');
    expect(r.peerCN).toBe('device-1');
  });

  it('initDevPki is idempotent and only regenerates with force', async () => {
    const pkiDir = join(dir, 'idem');
    const first = await initDevPki(pkiDir, { clients: ['sensor-a'], serverNames: ['broker.local', '10.0.0.5'] });
    expect(first.created).toBe(true);
    const snapshot = async () =>
      Promise.all(
        [first.paths.caCert, first.paths.caKey, first.paths.serverCert, first.paths.serverKey, first.paths.crl].map((p) => readFile(p, 'utf8')),
      );
    const before = await snapshot();

    const second = await initDevPki(pkiDir, { clients: ['other'] });
    expect(second.created).toBe(false);
    expect(second.clients).toEqual(['sensor-a']);
    expect(await snapshot()).toEqual(before);

    // Concurrent callers (broker start + CLI) do not both create a CA.
    const [a, b] = await Promise.all([initDevPki(join(dir, 'race')), initDevPki(join(dir, 'race'))]);
    expect([a.created, b.created].sort()).toEqual([false, true]);
    const raced = await loadCA(join(dir, 'race'));
    expect(new X509Certificate(raced.certPem).ca).toBe(true);

    const forced = await initDevPki(pkiDir, { force: true, clients: ['sensor-a'] });
    expect(forced.created).toBe(true);
    const after = await snapshot();
    expect(after[0]).not.toBe(before[0]);
    expect(await fileMode(first.paths.caKey)).toBe(0o600);
  });

  it('loadCA, issueClientToDir and listCertificates', async () => {
    const pkiDir = join(dir, 'dev');
    const loaded = await loadCA(pkiDir);
    expect(new X509Certificate(loaded.certPem).ca).toBe(true);

    const out = await issueClientToDir(pkiDir, 'gateway-7', { organizationalUnit: 'gateways', uris: ['urn:bastion:gateway-7'] });
    expect(out.certPath).toBe(join(pkiDir, 'clients', 'gateway-7.pem'));
    expect(out.keyPath).toBe(join(pkiDir, 'clients', 'gateway-7-key.pem'));
    expect(await fileMode(out.keyPath)).toBe(0o600);
    expect(await readFile(out.keyPath, 'utf8')).toBe(out.issued.keyPem);
    expect(out.issued.subject).toBe('CN=gateway-7,OU=gateways');
    expect(new X509Certificate(await readFile(out.certPath)).checkIssued(new X509Certificate(loaded.certPem))).toBe(true);

    await expectPkiErrorAsync(issueClientToDir(pkiDir, 'gateway-7'), 'BASTION_ERR_PKI_EXISTS');
    await expectPkiErrorAsync(issueClientToDir(pkiDir, '../escape'), 'BASTION_ERR_PKI_BAD_NAME');
    const again = await issueClientToDir(pkiDir, 'gateway-7', { force: true });
    expect(again.issued.serial).not.toBe(out.issued.serial);

    const list = await listCertificates(pkiDir);
    expect(list.map((c) => c.name)).toEqual(['ca', 'server', 'device-1', 'device-2', 'gateway-7']);
    const gw = list.find((c) => c.name === 'gateway-7')!;
    expect(gw.path).toBe(out.certPath);
    expect(gw.serial).toBe(again.issued.serial);
    expect(gw.serial).toBe(normalizeSerial(new X509Certificate(await readFile(gw.path)).serialNumber));
    // no private material in the listing
    expect(JSON.stringify(list)).not.toContain('PRIVATE KEY');
  });

  it('revokeInDir updates revoked.json and crl.pem so OpenSSL rejects the revoked client', async () => {
    const pkiDir = join(dir, 'dev');
    const paths = pkiPaths(pkiDir);
    const crlBefore = parseCRL(await readFile(paths.crl, 'utf8'));
    const { entry } = await revokeInDir(pkiDir, 'device-2', 'keyCompromise');
    const dev2 = certificateInfo(await readFile(join(pkiDir, 'clients', 'device-2.pem'), 'utf8'));
    expect(entry.serial).toBe(dev2.serial);
    const crlPem = await readFile(paths.crl, 'utf8');
    const crl = parseCRL(crlPem);
    expect(crl.revoked.map((e) => [e.serial, e.reason])).toEqual([[dev2.serial, 'keyCompromise']]);
    expect(crl.crlNumber!).toBeGreaterThan(crlBefore.crlNumber!);
    const devCa = await loadCA(pkiDir);
    expect(verifyCRL(crlPem, devCa.certPem)).toBe(true);

    const serverOpts = {
      cert: await readFile(paths.serverCert),
      key: await readFile(paths.serverKey),
      ca: [devCa.certPem],
      crl: [crlPem],
      requestCert: true,
      rejectUnauthorized: true,
    };
    const clientOpts = async (name: string): Promise<tls.ConnectionOptions> => ({
      cert: await readFile(join(pkiDir, 'clients', `${name}.pem`)),
      key: await readFile(join(pkiDir, 'clients', `${name}-key.pem`)),
      ca: [devCa.certPem],
      servername: 'localhost',
    });
    expect((await handshake(serverOpts, await clientOpts('device-2'))).serverAccepted).toBe(false);
    expect((await handshake(serverOpts, await clientOpts('device-1'))).received).toBe('hello');
  });

  it('writePrivateFile writes 0600, tightens existing files and replaces content atomically', async () => {
    const target = join(dir, 'nested', 'deeper', 'secret.pem');
    await writePrivateFile(target, 'one');
    expect(await fileMode(target)).toBe(0o600);
    expect(await readFile(target, 'utf8')).toBe('one');

    await writeFile(target, 'loose');
    await chmod(target, 0o644);
    await writePrivateFile(target, 'two');
    expect(await fileMode(target)).toBe(0o600);
    expect(await readFile(target, 'utf8')).toBe('two');
  });

  it('loadCA explains what to do when there is no CA', async () => {
    const empty = join(dir, 'empty');
    let err: unknown;
    try {
      await loadCA(empty);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PkiError);
    expect((err as PkiError).code).toBe('BASTION_ERR_PKI_NO_CA');
    expect((err as PkiError).message).toContain('bastion certs init');
    expect(await listCertificates(empty)).toEqual([]);
  });
});
