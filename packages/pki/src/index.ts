/**
 * @bastion/pki: a small X.509 toolkit for Bastion (CA, TLS server/client certificates,
 * CRLs and the on-disk PKI directory). RSA 2048+ and EC P-256/P-384 keys: node-forge builds
 * the ASN.1, node:crypto makes the keys and the signatures.
 */
export type { KeyType } from './keys.js';
export { KEY_TYPES } from './keys.js';
export type { Issued, CertificateAuthority } from './types.js';
export { PkiError, isPkiError, type PkiErrorCode } from './errors.js';
export { normalizeSerial, generateSerial } from './serial.js';
export { createCA, type CreateCAOptions } from './ca.js';
export { issueServerCert, issueClientCert, type ServerCertOptions, type ClientCertOptions } from './issue.js';
export {
  createCRL,
  parseCRL,
  verifyCRL,
  REVOCATION_REASON_CODES,
  type RevocationReason,
  type RevokedEntry,
  type CreateCRLOptions,
  type ParsedCRL,
} from './crl.js';
export { certificateInfo, type CertificateInfo } from './info.js';
export { writePrivateFile } from './files.js';
export {
  pkiPaths,
  clientPaths,
  initDevPki,
  issueClientToDir,
  listCertificates,
  loadCA,
  readRevoked,
  revokeInDir,
  updateCRLInDir,
  DEFAULT_SERVER_NAMES,
  DEFAULT_CLIENTS,
  type PkiPaths,
  type InitDevPkiOptions,
  type InitDevPkiResult,
  type IssueClientToDirOptions,
  type ListedCertificate,
} from './store.js';
// Lifecycle: EC keys, encrypted CA keys, server certificates, renewal, revocation targets, statuses.
export { keyTypeOf, describeKey, isEncryptedKeyPem, encryptPrivateKeyPem, MIN_RSA_BITS } from './keys.js';
export { certificateIssuerAndSerial } from './info.js';
export {
  CA_PASSPHRASE_ENV,
  caPassphrase,
  crlLifetime,
  listServerNames,
  resolveRevocationTarget,
  type CaAccess,
  type CrlOptions,
  type CertificateStatus,
  type ListCertificatesOptions,
  type RevokeResult,
} from './store.js';
export {
  issueServerToDir,
  renewInDir,
  serverPaths,
  type CertificateKind,
  type IssueServerToDirOptions,
  type RenewOptions,
  type RenewResult,
} from './lifecycle.js';
export { crlToDer } from './crl.js';
export { writePublicFile, writeFileAtomic } from './files.js';
