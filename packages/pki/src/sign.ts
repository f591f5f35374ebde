/**
 * Builds an X.509 v3 certificate with node-forge and signs it (sha256WithRSAEncryption)
 * with node:crypto.
 */
import { sign, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { encodeOid, encodeSigned, fromDerBuffer, toDerBuffer } from './der.js';
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
  publicKey: forge.pki.rsa.PublicKey;
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

export function signCertificate(template: CertificateTemplate, signer: Signer): { der: Buffer; pem: string } {
  const cert = forge.pki.createCertificate();
  cert.version = 2; // v3
  cert.serialNumber = generateSerial();
  cert.publicKey = template.publicKey;
  cert.validity.notBefore = template.notBefore;
  cert.validity.notAfter = template.notAfter;
  const fields = subjectFields(template.subject);
  cert.setSubject(fields);
  cert.setIssuer(fields); // replaced by the issuer's exact Name bytes below when not self-signed
  const aki = signer.keyIdentifier ? signer.keyIdentifier.toString('binary') : true;
  cert.setExtensions([
    ...template.extensions,
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: aki },
  ]);
  cert.siginfo.algorithmOid = OID.sha256WithRSAEncryption;
  cert.signatureOid = OID.sha256WithRSAEncryption;

  const tbs = (forge.pki as unknown as ForgePkiInternals).getTBSCertificate(cert);
  if (signer.issuerNameDer) {
    (tbs.value as forge.asn1.Asn1[])[3] = fromDerBuffer(signer.issuerNameDer);
  }
  const tbsDer = toDerBuffer(tbs);
  const signature = sign('sha256', tbsDer, signer.key);

  const der = encodeSigned(tbsDer, toDerBuffer(algorithmIdentifier(OID.sha256WithRSAEncryption)), signature);
  return { der, pem: pemEncode('CERTIFICATE', der) };
}

export function algorithmIdentifier(oid: string): forge.asn1.Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    encodeOid(oid),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, ''),
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
