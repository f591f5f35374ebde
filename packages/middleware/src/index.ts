export { passwordAuth } from './passwords.js';
export type { PasswordAuth, PasswordAuthOptions } from './passwords.js';
export { certificateAuth, certificateIdentity } from './certificates.js';
export type { CertificateAuthOptions, CertificateIdentity } from './certificates.js';
export {
  DEFAULT_COST,
  hashPassword,
  verifyPassword,
  parseUsersFile,
  readUsersFile,
  writeUsersFile,
  serializeUsers,
  setUserPassword,
  validateUsername,
} from './users-file.js';
export type { UserRecord, ScryptCost } from './users-file.js';
