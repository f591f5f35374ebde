import { X509Certificate, hash } from 'node:crypto';
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
 * One certificate object per distinct certificate (by the SHA-256 of its DER, lower-case hex) while
 * any connection, device record or event still holds it: a device reconnecting, or a fleet sharing a
 * certificate, does not parse and keep the same certificate again per connection. Entries go when
 * their object is collected, so the map is bounded by the certificates in use.
 */
const shared = new Map<string, WeakRef<ClientCertificate>>();
const forget = new FinalizationRegistry<string>((key) => {
  if (shared.get(key)?.deref() === undefined) shared.delete(key);
});

/** A DER element: its tag and where its contents start and end; undefined past `limit`. */
function element(buf: Buffer, at: number, limit: number): { tag: number; start: number; end: number } | undefined {
  if (at + 2 > limit) return undefined;
  const tag = buf[at] as number;
  let len = buf[at + 1] as number;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || start + n > limit) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[start + i] as number);
    start += n;
  }
  const end = start + len;
  return end > limit ? undefined : { tag, start, end };
}

/**
 * The peer certificate's DER inside a serialized TLS session: OpenSSL's SSL_SESSION is
 * SEQUENCE { version, sslVersion, cipher, sessionId, masterKey, … [3] EXPLICIT Certificate … }
 * (ssl/ssl_asn1.c, the same since OpenSSL 0.9.8, TLS 1.2 and 1.3 alike). A view into `session`.
 */
export function peerDerFromSession(session: Buffer): Buffer | undefined {
  const outer = element(session, 0, session.length);
  if (outer === undefined || outer.tag !== 0x30) return undefined;
  for (let at = outer.start; at < outer.end; ) {
    const e = element(session, at, outer.end);
    if (e === undefined) return undefined;
    if (e.tag === 0xa3) {
      const cert = element(session, e.start, e.end);
      return cert !== undefined && cert.tag === 0x30 && cert.end === e.end ? session.subarray(e.start, e.end) : undefined;
    }
    at = e.end;
  }
  return undefined;
}

/** The verified peer certificate of a TLS socket, or undefined when none was sent. */
export function peerCertificate(socket: TLSSocket): ClientCertificate | undefined {
  // Node's peer-certificate getters copy OpenSSL's X509 with X509_dup, which re-parses it, and
  // OpenSSL 3.0's key decoders make that ~150–200 µs per call (perf: x509_pubkey_ex_d2i_ex). The
  // session's serialization carries the certificate's DER for ~15 µs: a certificate seen before
  // is found by the hash of that DER, and only a new one is parsed.
  let key: string | undefined;
  const session = socket.getSession();
  if (session !== undefined) {
    const der = peerDerFromSession(session);
    if (der !== undefined) key = hash('sha256', der, 'hex');
    session.fill(0); // it holds the session's master secret: not left behind in the heap
    if (key !== undefined) {
      const known = shared.get(key)?.deref();
      if (known !== undefined) return known;
    }
  }
  const x509 = socket.getPeerX509Certificate();
  if (x509 === undefined) return undefined;
  key ??= hash('sha256', x509.raw, 'hex');
  const cert = sharedClientCertificate(x509.toLegacyObject(), x509.fingerprint256);
  shared.set(key, new WeakRef(cert));
  forget.register(cert, key);
  return cert;
}
