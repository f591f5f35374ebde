/**
 * A client certificate is kept once per distinct certificate, not once per connection, and its
 * `raw` (Node's PeerCertificate) is rebuilt from the DER when asked for instead of being held by
 * every idle connection (docs/performance.md, "Idle memory over mTLS").
 */
import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import v8 from 'node:v8';
import vm from 'node:vm';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion } from '@bastion/broker';
import { normalizeSerial, type ClientCertificate } from '@bastion/core';
import type { Issued } from '@bastion/pki';
import { peerDerFromSession } from '../packages/core/src/certificate.js';
import { connect } from './support/mqtt.js';
import { makeTestPki, type TestPki } from './support/pki.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const silent = pino({ level: 'silent' });
let pki: TestPki;
let broker: Bastion | undefined;
const clients: mqtt.MqttClient[] = [];

beforeAll(() => {
  pki = makeTestPki();
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
});

async function start(): Promise<string> {
  broker = await createBroker({
    profile: {
      version: 1,
      listeners: [{ name: 'tls', protocol: 'mqtts', port: 0 }],
      tls: { cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem', clientCertificate: 'required' },
      authentication: { anonymous: false, certificates: { identity: 'cn' } },
    },
    baseDir: pki.dir,
    logger: silent,
  });
  return `mqtts://localhost:${broker.addresses().tls!.port}`;
}

async function client(url: string, clientId: string, cert: Issued) {
  const c = await connect(url, { clientId, ca: pki.ca.certPem, rejectUnauthorized: true, cert: cert.certPem, key: cert.keyPem });
  clients.push(c);
  return c;
}

const certOf = (id: string): ClientCertificate => {
  const cert = broker!.client(id)?.certificate;
  if (cert === undefined) throw new Error(`client ${id} has no certificate`);
  return cert;
};

/** Lets the current job end (a WeakRef target stays alive until then), then collects. */
async function collect(): Promise<void> {
  await new Promise((r) => setImmediate(r));
  gc();
  gc();
}

describe('client certificates', () => {
  it('connections with the same certificate share one frozen object; another certificate gets its own', async () => {
    const url = await start();
    const a = pki.client('device-a', { dnsNames: ['a.grid.example'], emails: ['ops@grid.example'] });
    const b = pki.client('device-b');
    await client(url, 'a1', a);
    await client(url, 'a2', a);
    await client(url, 'b1', b);

    const a1 = certOf('a1');
    expect(certOf('a2')).toBe(a1);
    expect(certOf('b1')).not.toBe(a1);
    expect(Object.isFrozen(a1)).toBe(true);
    expect(Object.isFrozen(a1.raw)).toBe(true);
    expect(() => {
      (a1.dnsNames as string[]).push('evil.example');
    }).toThrow(TypeError);

    const x = new X509Certificate(a.certPem);
    expect(a1).toMatchObject({
      commonName: 'device-a',
      serial: normalizeSerial(a.serial),
      fingerprint256: x.fingerprint256,
      dnsNames: ['a.grid.example'],
      emails: ['ops@grid.example'],
      uris: [],
    });
    expect(a1.validTo.getTime()).toBe(new Date(x.validTo).getTime());
    expect(certOf('b1').commonName).toBe('device-b');
    expect(certOf('b1').dnsNames).toEqual([]);
  });

  it('raw is what getPeerCertificate() returns, is not kept by an idle connection, and comes back equal', async () => {
    const url = await start();
    const a = pki.client('device-a', { uris: ['urn:dev:a'] });
    await client(url, 'a1', a);
    const cert = certOf('a1');
    const expected = new X509Certificate(a.certPem).toLegacyObject();

    expect(cert.raw).toEqual(expected);
    expect(Buffer.compare(cert.raw.raw, new X509Certificate(a.certPem).raw)).toBe(0);
    expect(Object.keys(cert)).toContain('raw'); // enumerable, as a plain property was
    expect(cert.raw.subject).toBe(cert.subject);
    expect(cert.raw.issuer).toBe(cert.issuer);

    const first = new WeakRef(cert.raw);
    await collect();
    expect(first.deref()).toBeUndefined(); // nothing per connection holds Node's object any more

    const again = cert.raw;
    expect(again).toEqual(expected);
    expect(cert.raw).toBe(again); // while held, the same object
    expect(again.subject).toBe(cert.subject);
  });
});

describe("the peer certificate's DER from the TLS session", () => {
  it('is exactly the certificate the client sent, over TLS 1.2 and 1.3; a truncated or foreign buffer gives none', async () => {
    const device = pki.client('device-session');
    for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
      const got = new Promise<{ der: Buffer | undefined; raw: Buffer; session: Buffer }>((resolve) => {
        const server = tls.createServer({ cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: true, minVersion: version, maxVersion: version }, (s) => {
          const session = s.getSession() as Buffer;
          resolve({ der: peerDerFromSession(session), raw: (s.getPeerX509Certificate() as X509Certificate).raw, session });
          s.end();
          server.close();
        });
        server.listen(0, '127.0.0.1', () => {
          const port = (server.address() as { port: number }).port;
          const c = tls.connect({ host: '127.0.0.1', port, ca: pki.ca.certPem, cert: device.certPem, key: device.keyPem, servername: 'localhost' }, () => c.end());
          c.on('error', () => {});
        });
      });
      const { der, raw, session } = await got;
      expect(der?.equals(raw)).toBe(true);
      expect(new X509Certificate(der as Buffer).subject).toContain('CN=device-session');
      for (const cut of [1, 2, 40, session.length - 1]) expect(peerDerFromSession(session.subarray(0, cut))).toBeUndefined();
    }
    expect(peerDerFromSession(Buffer.from(device.certPem))).toBeUndefined(); // PEM text, not a session
    expect(peerDerFromSession(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]))).toBeUndefined(); // a session without a peer
  });
});
