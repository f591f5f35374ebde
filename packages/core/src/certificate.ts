import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { ClientCertificate } from './contract.js';

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Lower-case hex without leading zeros: one form for Node, node-forge and CRL serials. */
export function normalizeSerial(serial: string): string {
  const s = serial.replace(/[^0-9a-fA-F]/g, '').toLowerCase().replace(/^0+/, '');
  return s === '' ? '0' : s;
}

function splitAltNames(altNames: string | undefined): { dns: string[]; uri: string[]; email: string[] } {
  const out = { dns: [] as string[], uri: [] as string[], email: [] as string[] };
  if (!altNames) return out;
  // Node formats subjectaltname as 'DNS:a, URI:b, email:c'; values with commas are JSON-quoted.
  for (const part of altNames.split(/, (?=[A-Za-z ]+:)/)) {
    const idx = part.indexOf(':');
    if (idx < 0) continue;
    const kind = part.slice(0, idx);
    let value = part.slice(idx + 1);
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        /* keep raw */
      }
    }
    if (kind === 'DNS') out.dns.push(value);
    else if (kind === 'URI') out.uri.push(value);
    else if (kind === 'email') out.email.push(value);
  }
  return out;
}

export function toClientCertificate(raw: PeerCertificate): ClientCertificate {
  const alt = splitAltNames(raw.subjectaltname);
  return {
    subject: raw.subject as unknown as Record<string, string | string[]>,
    commonName: first(raw.subject?.CN as string | string[] | undefined),
    issuer: raw.issuer as unknown as Record<string, string | string[]>,
    serial: normalizeSerial(raw.serialNumber ?? ''),
    fingerprint256: raw.fingerprint256,
    validFrom: new Date(raw.valid_from),
    validTo: new Date(raw.valid_to),
    dnsNames: alt.dns,
    uris: alt.uri,
    emails: alt.email,
    raw,
  };
}

/** The verified peer certificate of a TLS socket, or undefined when none was sent. */
export function peerCertificate(socket: TLSSocket): ClientCertificate | undefined {
  const raw = socket.getPeerCertificate();
  if (!raw || Object.keys(raw).length === 0) return undefined;
  return toClientCertificate(raw);
}
