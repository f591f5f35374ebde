/**
 * Key generation and key handling.
 *
 * Only RSA is offered: node-forge's certificate code can only sign with (and embed) RSA
 * keys, so EC keys such as P-256 are not supported by this package. Generation goes
 * through `forge.pki.rsa.generateKeyPair`, which delegates to Node's native
 * `crypto.generateKeyPairSync` when it is available (fast), and signatures are made
 * with node:crypto.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { PkiError } from './errors.js';

export type KeyType = 'rsa-2048' | 'rsa-3072' | 'rsa-4096';

export const KEY_TYPES: readonly KeyType[] = ['rsa-2048', 'rsa-3072', 'rsa-4096'];

const BITS: Readonly<Record<KeyType, number>> = { 'rsa-2048': 2048, 'rsa-3072': 3072, 'rsa-4096': 4096 };

export interface GeneratedKey {
  publicKey: forge.pki.rsa.PublicKey;
  /** PKCS#8 "PRIVATE KEY" PEM. Never log this. */
  keyPem: string;
}

export function keyBits(keyType: KeyType): number {
  const bits = BITS[keyType];
  if (bits === undefined) {
    throw new PkiError(
      'BASTION_ERR_PKI_BAD_INPUT',
      `Unsupported key type ${JSON.stringify(keyType)}. Use one of ${KEY_TYPES.join(', ')} (node-forge signs only RSA; EC P-256 is not supported).`,
    );
  }
  return bits;
}

export function generateKey(keyType: KeyType): GeneratedKey {
  const { privateKey, publicKey } = forge.pki.rsa.generateKeyPair({ bits: keyBits(keyType), e: 0x10001 });
  const keyPem = forge.pki.privateKeyInfoToPem(forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(privateKey)));
  return { publicKey, keyPem };
}

/** Loads a PEM private key (PKCS#8 or PKCS#1). Encrypted keys are rejected with a clear error. */
export function loadPrivateKey(keyPem: string, what = 'private key'): KeyObject {
  if (/ENCRYPTED/.test(keyPem)) {
    throw new PkiError(
      'BASTION_ERR_PKI_BAD_KEY',
      `The ${what} is encrypted. Provide an unencrypted PEM key (keep it in a 0600 file instead), e.g. decrypt it with \`openssl pkey -in key.pem -out key-plain.pem\`.`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: keyPem, format: 'pem' });
  } catch (err) {
    // The error from OpenSSL does not contain key material, but we do not echo it either.
    throw new PkiError(
      'BASTION_ERR_PKI_BAD_KEY',
      `The ${what} could not be read. Provide a PEM "PRIVATE KEY" or "RSA PRIVATE KEY" block.`,
      { cause: err instanceof Error ? new Error(err.message) : undefined },
    );
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw new PkiError(
      'BASTION_ERR_PKI_BAD_KEY',
      `The ${what} is a ${String(key.asymmetricKeyType)} key; this PKI signs with RSA keys only (node-forge does not support EC). Create the CA with \`bastion certs init\`.`,
    );
  }
  return key;
}

/** DER SubjectPublicKeyInfo of a private key's public half, for comparing with a certificate. */
export function publicSpkiOf(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: 'spki', format: 'der' });
}
