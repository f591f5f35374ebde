/**
 * X.509 v2 certificate revocation lists (RFC 5280 §5): creation, parsing, verification.
 * node-forge has no CRL support, so the structure is built with its ASN.1 encoder and
 * parsed with the strict DER reader in der.ts.
 */
import { createPublicKey, verify } from 'node:crypto';
import forge from 'node-forge';
import { openCA } from './ca.js';
import {
  DerError,
  TAG,
  bitStringBytes,
  children,
  contentOf,
  contextTag,
  decodeOid,
  decodeTime,
  encodeOid,
  encodeSigned,
  encodeTime,
  encodeUnsignedInteger,
  expectTag,
  isTime,
  rawOf,
  readRoot,
  toDerBuffer,
  truncateToSeconds,
  unsignedBigInt,
  fromDerBuffer,
  type Tlv,
} from './der.js';
import { PkiError } from './errors.js';
import { formatName, parseName } from './names.js';
import { looksLikePem, pemDecode, pemEncode } from './pem.js';
import { normalizeSerial } from './serial.js';
import { algorithmIdentifier, signatureAlgorithmFor, signWith } from './sign.js';
import type { CertificateAuthority } from './types.js';
import { KEY_USAGE, OID, parseCertificate, type ParsedCertificate } from './x509.js';

const { asn1 } = forge;

export type RevocationReason =
  | 'unspecified'
  | 'keyCompromise'
  | 'cACompromise'
  | 'affiliationChanged'
  | 'superseded'
  | 'cessationOfOperation'
  | 'certificateHold'
  | 'removeFromCRL'
  | 'privilegeWithdrawn'
  | 'aACompromise';

/** CRLReason codes (RFC 5280 §5.3.1; 7 is unused). */
export const REVOCATION_REASON_CODES: Readonly<Record<RevocationReason, number>> = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  removeFromCRL: 8,
  privilegeWithdrawn: 9,
  aACompromise: 10,
};

const REASON_BY_CODE = new Map<number, RevocationReason>(
  Object.entries(REVOCATION_REASON_CODES).map(([name, code]) => [code, name as RevocationReason]),
);

export interface RevokedEntry {
  /** Hex serial; normalized (lowercase, no leading zero bytes) when read back. */
  serial: string;
  revokedAt: Date;
  reason?: RevocationReason;
}

export interface CreateCRLOptions {
  /** Default: now. */
  thisUpdate?: Date;
  /** Default: thisUpdate + 7 days. */
  nextUpdate?: Date;
  /** Monotonically increasing CRL number. Default: thisUpdate in seconds since the epoch. */
  crlNumber?: number;
}

export interface ParsedCRL {
  issuer: string;
  thisUpdate: Date;
  nextUpdate?: Date;
  crlNumber?: number;
  revoked: RevokedEntry[];
  tbsDer: Buffer;
  signature: Buffer;
  signatureOid: string;
}

export const CRL_DEFAULT_LIFETIME_MS = 7 * 24 * 60 * 60 * 1000;

/** Signature algorithms verifyCRL accepts (CRLs from other CAs may be ECDSA-signed). */
const SIGNATURE_ALGORITHMS: Readonly<Record<string, { digest: string; keyType: string }>> = {
  [OID.sha256WithRSAEncryption]: { digest: 'sha256', keyType: 'rsa' },
  [OID.sha384WithRSAEncryption]: { digest: 'sha384', keyType: 'rsa' },
  [OID.sha512WithRSAEncryption]: { digest: 'sha512', keyType: 'rsa' },
  '1.2.840.10045.4.3.2': { digest: 'sha256', keyType: 'ec' },
  '1.2.840.10045.4.3.3': { digest: 'sha384', keyType: 'ec' },
  '1.2.840.10045.4.3.4': { digest: 'sha512', keyType: 'ec' },
};

function badInput(message: string): PkiError {
  return new PkiError('BASTION_ERR_PKI_BAD_INPUT', message);
}

function extension(oid: string, value: forge.asn1.Asn1): forge.asn1.Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    encodeOid(oid),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, asn1.toDer(value).getBytes()),
  ]);
}

function checkDate(d: unknown, what: string): Date {
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw badInput(`${what} must be a valid Date.`);
  return truncateToSeconds(d);
}

function revokedEntry(entry: RevokedEntry): forge.asn1.Asn1 {
  const serial = BigInt(`0x${normalizeSerial(entry.serial)}`);
  const parts: forge.asn1.Asn1[] = [encodeUnsignedInteger(serial), encodeTime(checkDate(entry.revokedAt, `revokedAt of ${entry.serial}`))];
  if (entry.reason !== undefined) {
    const code = REVOCATION_REASON_CODES[entry.reason];
    if (code === undefined) {
      throw badInput(`Unknown revocation reason ${JSON.stringify(entry.reason)}. Use one of: ${Object.keys(REVOCATION_REASON_CODES).join(', ')}.`);
    }
    parts.push(
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
        extension(OID.crlReason, encodeUnsignedInteger(BigInt(code), asn1.Type.ENUMERATED)),
      ]),
    );
  }
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, parts);
}

/**
 * Creates a PEM "X509 CRL" (v2) signed by the CA (sha256WithRSAEncryption, or ECDSA for an EC CA), with the
 * CRL number and authority key identifier extensions and a reasonCode entry extension
 * for every entry that has a reason. Duplicate serials are listed once (first wins).
 */
export function createCRL(ca: CertificateAuthority, revoked: RevokedEntry[], opts: CreateCRLOptions = {}): string {
  const signer = openCA(ca);
  if (signer.cert.keyUsage && !signer.cert.keyUsage.has(KEY_USAGE.cRLSign)) {
    throw new PkiError('BASTION_ERR_PKI_BAD_CA', 'The CA certificate does not allow CRL signing (keyUsage lacks cRLSign). Re-create the CA with createCA().');
  }
  const thisUpdate = checkDate(opts.thisUpdate ?? new Date(), 'thisUpdate');
  const nextUpdate = checkDate(opts.nextUpdate ?? new Date(thisUpdate.getTime() + CRL_DEFAULT_LIFETIME_MS), 'nextUpdate');
  if (nextUpdate.getTime() <= thisUpdate.getTime()) throw badInput('nextUpdate must be later than thisUpdate.');
  const crlNumber = opts.crlNumber ?? Math.floor(thisUpdate.getTime() / 1000);
  if (!Number.isSafeInteger(crlNumber) || crlNumber < 0) throw badInput('crlNumber must be a non-negative integer.');
  if (!Array.isArray(revoked)) throw badInput('revoked must be an array of { serial, revokedAt, reason? }.');

  const seen = new Set<string>();
  const entries: forge.asn1.Asn1[] = [];
  for (const entry of revoked) {
    const key = normalizeSerial(entry.serial);
    if (seen.has(key)) continue;
    seen.add(key);
    entries.push(revokedEntry(entry));
  }

  const alg = signatureAlgorithmFor(signer.key);
  const tbsFields: forge.asn1.Asn1[] = [
    encodeUnsignedInteger(1n), // v2
    algorithmIdentifier(alg.oid),
    fromDerBuffer(signer.cert.subjectDer), // issuer, byte-identical to the CA's subject
    encodeTime(thisUpdate),
    encodeTime(nextUpdate),
  ];
  if (entries.length > 0) tbsFields.push(asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, entries));
  const authorityKeyIdentifier = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, signer.keyIdentifier.toString('binary')),
  ]);
  tbsFields.push(
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
        extension(OID.authorityKeyIdentifier, authorityKeyIdentifier),
        extension(OID.crlNumber, encodeUnsignedInteger(BigInt(crlNumber))),
      ]),
    ]),
  );
  const tbsDer = toDerBuffer(asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, tbsFields));
  const signature = signWith(alg, tbsDer, signer.key);
  const der = encodeSigned(tbsDer, toDerBuffer(algorithmIdentifier(alg.oid)), signature);
  return pemEncode('X509 CRL', der);
}

interface DecodedCRL extends ParsedCRL {
  issuerDer: Buffer;
  tbsSignatureOid: string;
  authorityKeyIdentifier?: Buffer;
}

function badCrl(detail: string, cause?: unknown): PkiError {
  return new PkiError(
    'BASTION_ERR_PKI_BAD_CRL',
    `Could not read the CRL (${detail}). Pass a PEM "X509 CRL" block or DER bytes; regenerate it with createCRL() if it is damaged.`,
    cause === undefined ? undefined : { cause },
  );
}

function crlDer(input: string | Buffer): Buffer {
  if (typeof input === 'string' || looksLikePem(input)) {
    const der = pemDecode(typeof input === 'string' ? input : input.toString('latin1'), ['X509 CRL']);
    if (!der) throw badCrl('no PEM "X509 CRL" block found');
    return der;
  }
  if (!Buffer.isBuffer(input)) throw badCrl('expected a string or a Buffer');
  return input;
}

function decodeExtensions(buf: Buffer, seq: Tlv[]): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const ext of seq) {
    const parts = children(buf, expectTag(ext, TAG.SEQUENCE, 'extension'));
    const oid = decodeOid(buf, parts[0]!);
    const valueTlv = parts[1]?.tag === TAG.BOOLEAN ? parts[2] : parts[1];
    if (out.has(oid)) throw new DerError(`duplicate extension ${oid}`);
    out.set(oid, contentOf(buf, expectTag(valueTlv, TAG.OCTET_STRING, `extension ${oid} value`)));
  }
  return out;
}

function decodeCRL(input: string | Buffer): DecodedCRL {
  const der = crlDer(input);
  try {
    const root = expectTag(readRoot(der), TAG.SEQUENCE, 'CertificateList');
    const [tbs, sigAlg, sig] = children(der, root);
    expectTag(tbs, TAG.SEQUENCE, 'tbsCertList');
    const signatureOid = decodeOid(der, children(der, expectTag(sigAlg, TAG.SEQUENCE, 'signatureAlgorithm'))[0]!);
    const signature = bitStringBytes(der, sig!);

    const fields = children(der, tbs!);
    let i = 0;
    if (fields[0]?.tag === TAG.INTEGER) {
      const version = unsignedBigInt(contentOf(der, fields[0]));
      if (version !== 1n) throw new DerError(`unsupported CRL version ${version + 1n}`);
      i++;
    }
    const tbsSignatureOid = decodeOid(der, children(der, expectTag(fields[i++], TAG.SEQUENCE, 'signature'))[0]!);
    const issuerTlv = expectTag(fields[i++], TAG.SEQUENCE, 'issuer');
    const thisUpdateTlv = fields[i++];
    if (!isTime(thisUpdateTlv)) throw new DerError('missing thisUpdate');
    const out: DecodedCRL = {
      issuer: formatName(parseName(der, issuerTlv)),
      issuerDer: rawOf(der, issuerTlv),
      thisUpdate: decodeTime(der, thisUpdateTlv!),
      revoked: [],
      tbsDer: rawOf(der, tbs!),
      signature,
      signatureOid,
      tbsSignatureOid,
    };
    if (isTime(fields[i])) out.nextUpdate = decodeTime(der, fields[i++]!);
    if (fields[i]?.tag === TAG.SEQUENCE) {
      for (const entry of children(der, fields[i++]!)) {
        const parts = children(der, expectTag(entry, TAG.SEQUENCE, 'revoked certificate'));
        const serialTlv = expectTag(parts[0], TAG.INTEGER, 'userCertificate');
        const dateTlv = parts[1];
        if (!isTime(dateTlv)) throw new DerError('missing revocationDate');
        const item: RevokedEntry = {
          serial: normalizeSerial(contentOf(der, serialTlv).toString('hex')),
          revokedAt: decodeTime(der, dateTlv!),
        };
        if (parts[2]) {
          const exts = decodeExtensions(der, children(der, expectTag(parts[2], TAG.SEQUENCE, 'crlEntryExtensions')));
          const reason = exts.get(OID.crlReason);
          if (reason) {
            const code = Number(unsignedBigInt(contentOf(reason, expectTag(readRoot(reason), TAG.ENUMERATED, 'reasonCode'))));
            const name = REASON_BY_CODE.get(code);
            if (name !== undefined) item.reason = name;
          }
        }
        out.revoked.push(item);
      }
    }
    if (fields[i]?.tag === contextTag(0, true)) {
      const [extSeq] = children(der, fields[i++]!);
      const exts = decodeExtensions(der, children(der, expectTag(extSeq, TAG.SEQUENCE, 'crlExtensions')));
      const num = exts.get(OID.crlNumber);
      if (num) {
        const n = unsignedBigInt(contentOf(num, expectTag(readRoot(num), TAG.INTEGER, 'cRLNumber')));
        if (n <= BigInt(Number.MAX_SAFE_INTEGER)) out.crlNumber = Number(n);
      }
      const aki = exts.get(OID.authorityKeyIdentifier);
      if (aki) {
        const keyId = children(aki, expectTag(readRoot(aki), TAG.SEQUENCE, 'authorityKeyIdentifier')).find(
          (t) => t.tag === contextTag(0, false),
        );
        if (keyId) out.authorityKeyIdentifier = contentOf(aki, keyId);
      }
    }
    if (i !== fields.length) throw new DerError('unexpected fields in tbsCertList');
    return out;
  } catch (err) {
    if (err instanceof PkiError) throw err;
    throw badCrl(err instanceof Error ? err.message : String(err), err);
  }
}

/** The DER bytes of a CRL given as PEM or DER (checked to decode as a CRL). */
export function crlToDer(pemOrDer: string | Buffer): Buffer {
  decodeCRL(pemOrDer);
  return Buffer.from(crlDer(pemOrDer));
}

/** Decodes a CRL (PEM or DER). Serials are normalized (see normalizeSerial). */
export function parseCRL(pemOrDer: string | Buffer): ParsedCRL {
  const d = decodeCRL(pemOrDer);
  const out: ParsedCRL = {
    issuer: d.issuer,
    thisUpdate: d.thisUpdate,
    revoked: d.revoked,
    tbsDer: Buffer.from(d.tbsDer),
    signature: Buffer.from(d.signature),
    signatureOid: d.signatureOid,
  };
  if (d.nextUpdate) out.nextUpdate = d.nextUpdate;
  if (d.crlNumber !== undefined) out.crlNumber = d.crlNumber;
  return out;
}

/**
 * True when the CRL was signed by the key of `caCertPem` (RSA or ECDSA with SHA-256/384/512) and its
 * issuer is byte-for-byte the CA's subject. Also false when the CA certificate's keyUsage
 * forbids CRL signing or the CRL's authority key identifier names a different key.
 * Validity times are NOT checked: compare `parseCRL(crl).nextUpdate` with the clock yourself.
 * Throws PkiError (BAD_CRL / BAD_CERT) when either input cannot be decoded at all.
 */
export function verifyCRL(crl: string | Buffer, caCertPem: string): boolean {
  const d = decodeCRL(crl);
  const ca: ParsedCertificate = parseCertificate(caCertPem);
  if (!d.issuerDer.equals(ca.subjectDer)) return false;
  if (d.signatureOid !== d.tbsSignatureOid) return false;
  const algorithm = SIGNATURE_ALGORITHMS[d.signatureOid];
  if (algorithm === undefined) return false;
  if (ca.keyUsage && !ca.keyUsage.has(KEY_USAGE.cRLSign)) return false;
  if (d.authorityKeyIdentifier && ca.subjectKeyIdentifier && !d.authorityKeyIdentifier.equals(ca.subjectKeyIdentifier)) return false;
  try {
    const key = createPublicKey({ key: ca.spkiDer, format: 'der', type: 'spki' });
    if (key.asymmetricKeyType !== algorithm.keyType) return false;
    return verify(algorithm.digest, d.tbsDer, key, d.signature);
  } catch {
    return false;
  }
}
