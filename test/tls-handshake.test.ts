/**
 * Why a TLS handshake failed, as the `connection.refused` event says it (PR.AC-1): a certificate at
 * fault is `certificate-rejected`; anything else (no common protocol version, no shared cipher) is
 * `tls-handshake-failed`. Real mqtts and wss listeners, real mqtt.js clients, certificates from the
 * project's PKI.
 */
import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import { connect as tlsConnect } from 'node:tls';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createCA, issueClientCert } from '@bastion/pki';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import type { Bans } from '@bastion/middleware';
import { tlsFailureReason } from '@bastion/core';
import type { ProfileInput } from '@bastion/profile';
import { connect, tryConnect, isRefusal, waitFor } from './support/mqtt.js';
import { makeTestPki, type TestPki } from './support/pki.js';

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

const tls = { cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem', minVersion: 'TLSv1.3', clientCertificate: 'required' } as const;

async function start(extra: Partial<ProfileInput> = {}) {
  broker = await createBroker({
    profile: {
      version: 1,
      listeners: [
        { name: 'tls', protocol: 'mqtts', port: 0, tls },
        { name: 'wss', protocol: 'wss', port: 0, tls },
      ],
      authentication: { anonymous: false, certificates: { identity: 'cn' } },
      ...extra,
    } as ProfileInput,
    baseDir: pki.dir,
    logger: silent,
  });
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  const url = (name: string) => {
    const a = broker!.addresses()[name]!;
    return `${a.transport}://localhost:${a.port}${a.transport === 'wss' ? '/mqtt' : ''}`;
  };
  return { url, events };
}

const withCert = (cert?: { certPem: string; keyPem: string }) => ({ ca: pki.ca.certPem, rejectUnauthorized: true, ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}) });

/** A raw TLS client from `localAddress` with a valid certificate: did the server ever complete its handshake? */
function handshakeFrom(localAddress: string, cert: { certPem: string; keyPem: string }): Promise<string> {
  const port = broker!.addresses()['tls']!.port;
  return new Promise<string>((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, localAddress, servername: 'localhost', ...withCert(cert) });
    s.once('secureConnect', () => {
      s.destroy();
      resolve('handshake completed');
    });
    s.once('error', () => resolve('closed before the handshake'));
    s.once('close', () => resolve('closed before the handshake'));
    setTimeout(() => {
      s.destroy();
      resolve('held without a handshake');
    }, 1500);
  });
}

describe('failed TLS handshakes', () => {
  for (const listener of ['tls', 'wss']) {
    it(`${listener}: TLS 1.2 only against a TLS 1.3 listener → tls-handshake-failed; no certificate or one from another CA → certificate-rejected`, async () => {
      const { url, events } = await start();
      const refused = () => events.filter((e) => e.type === 'connection.refused');
      const device = pki.client('device-1');

      // a good certificate, but a protocol version the listener does not speak
      // (mqtt.js hands only some TLS options to the WebSocket: maxVersion goes in wsOptions there)
      const old = await tryConnect(url(listener), { ...withCert(device), maxVersion: 'TLSv1.2', wsOptions: { ...withCert(device), maxVersion: 'TLSv1.2' } } as mqtt.IClientOptions);
      expect(isRefusal(old)).toBe(true);
      await waitFor(() => refused().length >= 1, 3000, 'the version refusal');
      expect(refused()[0]).toMatchObject({ control: 'PR.AC-1', reason: 'tls-handshake-failed', listener, remoteAddress: '127.0.0.1', detail: { code: 'ERR_SSL_UNSUPPORTED_PROTOCOL' } });

      const none = await tryConnect(url(listener), withCert());
      expect(isRefusal(none)).toBe(true);
      await waitFor(() => refused().length >= 2, 3000, 'the missing-certificate refusal');
      expect(refused()[1]).toMatchObject({ control: 'PR.AC-1', reason: 'certificate-rejected', detail: { code: 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE' } });

      const rogue = await tryConnect(url(listener), withCert(issueClientCert(createCA({ commonName: 'Rogue CA' }), { commonName: 'device-1' })));
      expect(isRefusal(rogue)).toBe(true);
      await waitFor(() => refused().length >= 3, 3000, 'the rogue-certificate refusal');
      // Node reports a failed verification as "socket hang up": the event names the certificate's fault instead
      expect(refused()[2]).toMatchObject({ control: 'PR.AC-1', reason: 'certificate-rejected', message: expect.stringMatching(/^client certificate rejected: [A-Z_]+$/) });

      const good = await connect(url(listener), { clientId: 'device-1', ...withCert(device) });
      clients.push(good);
      expect(good.connected).toBe(true);
    });
  }

  it('a banned address is refused at TCP accept: no TLS handshake, no certificate check; other addresses connect', async () => {
    const { url, events } = await start();
    const bans = broker!.controls.get<Bans>('bans')!;
    bans.ban({ ip: '127.0.0.2' }, { duration: 60_000, reason: 'test' });
    const device = pki.client('device-1');
    // from the banned address, with a valid certificate: the server never answers its hello
    expect(await handshakeFrom('127.0.0.2', device)).not.toBe('handshake completed');
    await waitFor(() => events.some((e) => e.type === 'connection.refused' && e.reason === 'banned' && e.remoteAddress === '127.0.0.2'), 3000, 'the refusal at accept');
    const refusal = events.find((e) => e.type === 'connection.refused' && e.remoteAddress === '127.0.0.2')!;
    expect(refusal).toMatchObject({ source: 'core', control: 'PR.SS-4', detail: { limit: 'banned' } });
    expect(events.some((e) => e.remoteAddress === '127.0.0.2' && e.reason === 'certificate-rejected')).toBe(false);
    const good = await connect(url('tls'), { clientId: 'device-1', ...withCert(device) });
    clients.push(good);
    expect(good.connected).toBe(true);
  });

  it('an address the access lists refuse is refused at TCP accept too: no handshake; a listed address connects', async () => {
    const { url, events } = await start({ accessLists: { addresses: { allow: ['127.0.0.1/32', '127.0.0.3/32'], deny: ['127.0.0.3/32'] } } });
    const device = pki.client('device-1');
    expect(await handshakeFrom('127.0.0.2', device)).not.toBe('handshake completed'); // not on the allow list
    expect(await handshakeFrom('127.0.0.3', device)).not.toBe('handshake completed'); // on the deny list
    const refusalOf = (ip: string) => events.find((e) => e.type === 'connection.refused' && e.remoteAddress === ip);
    await waitFor(() => refusalOf('127.0.0.2') !== undefined && refusalOf('127.0.0.3') !== undefined, 3000, 'both refusals at accept');
    expect(refusalOf('127.0.0.2')).toMatchObject({ source: 'core', control: 'PR.SS-4', reason: 'not-authorized', detail: { limit: 'addresses.allow' } });
    expect(refusalOf('127.0.0.3')).toMatchObject({ source: 'core', control: 'PR.SS-4', reason: 'not-authorized', detail: { limit: 'addresses.deny' } });
    expect(events.some((e) => e.reason === 'certificate-rejected' || e.reason === 'tls-handshake-failed')).toBe(false);
    const good = await connect(url('tls'), { clientId: 'device-1', ...withCert(device) });
    clients.push(good);
    expect(good.connected).toBe(true);
  });

  it('tlsFailureReason: certificate codes and messages vs the rest', () => {
    expect(tlsFailureReason({ code: 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE', message: 'x' })).toBe('certificate-rejected');
    expect(tlsFailureReason({ code: 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', message: 'x' })).toBe('certificate-rejected');
    expect(tlsFailureReason({ message: 'client certificate rejected: CERT_HAS_EXPIRED' })).toBe('certificate-rejected');
    expect(tlsFailureReason({ code: 'ERR_SSL_NO_SHARED_CIPHER', message: 'no shared cipher' })).toBe('tls-handshake-failed');
    expect(tlsFailureReason({ code: 'ERR_SSL_UNSUPPORTED_PROTOCOL', message: 'unsupported protocol' })).toBe('tls-handshake-failed');
    expect(tlsFailureReason({ code: 'ERR_TLS_HANDSHAKE_TIMEOUT', message: 'TLS handshake timeout' })).toBe('tls-handshake-failed');
    expect(tlsFailureReason({ code: 'ECONNRESET', message: 'socket hang up' })).toBe('tls-handshake-failed');
  });
});
