/**
 * Certificate authority: creation of a self-signed root and validation of CA material
 * before it is used to sign anything.
 */
import { type KeyObject } from 'node:crypto';
import { PkiError } from './errors.js';
import { generateKey, loadPrivateKey, publicSpkiOf, type KeyType } from './keys.js';
import { describeIssued, signCertificate, type SubjectAttribute } from './sign.js';
import type { CertificateAuthority, Issued } from './types.js';
import { resolveValidity } from './validity.js';
import { KEY_USAGE, keyIdentifierOf, parseCertificate, type ParsedCertificate } from './x509.js';

export interface CreateCAOptions {
  commonName: string;
  organization?: string;
  /** Default 3650. */
  validityDays?: number;
  /** Default 'rsa-3072'. */
  keyType?: KeyType;
  notBefore?: Date;
  notAfter?: Date;
}

export const CA_DEFAULT_DAYS = 3650;
export const CA_DEFAULT_KEY_TYPE: KeyType = 'rsa-3072';

/**
 * Creates a self-signed root CA: basicConstraints cA=true (critical, pathLen 0: it can
 * only issue end-entity certificates), keyUsage keyCertSign + cRLSign (critical),
 * subject/authority key identifiers.
 */
export function createCA(opts: CreateCAOptions): Issued {
  const { notBefore, notAfter } = resolveValidity(opts, CA_DEFAULT_DAYS);
  const subject: SubjectAttribute[] = [];
  if (opts.organization !== undefined) subject.push({ shortName: 'O', value: opts.organization });
  subject.push({ shortName: 'CN', value: opts.commonName });
  const { spkiDer, keyPem } = generateKey(opts.keyType ?? CA_DEFAULT_KEY_TYPE);
  const { der, pem } = signCertificate(
    {
      subject,
      spkiDer,
      notBefore,
      notAfter,
      extensions: [
        { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      ],
    },
    { key: loadPrivateKey(keyPem, 'CA key') },
  );
  return describeIssued(der, pem, keyPem);
}

export interface OpenedCA {
  cert: ParsedCertificate;
  key: KeyObject;
  keyIdentifier: Buffer;
}

/**
 * Parses and checks CA material: the certificate must be a CA certificate allowed to
 * sign certificates, and the key must belong to it.
 */
export function openCA(ca: CertificateAuthority): OpenedCA {
  if (!ca || typeof ca.certPem !== 'string' || typeof ca.keyPem !== 'string') {
    throw new PkiError('BASTION_ERR_PKI_BAD_CA', 'CA material must be { certPem, keyPem } PEM strings. Load it with loadCA(dir) or create it with createCA().');
  }
  let cert: ParsedCertificate;
  try {
    cert = parseCertificate(ca.certPem);
  } catch (err) {
    throw new PkiError('BASTION_ERR_PKI_BAD_CA', `The CA certificate could not be read: ${(err as Error).message}`, { cause: err });
  }
  if (!cert.isCA) {
    throw new PkiError(
      'BASTION_ERR_PKI_BAD_CA',
      'The CA certificate is not a CA (basicConstraints cA is not true). Use the ca.pem created by `bastion certs init`, not a server or client certificate.',
    );
  }
  if (cert.keyUsage && !cert.keyUsage.has(KEY_USAGE.keyCertSign)) {
    throw new PkiError('BASTION_ERR_PKI_BAD_CA', 'The CA certificate does not allow certificate signing (keyUsage lacks keyCertSign).');
  }
  const key = loadPrivateKey(ca.keyPem, 'CA key', ca.passphrase);
  if (!publicSpkiOf(key).equals(cert.spkiDer)) {
    throw new PkiError(
      'BASTION_ERR_PKI_KEY_MISMATCH',
      'The CA private key does not belong to the CA certificate. Check that ca.pem and ca-key.pem come from the same `bastion certs init` run.',
    );
  }
  return { cert, key, keyIdentifier: keyIdentifierOf(cert) };
}
