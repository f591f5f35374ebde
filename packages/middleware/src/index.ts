export { passwordAuth } from './passwords.js';
export { KdfPool, KdfBusyError, kdfPool, MAX_QUEUED as KDF_MAX_QUEUED } from './kdf-pool.js';
export type { ScryptParams } from './kdf-pool.js';
export type { PasswordAuth, PasswordAuthOptions } from './passwords.js';
export { certificateAuth, certificateIdentity } from './certificates.js';
export type { CertificateAuthOptions, CertificateIdentity } from './certificates.js';
export {
  DEFAULT_COST,
  hashPassword,
  verifyPassword,
  generateDeviceToken,
  hashDeviceToken,
  verifyDeviceToken,
  isDeviceTokenHash,
  MIN_TOKEN_LENGTH,
  parseUsersFile,
  readUsersFile,
  writeUsersFile,
  serializeUsers,
  setUserPassword,
  validateUsername,
} from './users-file.js';
export type { UserRecord, ScryptCost } from './users-file.js';
export { acl, readAclFile, AclRuleError, ACL_ACTIONS, validateRules as validateAclRules, topicFilterProblem } from './acl/index.js';
export type { Acl, AclOptions, AclChange, AclChangeOptions, AclRuleChange, AclDecision, AclRule, AclAction, AclEffect, AclCertificateSelector, AclIdentity } from './acl/index.js';
export { accessList, validateAccessLists, AccessListError } from './access-list.js';
export type { AccessList, AccessListOptions, AccessListSettings, AccessLists, ListVerdict } from './access-list.js';
export { bans, BanError } from './bans.js';
export type { Ban, Bans, BanSpec, BanTarget, BansOptions } from './bans.js';
export { CidrSet, CidrError, PrefixIndex, parseAddress, parseCidr, parseIPv4, parseIPv6, formatRange, isIpAddress } from './cidr.js';
export type { IpAddress, IpRange } from './cidr.js';
export { revocation } from './revocation.js';
export type { Revocation, RevocationOptions, RevocationChange, RevocationChangeOptions, ReloadResult, CrlStatus, RevocationCheck, StalePolicy } from './revocation.js';
export { watchFiles, readWithDigest } from './revocation/watch.js';
export type { FileWatch, WatchFilesOptions } from './revocation/watch.js';
export type { CrlRejection, LoadedCrl } from './revocation/crl-set.js';
export { rateLimit, normalizeRateLimits, CONSEQUENCES } from './rate-limit/index.js';
export type { RateLimit, Banner, ConnectionCaps, Consequence, RateSpec, RateSpecInput, RateLimitOptions, RateLimitSettings, RateStoreOptions, PublishBudget, PublishBudgetInput } from './rate-limit/index.js';
export { protocolLimits } from './protocol-limits.js';
export type { ProtocolLimits, ProtocolLimitsOptions, ProtocolLimitSettings, QueuePersistence } from './protocol-limits.js';
export { autoDisconnect } from './auto-disconnect.js';
export type { AutoDisconnect, AutoDisconnectOptions, AutoDisconnectSettings } from './auto-disconnect.js';
