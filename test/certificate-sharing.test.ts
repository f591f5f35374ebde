/**
 * A client certificate is kept once per distinct certificate, not once per connection, and its
 * `raw` (Node's PeerCertificate) is rebuilt from the DER when asked for instead of being held by
 * every idle connection (docs/performance.md, "Idle memory over mTLS").
 */
import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import { X509Certificate } from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion } from '@bastion/broker';
import { normalizeSerial, type ClientCertificate } from '@bastion/core';
import type { Issued } from '@bastion/pki';
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
