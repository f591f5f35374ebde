/**
 * The cryptographic report (ID.IS-4, cryptographic suites, versions and how they are used): per
 * listener what is configured (TLS floor, cipher list, client certificates, the server certificate's
 * key) and what clients really negotiated — now, per connected client, and since start (bounded
 * counters per listener, protocol and cipher) — with plain findings an operator can act on.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { DEFAULT_CIPHERS } from '@bastion/core';
import type { ClientInfo } from '@bastion/core';
import { certificateView } from './devices.js';
import type { CertificateView } from './devices.js';

/** What the report knows of a listener's configuration (from the profile). */
export interface ListenerCrypto {
  name: string;
  transport: string;
  host: string;
  port: number;
  tls?: {
    minVersion: string;
    /** The profile's cipher list, or undefined for Bastion's built-in list. */
    ciphers: string | undefined;
    clientCertificate: string;
    /** Server certificate file (its first certificate is described). */
    cert: string;
    ca: readonly string[];
    crl: readonly string[];
  };
}

export interface NegotiatedCount {
  listener: string;
  protocol: string;
  cipher: string;
  /** Connections since start. */
  connections: number;
  lastSeen: string;
}

export interface ServerCertificateView {
  subject: string;
  issuer: string;
  serial: string;
  validFrom: string;
  validTo: string;
  fingerprint256: string;
  key: { type: string; bits: number | null; curve: string | null };
}

export interface CryptoReport {
  generatedAt: string;
  runtime: { node: string; openssl: string | null };
  listeners: Array<{
    name: string;
    transport: string;
    host: string;
    port: number;
    encrypted: boolean;
    tls: {
      minVersion: string;
      maxVersion: 'TLSv1.3';
      ciphers: string[];
      cipherSource: 'profile' | 'built-in';
      clientCertificate: string;
      revocationLists: number;
      certificate: ServerCertificateView | { error: string };
    } | null;
    /** Connected clients now, by negotiated protocol and cipher. */
    now: { clients: number; protocols: Record<string, number>; ciphers: Record<string, number> };
  }>;
  clients: Array<{
    clientId: string;
    identity: string | null;
    listener: string;
    transport: string;
    protocol: string | null;
    cipher: string | null;
    certificate: Pick<CertificateView, 'commonName' | 'serial' | 'validTo' | 'key'> | null;
  }>;
  /** Since start: every (listener, protocol, cipher) negotiated, with counts. */
  negotiated: NegotiatedCount[];
  findings: Array<{ severity: 'info' | 'warning'; listener?: string; clientId?: string; message: string }>;
}

export const MAX_NEGOTIATED = 256;
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** Counters of negotiated (listener, protocol, cipher), bounded: a new combination past the bound is not kept. */
export class Negotiated {
  readonly #counts = new Map<string, { listener: string; protocol: string; cipher: string; connections: number; lastSeen: number }>();

  record(c: ClientInfo, now: number): void {
    if (c.tls === undefined) return;
    const protocol = c.tls.protocol ?? 'unknown';
    const key = `${c.listener}\u0000${protocol}\u0000${c.tls.cipher}`;
    let e = this.#counts.get(key);
    if (e === undefined) {
      if (this.#counts.size >= MAX_NEGOTIATED) return;
      e = { listener: c.listener, protocol, cipher: c.tls.cipher, connections: 0, lastSeen: now };
      this.#counts.set(key, e);
    }
    e.connections++;
    e.lastSeen = now;
  }

  list(): NegotiatedCount[] {
    return [...this.#counts.values()]
      .map((e) => ({ ...e, lastSeen: new Date(e.lastSeen).toISOString() }))
      .sort((a, b) => (a.listener + a.protocol + a.cipher < b.listener + b.protocol + b.cipher ? -1 : 1));
  }
}

/**
 * A suite name (TLS 1.3 `TLS_…` or OpenSSL `ECDHE-RSA-…`) without AEAD or without forward secrecy.
 * OpenSSL keywords (`HIGH`, `!aNULL`) are not suite names and are not judged.
 */
export function weakSuite(suite: string): boolean {
  if (!suite.startsWith('TLS_') && !suite.includes('-')) return false;
  if (/^[!+-]/.test(suite)) return false;
  const aead = /GCM|CHACHA20|CCM/.test(suite);
  const forwardSecret = suite.startsWith('TLS_') || /^(ECDHE|DHE)-/.test(suite);
  return !aead || !forwardSecret;
}

async function serverCertificate(file: string): Promise<ServerCertificateView | { error: string }> {
  try {
    const cert = new X509Certificate(await readFile(file));
    const details = cert.publicKey.asymmetricKeyDetails ?? {};
    const type = cert.publicKey.asymmetricKeyType ?? 'unknown';
    return {
      subject: cert.subject.replace(/\n/g, ', '),
      issuer: cert.issuer.replace(/\n/g, ', '),
      serial: cert.serialNumber.toLowerCase(),
      validFrom: new Date(cert.validFrom).toISOString(),
      validTo: new Date(cert.validTo).toISOString(),
      fingerprint256: cert.fingerprint256,
      key: { type: type === 'rsa' || type === 'rsa-pss' ? 'RSA' : type === 'ec' ? 'EC' : type, bits: details.modulusLength ?? null, curve: details.namedCurve ?? null },
    };
  } catch (err) {
    return { error: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
}

export async function cryptoReport(listeners: readonly ListenerCrypto[], clients: Iterable<ClientInfo>, negotiated: Negotiated): Promise<CryptoReport> {
  const findings: CryptoReport['findings'] = [];
  const live = [...clients];
  const out: CryptoReport['listeners'] = [];
  for (const l of listeners) {
    const mine = live.filter((c) => c.listener === l.name);
    const protocols: Record<string, number> = {};
    const ciphers: Record<string, number> = {};
    for (const c of mine) {
      if (!c.tls) continue;
      const p = c.tls.protocol ?? 'unknown';
      protocols[p] = (protocols[p] ?? 0) + 1;
      ciphers[c.tls.cipher] = (ciphers[c.tls.cipher] ?? 0) + 1;
    }
    let tls: CryptoReport['listeners'][number]['tls'] = null;
    if (l.tls) {
      const list = (l.tls.ciphers ?? DEFAULT_CIPHERS).split(':').filter((s) => s !== '');
      const certificate = await serverCertificate(l.tls.cert);
      tls = {
        minVersion: l.tls.minVersion,
        maxVersion: 'TLSv1.3',
        ciphers: list,
        cipherSource: l.tls.ciphers === undefined ? 'built-in' : 'profile',
        clientCertificate: l.tls.clientCertificate,
        revocationLists: l.tls.crl.length,
        certificate,
      };
      if (l.tls.minVersion !== 'TLSv1.3') findings.push({ severity: 'info', listener: l.name, message: `accepts ${l.tls.minVersion}; set tls.minVersion: TLSv1.3 where every client supports it` });
      const weak = list.filter(weakSuite);
      if (weak.length > 0) findings.push({ severity: 'warning', listener: l.name, message: `cipher list has suites without forward secrecy or AEAD: ${weak.join(', ')}` });
      if ('key' in certificate && certificate.key.type === 'RSA' && (certificate.key.bits ?? 0) < 2048) {
        findings.push({ severity: 'warning', listener: l.name, message: `server key is RSA ${certificate.key.bits ?? '?'} bits; use 2048 or more, or EC P-256` });
      }
      if ('validTo' in certificate && new Date(certificate.validTo).getTime() < Date.now() + 30 * 86_400_000) {
        findings.push({ severity: 'warning', listener: l.name, message: `server certificate expires ${certificate.validTo}` });
      }
    } else {
      findings.push({
        severity: LOOPBACK.has(l.host) ? 'info' : 'warning',
        listener: l.name,
        message: LOOPBACK.has(l.host) ? `${l.transport} on loopback: no encryption (local clients only)` : `${l.transport} on ${l.host}: traffic and passwords cross the network unencrypted`,
      });
    }
    out.push({ name: l.name, transport: l.transport, host: l.host, port: l.port, encrypted: l.tls !== undefined, tls, now: { clients: mine.length, protocols, ciphers } });
  }
  const rows: CryptoReport['clients'] = live
    .map((c) => {
      const cert = c.certificate ? certificateView(c.certificate) : undefined;
      if (c.tls?.protocol && c.tls.protocol !== 'TLSv1.3') findings.push({ severity: 'info', clientId: c.id, listener: c.listener, message: `client ${c.id} negotiated ${c.tls.protocol}` });
      return {
        clientId: c.id,
        identity: c.username ?? null,
        listener: c.listener,
        transport: c.transport,
        protocol: c.tls?.protocol ?? null,
        cipher: c.tls?.cipher ?? null,
        certificate: cert ? { commonName: cert.commonName, serial: cert.serial, validTo: cert.validTo, key: cert.key } : null,
      };
    })
    .sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0));
  return {
    generatedAt: new Date().toISOString(),
    runtime: { node: process.versions.node, openssl: process.versions.openssl ?? null },
    listeners: out,
    clients: rows,
    negotiated: negotiated.list(),
    findings,
  };
}
