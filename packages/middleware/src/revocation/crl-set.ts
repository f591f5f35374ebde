/**
 * Turning CRL files into trusted revocation data: decode (PEM or DER), find the configured CA whose
 * key signed it (pki's verifyCRL: signature, issuer name, cRLSign, authority key id), and refuse a
 * CRL older than the one in force for that CA (a replayed CRL would silently un-revoke).
 */
import { certificateInfo, parseCRL, verifyCRL, type RevocationReason } from '@bastion/pki';

export interface CaCertificate {
  readonly file: string;
  readonly pem: string;
  /** RFC 4514 subject, the form CRL issuers and certificate issuers are compared in. */
  readonly subject: string;
}

export interface RevokedSerial {
  readonly revokedAt: Date;
  readonly reason: RevocationReason | undefined;
}

/** One CRL file, verified and in force. */
export interface LoadedCrl {
  readonly file: string;
  readonly digest: string;
  readonly issuer: string;
  /** The CA file whose certificate verified it. */
  readonly caFile: string;
  readonly crlNumber: number | undefined;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  /** By serial (lower-case hex, no leading zero bytes: pki's normalizeSerial). */
  readonly revoked: ReadonlyMap<string, RevokedSerial>;
}

export type RejectionKind = 'unreadable' | 'malformed' | 'unverified' | 'rollback';

export interface CrlRejection {
  readonly file: string;
  readonly kind: RejectionKind;
  readonly message: string;
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Every certificate of a PEM bundle, with its subject. Throws when the file holds none. */
export function caCertificatesOf(file: string, text: string): CaCertificate[] {
  const out: CaCertificate[] = [];
  for (const m of text.matchAll(CERT_BLOCK)) {
    const pem = `${m[0]}\n`;
    out.push({ file, pem, subject: certificateInfo(pem).subject });
  }
  if (out.length === 0) throw new Error(`${file} holds no PEM certificate`);
  return out;
}

/**
 * Verifies one CRL file's bytes against the CAs. `current` is the CRL in force for each issuer, for
 * the rollback check: a CRL whose number is lower than the one in force is refused.
 */
export function verifyCrlFile(
  file: string,
  bytes: Buffer,
  digest: string,
  cas: readonly CaCertificate[],
  current: ReadonlyMap<string, LoadedCrl>,
): LoadedCrl | CrlRejection {
  let parsed: ReturnType<typeof parseCRL>;
  try {
    parsed = parseCRL(bytes);
  } catch (err) {
    return { file, kind: 'malformed', message: `${file} is not a readable CRL: ${(err as Error).message}` };
  }
  const signer = cas.find((ca) => ca.subject === parsed.issuer && safeVerify(bytes, ca.pem));
  if (!signer) {
    const sameName = cas.some((ca) => ca.subject === parsed.issuer);
    return {
      file,
      kind: 'unverified',
      message: sameName
        ? `${file}: the CRL names "${parsed.issuer}" as issuer but its signature does not verify with that CA's key (forged, or signed by another CA of the same name)`
        : `${file}: the CRL is issued by "${parsed.issuer}", which is none of the configured CAs (${cas.map((c) => `"${c.subject}"`).join(', ') || 'none'})`,
    };
  }
  const inForce = current.get(parsed.issuer);
  if (inForce && inForce.crlNumber !== undefined && parsed.crlNumber !== undefined && parsed.crlNumber < inForce.crlNumber) {
    return {
      file,
      kind: 'rollback',
      message: `${file}: CRL number ${parsed.crlNumber} is older than the CRL in force for "${parsed.issuer}" (number ${inForce.crlNumber}); an older CRL would un-revoke certificates, so it is refused`,
    };
  }
  const revoked = new Map<string, RevokedSerial>();
  for (const e of parsed.revoked) {
    // removeFromCRL only has meaning in delta CRLs, which Bastion does not read
    if (e.reason !== 'removeFromCRL') revoked.set(e.serial, { revokedAt: e.revokedAt, reason: e.reason });
  }
  return {
    file,
    digest,
    issuer: parsed.issuer,
    caFile: signer.file,
    crlNumber: parsed.crlNumber,
    thisUpdate: parsed.thisUpdate,
    nextUpdate: parsed.nextUpdate,
    revoked,
  };
}

function safeVerify(crl: Buffer, caPem: string): boolean {
  try {
    return verifyCRL(crl, caPem);
  } catch {
    return false;
  }
}

export function isRejection(v: LoadedCrl | CrlRejection): v is CrlRejection {
  return (v as CrlRejection).kind !== undefined;
}

/** The CRL in force per issuer: of several files for one CA, the newest (CRL number, then thisUpdate). */
export function indexByIssuer(loaded: Iterable<LoadedCrl>): Map<string, LoadedCrl> {
  const out = new Map<string, LoadedCrl>();
  for (const crl of loaded) {
    const prev = out.get(crl.issuer);
    if (!prev || newer(crl, prev)) out.set(crl.issuer, crl);
  }
  return out;
}

function newer(a: LoadedCrl, b: LoadedCrl): boolean {
  if (a.crlNumber !== undefined && b.crlNumber !== undefined && a.crlNumber !== b.crlNumber) return a.crlNumber > b.crlNumber;
  return a.thisUpdate.getTime() > b.thisUpdate.getTime();
}
