import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { ClientCertificate } from './contract.js';

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Lower-case hex, whole bytes, leading zero *bytes* stripped: the same form as @bastion/pki and
 * CRLs use, so serials compare equal whichever side produced them ('0A1B' → '0a1b', '000a' → '0a').
 */
export function normalizeSerial(serial: string): string {
  let hex = serial.replace(/[^0-9a-fA-F]/g, '').toLowerCase();
  if (hex === '') return '00';
  if (hex.length % 2 === 1) hex = `0${hex}`;
  while (hex.length > 2 && hex.startsWith('00')) hex = hex.slice(2);
  return hex;
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
