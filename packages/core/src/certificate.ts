import { X509Certificate } from 'node:crypto';
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

/** One frozen empty list for the (usual) certificate without DNS, URI or e-mail names. */
const NONE: readonly string[] = Object.freeze([]);

/**
 * What `raw` is rebuilt from: the DER, and the last PeerCertificate built, held weakly. Kept behind
 * a non-enumerable symbol so every certificate shares one getter and one hidden class.
 */
interface RawSource {
  readonly der: Buffer;
  last: WeakRef<PeerCertificate>;
}
const SOURCE = Symbol('bastion.certificate.source');

function freezeRaw(raw: PeerCertificate, subject: object, issuer: object): PeerCertificate {
  // the same subject/issuer objects as the certificate's own fields, as when raw was kept
  const r = raw as { subject: object; issuer: object };
  r.subject = subject;
  r.issuer = issuer;
  return Object.freeze(raw);
}

/**
 * `raw` on demand: the object Node built at the handshake while anything still holds it, else the
 * same fields again from the DER (`X509Certificate#toLegacyObject()` is what `getPeerCertificate()`
 * returns). Nobody can tell the two apart — raw is frozen, and a copy is only made once no
 * reference to the previous one is left — but idle connections no longer carry ~1.5 KB of strings,
 * buffers and objects (fingerprints, public key, extended key usage …) that nothing reads after
 * CONNECT.
 */
const RAW: PropertyDescriptor = Object.freeze({
  enumerable: true,
  configurable: false,
  get(this: ClientCertificate & { [SOURCE]: RawSource }): PeerCertificate {
    const src = this[SOURCE];
    let raw = src.last.deref();
    if (raw === undefined) {
      raw = freezeRaw(new X509Certificate(src.der).toLegacyObject(), this.subject, this.issuer);
      src.last = new WeakRef(raw);
    }
    return raw;
  },
});

/**
 * Issuer names, one frozen object each: a fleet's certificates come from a handful of CAs, so the
 * certificates of distinct devices share it. Bounded (the map stops growing, it is not needed for
 * correctness).
 */
const issuers = new Map<string, Readonly<Record<string, string | string[]>>>();
const MAX_ISSUERS = 1024;

function sharedIssuer(issuer: PeerCertificate['issuer']): Readonly<Record<string, string | string[]>> {
  const key = JSON.stringify(issuer);
  const known = issuers.get(key);
  if (known !== undefined) return known;
  const frozen = Object.freeze(issuer) as unknown as Readonly<Record<string, string | string[]>>;
  if (issuers.size < MAX_ISSUERS) issuers.set(key, frozen);
  return frozen;
}

/** The certificate as a connection keeps it: the fields above, `raw` rebuilt when asked for. */
function sharedClientCertificate(raw: PeerCertificate, fingerprint256: string): ClientCertificate {
  const alt = splitAltNames(raw.subjectaltname);
  const subject = Object.freeze(raw.subject) as unknown as Record<string, string | string[]>;
  const issuer = sharedIssuer(raw.issuer);
  const cert = {
    subject,
    commonName: first(raw.subject?.CN as string | string[] | undefined),
    issuer,
    serial: normalizeSerial(raw.serialNumber ?? ''),
    fingerprint256, // the cache key's string (the same text as raw.fingerprint256): one copy, not two
    validFrom: new Date(raw.valid_from),
    validTo: new Date(raw.valid_to),
    dnsNames: alt.dns.length > 0 ? Object.freeze(alt.dns) : NONE,
    uris: alt.uri.length > 0 ? Object.freeze(alt.uri) : NONE,
    emails: alt.email.length > 0 ? Object.freeze(alt.email) : NONE,
  };
  Object.defineProperty(cert, SOURCE, { value: { der: raw.raw, last: new WeakRef(freezeRaw(raw, subject, issuer)) } satisfies RawSource });
  Object.defineProperty(cert, 'raw', RAW);
  return Object.freeze(cert) as unknown as ClientCertificate;
}

/**
 * One certificate object per distinct certificate (by SHA-256 fingerprint) while any connection,
 * device record or event still holds it: a device reconnecting, or a fleet sharing a certificate,
 * does not parse and keep the same certificate again per connection. Entries go when their object
 * is collected, so the map is bounded by the certificates in use.
 */
const shared = new Map<string, WeakRef<ClientCertificate>>();
const forget = new FinalizationRegistry<string>((fingerprint) => {
  if (shared.get(fingerprint)?.deref() === undefined) shared.delete(fingerprint);
});

/** The verified peer certificate of a TLS socket, or undefined when none was sent. */
export function peerCertificate(socket: TLSSocket): ClientCertificate | undefined {
  // the X509 OpenSSL already holds for the session; its fingerprint is computed natively, so a
  // certificate seen before costs no legacy object at all
  const x509 = socket.getPeerX509Certificate();
  if (x509 === undefined) return undefined;
  const fingerprint = x509.fingerprint256;
  const known = shared.get(fingerprint)?.deref();
  if (known !== undefined) return known;
  const cert = sharedClientCertificate(x509.toLegacyObject(), fingerprint);
  shared.set(fingerprint, new WeakRef(cert));
  forget.register(cert, fingerprint);
  return cert;
}
