/**
 * @bastion/pki: a small X.509 toolkit for Bastion (CA, TLS server/client certificates,
 * CRLs and the on-disk development PKI). RSA only: node-forge cannot sign with EC keys,
 * so EC P-256 is not supported.
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
