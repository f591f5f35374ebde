import { createPublicKey } from 'node:crypto';
import { describeKey } from './keys.js';
import { commonNameOf, formatName } from './names.js';
import { fingerprint256, parseCertificate } from './x509.js';

export interface CertificateInfo {
  /** Lowercase hex, leading zero bytes stripped; compare with normalizeSerial(peer.serialNumber). */
  serial: string;
  /** RFC 4514 form, most specific first ("CN=device-1,OU=devices"). */
  subject: string;
  commonName?: string;
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  dnsNames: string[];
  uris: string[];
  emails: string[];
  /** IPv4 dotted quad; IPv6 in RFC 5952 form (e.g. "::1"). */
  ipAddresses: string[];
  /** SHA-256 of the DER, "AB:CD:..." like Node's X509Certificate#fingerprint256. */
  fingerprint256: string;
  /** The certified public key: "RSA 2048", "EC P-256", "ED25519" … ("unknown" when Node cannot read it). */
  publicKey: string;
}

function publicKeyLabel(spkiDer: Buffer): string {
  try {
    return describeKey(createPublicKey({ key: spkiDer, format: 'der', type: 'spki' }));
  } catch {
    return 'unknown';
  }
}

/**
 * Describes a certificate (PEM text or DER bytes). Works for any key type (RSA, EC, Ed25519),
 * so it can also be used on peer certificates this package did not issue.
 */
export function certificateInfo(certPem: string | Buffer): CertificateInfo {
  const c = parseCertificate(certPem);
  const info: CertificateInfo = {
    serial: c.serial,
    subject: formatName(c.subject),
    issuer: formatName(c.issuer),
    notBefore: c.notBefore,
    notAfter: c.notAfter,
    dnsNames: [...c.altNames.dnsNames],
    uris: [...c.altNames.uris],
    emails: [...c.altNames.emails],
    ipAddresses: [...c.altNames.ipAddresses],
    fingerprint256: fingerprint256(c.der),
    publicKey: publicKeyLabel(c.spkiDer),
  };
  const cn = commonNameOf(c.subject);
  if (cn !== undefined) info.commonName = cn;
  return info;
}

/**
 * The issuer (RFC 4514, as in `certificateInfo` and `parseCRL`) and serial of a certificate: the
 * pair a CRL entry names. Cheaper than `certificateInfo` (no fingerprint, no key decoding).
 */
export function certificateIssuerAndSerial(cert: string | Buffer): { issuer: string; serial: string } {
  const c = parseCertificate(cert);
  return { issuer: formatName(c.issuer), serial: c.serial };
}
