/**
 * @bastion/profile: the framework profile, Bastion's single configuration file, mapped to the
 * NIST Cybersecurity Framework. Load it (`loadProfile`), check it (`checkProfile`), embed it
 * (`resolveProfile(defaultProfile())`), and generate its JSON Schema and reference docs.
 */
export { loadProfile, parseProfile, resolveProfile, checkProfile } from './load.js';
export type { ProfileOptions, ParseOptions, ResolveOptions, CheckResult } from './load.js';
export { ProfileError, isProfileError, formatProfileIssue, PROFILE_ERROR_CODE } from './errors.js';
export type { ProfileIssue } from './errors.js';
export { profileSchema, tlsSchema, listenerSchema, TIER_NAMES, MIN_PACKET_SIZE, MAX_PACKET_SIZE } from './schema.js';
export type { ProfileInput } from './schema.js';
export type {
  Profile,
  Listener,
  TlsListener,
  MqttListener,
  MqttsListener,
  WsListener,
  WssListener,
  ListenerTls,
  ListenerProxyProtocol,
  TlsDefaults,
  AuthenticationSettings,
  Tier,
  Protocol,
  TlsVersion,
  ClientCertificateMode,
  CertificateIdentity,
  AuthFactor,
  LogLevel,
} from './types.js';
export type { Env } from './env.js';
export { defaultProfile, tierFor } from './defaults.js';
export { parseSize, parseDuration, formatSize, formatDuration } from './units.js';
export {
  profileJsonSchema,
  profileJsonSchemaText,
  writeProfileJsonSchema,
  PROFILE_SCHEMA_ID,
  PROFILE_SCHEMA_FILE,
} from './json-schema.js';
export { profileReference, writeProfileReference, REFERENCE_BEGIN, REFERENCE_END } from './reference.js';
export { defineSection } from './sections/section.js';
export type { Section, SectionContext, SectionPath } from './sections/section.js';
export type { SectionTiers, Floor, FloorContext, FloorViolation } from './sections/section.js';
export {
  tierRows,
  tierFloors,
  tierTable,
  writeTierTable,
  enforceFloors,
  evaluateFloors,
  enabledFor,
  tlsPreset,
  isLoopbackHost,
  TIER_TABLE_BEGIN,
  TIER_TABLE_END,
} from './tiers.js';
export type { TierRow, ProfileFloor, FloorFinding } from './tiers.js';
export { covers as exceptionCovers, isExpired as isExceptionExpired, formatPath } from './exceptions.js';
export type { ProfileException } from './exceptions.js';
export type { Attestation } from './sections/attestations.js';
export { sections } from './sections/index.js';
export { size, duration, pathString } from './primitives.js';
export { loadCatalog, subcategories, isKnownControl, CATALOG_FILE } from './catalog.js';
export type { Catalog, CsfFunction, Category, Subcategory, Scope } from './catalog.js';
