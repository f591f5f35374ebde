/**
 * Builds an X.509 v3 certificate with node-forge and signs it with node:crypto:
 * sha256WithRSAEncryption for RSA signers, ecdsa-with-SHA256/SHA384 for EC P-256/P-384 signers.
 *
 * node-forge can only encode RSA public keys, so forge gets a placeholder key and the real
 * SubjectPublicKeyInfo (RSA or EC, from node:crypto) replaces it in the TBS bytes; the key
 * identifiers are computed here (RFC 5280 method 1) rather than by forge from that placeholder.
 */
import { createHash, sign, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { bitStringBytes, children, encodeOid, encodeSigned, fromDerBuffer, readRoot, toDerBuffer } from './der.js';
import { PkiError } from './errors.js';
import { pemEncode } from './pem.js';
import { generateSerial } from './serial.js';
import type { Issued } from './types.js';
import { OID, parseCertificate } from './x509.js';
import { formatName } from './names.js';

const { asn1 } = forge;

/** Upper bounds from RFC 5280 Appendix A. */
const UB: Readonly<Record<string, number>> = { CN: 64, O: 64, OU: 64 };

export interface SubjectAttribute {
  shortName: 'CN' | 'O' | 'OU';
  value: string;
}

export interface CertificateTemplate {
  subject: SubjectAttribute[];
  /** DER SubjectPublicKeyInfo of the certified key (RSA or EC). */
  spkiDer: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** node-forge extension objects; subjectKeyIdentifier and authorityKeyIdentifier are added here. */
  extensions: object[];
}

export interface Signer {
  key: KeyObject;
  /** DER of the issuer's subject Name, copied byte-for-byte into the issuer field. Absent: self-signed. */
  issuerNameDer?: Buffer;
  /** The issuer's key identifier (its SKI). Absent: self-signed (uses the certificate's own SKI). */
  keyIdentifier?: Buffer;
}

interface ForgePkiInternals {
  getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1;
}

function subjectFields(subject: SubjectAttribute[]): forge.pki.CertificateField[] {
  return subject.map(({ shortName, value }) => {
    if (typeof value !== 'string' || value.length === 0) {
      throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', `Subject ${shortName} must be a non-empty string.`);
    }
    const max = UB[shortName] ?? 64;
    if ([...value].length > max) {
      throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', `Subject ${shortName} is longer than ${max} characters; shorten it.`);
    }
    // UTF8String for everything (PrintableString cannot hold '_', '@', '*' ...).
    return { shortName, value, valueTagClass: asn1.Type.UTF8 as unknown as forge.asn1.Class };
  });
}

/** The signature algorithm a key signs with: its OID, digest, and whether parameters are NULL (RSA) or absent (ECDSA). */
export interface SignatureAlgorithm {
  oid: string;
  digest: 'sha256' | 'sha384';
}

export function signatureAlgorithmFor(key: KeyObject): SignatureAlgorithm {
  if (key.asymmetricKeyType === 'ec') {
    return key.asymmetricKeyDetails?.namedCurve === 'secp384r1'
      ? { oid: OID.ecdsaWithSHA384, digest: 'sha384' }
      : { oid: OID.ecdsaWithSHA256, digest: 'sha256' };
  }
  return { oid: OID.sha256WithRSAEncryption, digest: 'sha256' };
}

/** Signs DER bytes: PKCS#1 v1.5 for RSA, DER-encoded ECDSA (r, s) for EC. */
export function signWith(alg: SignatureAlgorithm, data: Buffer, key: KeyObject): Buffer {
  return sign(alg.digest, data, key);
}

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING content. */
export function keyIdentifierOfSpki(spkiDer: Buffer): Buffer {
  const spki = readRoot(spkiDer);
  const [, bits] = children(spkiDer, spki);
  return createHash('sha1').update(bitStringBytes(spkiDer, bits!)).digest();
}

// forge needs *an* RSA key to build the TBS; its encoding is replaced by the real SPKI.
let placeholder: forge.pki.rsa.PublicKey | undefined;
function placeholderKey(): forge.pki.rsa.PublicKey {
  placeholder ??= forge.pki.setRsaPublicKey(new forge.jsbn.BigInteger('3', 10), new forge.jsbn.BigInteger('65537', 10));
  return placeholder;
}

export function signCertificate(template: CertificateTemplate, signer: Signer): { der: Buffer; pem: string } {
  const alg = signatureAlgorithmFor(signer.key);
  const ski = keyIdentifierOfSpki(template.spkiDer);
  const cert = forge.pki.createCertificate();
  cert.version = 2; // v3
  cert.serialNumber = generateSerial();
  cert.publicKey = placeholderKey();
  cert.validity.notBefore = template.notBefore;
  cert.validity.notAfter = template.notAfter;
  const fields = subjectFields(template.subject);
  cert.setSubject(fields);
  cert.setIssuer(fields); // replaced by the issuer's exact Name bytes below when not self-signed
  const aki = (signer.keyIdentifier ?? ski).toString('binary'); // self-signed: its own key
  cert.setExtensions([
    ...template.extensions,
    { name: 'subjectKeyIdentifier', value: asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, ski.toString('binary')) },
    { name: 'authorityKeyIdentifier', keyIdentifier: aki },
  ]);
  // forge only knows RSA signature OIDs; the real algorithm is set in the TBS below.
  cert.siginfo.algorithmOid = OID.sha256WithRSAEncryption;
  cert.signatureOid = OID.sha256WithRSAEncryption;

  const tbs = (forge.pki as unknown as ForgePkiInternals).getTBSCertificate(cert);
  const tbsFields = tbs.value as forge.asn1.Asn1[];
  // TBSCertificate: [0] version, serial, signature, issuer, validity, subject, subjectPublicKeyInfo, …
  tbsFields[2] = algorithmIdentifier(alg.oid);
  if (signer.issuerNameDer) tbsFields[3] = fromDerBuffer(signer.issuerNameDer);
  tbsFields[6] = fromDerBuffer(template.spkiDer);
  const tbsDer = toDerBuffer(tbs);
  const signature = signWith(alg, tbsDer, signer.key);

  const der = encodeSigned(tbsDer, toDerBuffer(algorithmIdentifier(alg.oid)), signature);
  return { der, pem: pemEncode('CERTIFICATE', der) };
}

/** AlgorithmIdentifier: RSA signatures carry NULL parameters, ECDSA ones none (RFC 5758 §3.2). */
export function algorithmIdentifier(oid: string): forge.asn1.Asn1 {
  const ecdsa = oid === OID.ecdsaWithSHA256 || oid === OID.ecdsaWithSHA384;
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    encodeOid(oid),
    ...(ecdsa ? [] : [asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, '')]),
  ]);
}

/** Describes a freshly signed certificate from its own bytes, so the result always matches the encoding. */
export function describeIssued(der: Buffer, pem: string, keyPem: string): Issued {
  const parsed = parseCertificate(der);
  return {
    certPem: pem,
    keyPem,
    serial: parsed.serial,
    notBefore: parsed.notBefore,
    notAfter: parsed.notAfter,
    subject: formatName(parsed.subject),
  };
}
