/**
 * Certificate decoding on raw DER (key-type agnostic: works for RSA, EC and Ed25519 certificates).
 */
import { createHash } from 'node:crypto';
import {
  TAG,
  bitStringBytes,
  children,
  contentOf,
  contextTag,
  decodeOid,
  decodeTime,
  expectTag,
  integerHex,
  rawOf,
  readRoot,
} from './der.js';
import { PkiError } from './errors.js';
import { looksLikePem, pemDecode } from './pem.js';
import { parseGeneralNames, parseName, type AltNames, type Name } from './names.js';
import { normalizeSerial } from './serial.js';

export const OID = {
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  crlNumber: '2.5.29.20',
  crlReason: '2.5.29.21',
  authorityKeyIdentifier: '2.5.29.35',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  ecdsaWithSHA384: '1.2.840.10045.4.3.3',
  rsaEncryption: '1.2.840.113549.1.1.1',
} as const;

export interface Extension {
  critical: boolean;
  /** Content of extnValue (the DER of the extension-specific structure). */
  value: Buffer;
}

export interface ParsedCertificate {
  der: Buffer;
  tbsDer: Buffer;
  serial: string;
  issuer: Name;
  issuerDer: Buffer;
  subject: Name;
  subjectDer: Buffer;
  notBefore: Date;
  notAfter: Date;
  spkiDer: Buffer;
  /** The subjectPublicKey BIT STRING content (e.g. the RSAPublicKey DER). */
  publicKeyBytes: Buffer;
  extensions: Map<string, Extension>;
  altNames: AltNames;
  subjectKeyIdentifier?: Buffer;
  isCA: boolean;
  /** KeyUsage bits that are set (by RFC 5280 bit number), or undefined when the extension is absent. */
  keyUsage?: ReadonlySet<number>;
  signatureOid: string;
  signature: Buffer;
}

/** KeyUsage bit numbers (RFC 5280 §4.2.1.3). */
export const KEY_USAGE = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 } as const;

function badCert(detail: string, cause?: unknown): PkiError {
  return new PkiError(
    'BASTION_ERR_PKI_BAD_CERT',
    `Could not read the certificate (${detail}). Pass a PEM "CERTIFICATE" block or DER bytes of an X.509 certificate.`,
    cause === undefined ? undefined : { cause },
  );
}

/** PEM text (first CERTIFICATE block) or DER bytes -> DER. */
export function certificateDer(input: string | Buffer): Buffer {
  if (typeof input === 'string' || looksLikePem(input)) {
    const der = pemDecode(typeof input === 'string' ? input : input.toString('latin1'), ['CERTIFICATE']);
    if (!der) throw badCert('no PEM "CERTIFICATE" block found');
    return der;
  }
  return input;
}

export function parseCertificate(input: string | Buffer): ParsedCertificate {
  const der = certificateDer(input);
  try {
    return decode(der);
  } catch (err) {
    if (err instanceof PkiError) throw err;
    throw badCert(err instanceof Error ? err.message : String(err), err);
  }
}

function decode(der: Buffer): ParsedCertificate {
  const root = expectTag(readRoot(der), TAG.SEQUENCE, 'certificate');
  const [tbs, sigAlg, sig] = children(der, root);
  expectTag(tbs, TAG.SEQUENCE, 'tbsCertificate');
  expectTag(sigAlg, TAG.SEQUENCE, 'signatureAlgorithm');
  const sigAlgOid = children(der, sigAlg!)[0];
  const signatureOid = decodeOid(der, sigAlgOid!);
  const signature = bitStringBytes(der, sig!);

  const fields = children(der, tbs!);
  let i = 0;
  if (fields[0]?.tag === contextTag(0, true)) i++; // [0] version
  const serialTlv = fields[i++];
  const serial = normalizeSerial(integerHex(der, serialTlv!));
  i++; // signature AlgorithmIdentifier (inside TBS)
  const issuerTlv = expectTag(fields[i++], TAG.SEQUENCE, 'issuer');
  const validity = expectTag(fields[i++], TAG.SEQUENCE, 'validity');
  const subjectTlv = expectTag(fields[i++], TAG.SEQUENCE, 'subject');
  const spki = expectTag(fields[i++], TAG.SEQUENCE, 'subjectPublicKeyInfo');
  const [nb, na] = children(der, validity);
  if (!nb || !na) throw new Error('incomplete validity');

  const spkiParts = children(der, spki);
  const publicKeyBytes = bitStringBytes(der, spkiParts[1]!);

  const extensions = new Map<string, Extension>();
  for (; i < fields.length; i++) {
    const f = fields[i]!;
    if (f.tag !== contextTag(3, true)) continue; // issuer/subject unique ids are skipped
    const [extsSeq] = children(der, f);
    for (const ext of children(der, expectTag(extsSeq, TAG.SEQUENCE, 'extensions'))) {
      const parts = children(der, expectTag(ext, TAG.SEQUENCE, 'extension'));
      const oid = decodeOid(der, parts[0]!);
      let critical = false;
      let valueTlv = parts[1];
      if (valueTlv?.tag === TAG.BOOLEAN) {
        critical = contentOf(der, valueTlv)[0] !== 0;
        valueTlv = parts[2];
      }
      const value = contentOf(der, expectTag(valueTlv, TAG.OCTET_STRING, `extension ${oid} value`));
      if (extensions.has(oid)) throw new Error(`duplicate extension ${oid}`);
      extensions.set(oid, { critical, value });
    }
  }

  const altNames: AltNames = { dnsNames: [], uris: [], emails: [], ipAddresses: [] };
  const san = extensions.get(OID.subjectAltName);
  if (san) Object.assign(altNames, parseGeneralNames(san.value, readRoot(san.value)));

  let subjectKeyIdentifier: Buffer | undefined;
  const ski = extensions.get(OID.subjectKeyIdentifier);
  if (ski) subjectKeyIdentifier = contentOf(ski.value, expectTag(readRoot(ski.value), TAG.OCTET_STRING, 'subjectKeyIdentifier'));

  let isCA = false;
  const bc = extensions.get(OID.basicConstraints);
  if (bc) {
    const seq = expectTag(readRoot(bc.value), TAG.SEQUENCE, 'basicConstraints');
    const first = children(bc.value, seq)[0];
    isCA = first?.tag === TAG.BOOLEAN && contentOf(bc.value, first)[0] !== 0;
  }

  let keyUsage: Set<number> | undefined;
  const ku = extensions.get(OID.keyUsage);
  if (ku) {
    const bits = bitStringBytes(ku.value, readRoot(ku.value));
    keyUsage = new Set();
    for (let bit = 0; bit < bits.length * 8; bit++) {
      if (((bits[bit >> 3] as number) & (0x80 >> (bit & 7))) !== 0) keyUsage.add(bit);
    }
  }

  const parsed: ParsedCertificate = {
    der,
    tbsDer: rawOf(der, tbs!),
    serial,
    issuer: parseName(der, issuerTlv),
    issuerDer: rawOf(der, issuerTlv),
    subject: parseName(der, subjectTlv),
    subjectDer: rawOf(der, subjectTlv),
    notBefore: decodeTime(der, nb),
    notAfter: decodeTime(der, na),
    spkiDer: rawOf(der, spki),
    publicKeyBytes,
    extensions,
    altNames,
    isCA,
    signatureOid,
    signature,
  };
  if (subjectKeyIdentifier) parsed.subjectKeyIdentifier = subjectKeyIdentifier;
  if (keyUsage) parsed.keyUsage = keyUsage;
  return parsed;
}

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits. Used when a CA has no SKI extension. */
export function computeKeyIdentifier(publicKeyBytes: Buffer): Buffer {
  return createHash('sha1').update(publicKeyBytes).digest();
}

/** The key identifier to put in authorityKeyIdentifier of things this certificate signs. */
export function keyIdentifierOf(cert: ParsedCertificate): Buffer {
  return cert.subjectKeyIdentifier ?? computeKeyIdentifier(cert.publicKeyBytes);
}

/** "AB:CD:..." like Node's X509Certificate#fingerprint256. */
export function fingerprint256(der: Buffer): string {
  return createHash('sha256')
    .update(der)
    .digest('hex')
    .toUpperCase()
    .replace(/(..)(?!$)/g, '$1:');
}

