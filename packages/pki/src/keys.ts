/**
 * Key generation and key handling.
 *
 * Keys are made and used by node:crypto: RSA (2048, 3072, 4096 bits) and EC (P-256, P-384).
 * node-forge still builds the ASN.1 of certificates and CRLs, but it can only encode RSA public
 * keys and sign with RSA, so this package hands it no key at all: the SubjectPublicKeyInfo comes
 * from node:crypto (`spkiDer`) and is spliced into forge's TBS structure, and signatures
 * (RSA PKCS#1 v1.5 or ECDSA) are made by node:crypto (see sign.ts, `signatureAlgorithmFor`).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { PkiError } from './errors.js';

export type KeyType = 'rsa-2048' | 'rsa-3072' | 'rsa-4096' | 'ec-p256' | 'ec-p384';

export const KEY_TYPES: readonly KeyType[] = ['rsa-2048', 'rsa-3072', 'rsa-4096', 'ec-p256', 'ec-p384'];

/** Smallest RSA modulus accepted from an existing CA key (NIST SP 800-131A). */
export const MIN_RSA_BITS = 2048;

/** Named curves accepted for signing keys, by Node's `asymmetricKeyDetails.namedCurve`. */
const EC_CURVES: Readonly<Record<string, { keyType: KeyType; label: string }>> = {
  prime256v1: { keyType: 'ec-p256', label: 'P-256' },
  secp384r1: { keyType: 'ec-p384', label: 'P-384' },
};

export interface GeneratedKey {
  /** DER SubjectPublicKeyInfo of the public half (what goes into the certificate). */
  spkiDer: Buffer;
  /** PKCS#8 "PRIVATE KEY" PEM. Never log this. */
  keyPem: string;
}

function badKeyType(keyType: unknown): PkiError {
  return new PkiError('BASTION_ERR_PKI_BAD_INPUT', `Unsupported key type ${JSON.stringify(keyType)}. Use one of ${KEY_TYPES.join(', ')}.`);
}

export function assertKeyType(keyType: unknown): asserts keyType is KeyType {
  if (!KEY_TYPES.includes(keyType as KeyType)) throw badKeyType(keyType);
}

export function generateKey(keyType: KeyType): GeneratedKey {
  assertKeyType(keyType);
  const pair =
    keyType === 'ec-p256' || keyType === 'ec-p384'
      ? generateKeyPairSync('ec', { namedCurve: keyType === 'ec-p256' ? 'P-256' : 'P-384' })
      : generateKeyPairSync('rsa', { modulusLength: Number(keyType.slice(4)), publicExponent: 0x10001 });
  return {
    spkiDer: pair.publicKey.export({ type: 'spki', format: 'der' }),
    keyPem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
}

/** The KeyType of a key (private or public), or undefined for anything this package does not sign with. */
export function keyTypeOf(key: KeyObject): KeyType | undefined {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details?.modulusLength ?? 0;
    return bits >= 4096 ? 'rsa-4096' : bits >= 3072 ? 'rsa-3072' : bits >= MIN_RSA_BITS ? 'rsa-2048' : undefined;
  }
  if (key.asymmetricKeyType === 'ec') return EC_CURVES[details?.namedCurve ?? '']?.keyType;
  return undefined;
}

/** A short human label of a public key: "RSA 2048", "EC P-256", "ED25519". */
export function describeKey(key: KeyObject): string {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') return `RSA ${details?.modulusLength ?? '?'}`;
  if (key.asymmetricKeyType === 'ec') return `EC ${EC_CURVES[details?.namedCurve ?? '']?.label ?? details?.namedCurve ?? '?'}`;
  return String(key.asymmetricKeyType ?? 'unknown').toUpperCase();
}

export function isEncryptedKeyPem(keyPem: string): boolean {
  return /-----BEGIN ENCRYPTED PRIVATE[ ]KEY-----|Proc-Type: 4,ENCRYPTED/.test(keyPem);
}

/**
 * Loads a PEM private key (PKCS#8, PKCS#1 or SEC1) that this package may sign with: RSA of at
 * least 2048 bits, or EC P-256 / P-384. An encrypted key needs `passphrase`; both a missing and a
 * wrong passphrase are reported without echoing anything of the key.
 */
export function loadPrivateKey(keyPem: string, what = 'private key', passphrase?: string): KeyObject {
  const encrypted = isEncryptedKeyPem(keyPem);
  if (encrypted && (passphrase === undefined || passphrase === '')) {
    throw new PkiError(
      'BASTION_ERR_PKI_BAD_KEY',
      `The ${what} is encrypted and no passphrase was given. Set BASTION_CA_PASSPHRASE (or pass the passphrase) to use it.`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(encrypted ? { key: keyPem, format: 'pem', passphrase } : { key: keyPem, format: 'pem' });
  } catch (err) {
    // OpenSSL's message holds no key material, but it is not echoed either.
    throw new PkiError(
      'BASTION_ERR_PKI_BAD_KEY',
      encrypted
        ? `The ${what} could not be decrypted: the passphrase is wrong (check BASTION_CA_PASSPHRASE).`
        : `The ${what} could not be read. Provide a PEM "PRIVATE KEY", "RSA PRIVATE KEY" or "EC PRIVATE KEY" block.`,
      { cause: err instanceof Error ? new Error(err.message) : undefined },
    );
  }
  if (keyTypeOf(key) === undefined) {
    throw new PkiError(
      'BASTION_ERR_PKI_BAD_KEY',
      `The ${what} is a ${describeKey(key)} key; this PKI signs with RSA (2048 bits or more) or EC P-256/P-384 keys only.`,
    );
  }
  return key;
}

/** PKCS#8 PEM encrypted with AES-256-CBC under a PBKDF2-derived key (PBES2), for the CA key at rest. */
export function encryptPrivateKeyPem(keyPem: string, passphrase: string): string {
  if (typeof passphrase !== 'string' || passphrase.length < 8) {
    throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', 'The CA key passphrase must be at least 8 characters long.');
  }
  const key = createPrivateKey({ key: keyPem, format: 'pem' });
  return key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }) as string;
}

/** DER SubjectPublicKeyInfo of a private key's public half, for comparing with a certificate. */
export function publicSpkiOf(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: 'spki', format: 'der' });
}
