/**
 * @bastion/detect: the Detect and Respond functions — detectors (DE.NM, DE.PM, DE.ID), the response
 * engine (RS.RP), the hash-chained audit log (PR.PT-1, PR.IP-4) and metrics.
 */
export { detectors, DEFAULT_CAPACITY } from './detectors.js';
export type { Detectors, DetectorsOptions, DetectorsStats } from './detectors.js';
export type {
  ConnectionAttemptsOptions,
  AbnormalTerminationOptions,
  AvailabilityOptions,
  ExpectedClient,
  AuthFailuresOptions,
  TopicScanningOptions,
  UndeliverableOptions,
  SilentClientsOptions,
} from './detectors/types.js';
export {
  DETECTOR_CONTROLS,
  DETECTOR_NAMES,
  SEVERITIES,
  DETECTION_RAISED,
  DETECTION_CLEARED,
  raiseDetection,
  makeDetection,
  detectionEvent,
  detectionFromEvent,
  severityAtLeast,
} from './detection.js';
export type { Detection, DetectionInput, DetectorName, Severity, Offender, OffenderKey, Evidence } from './detection.js';
export { WindowedCounters, addressKey } from './window.js';
export { responses, ResponseError, ACTIONS, ACTION_CONTROLS } from './responses.js';
export type {
  Responses,
  ResponsesOptions,
  ResponseRule,
  ResponseCapabilities,
  ActionName,
  ActionSpec,
  ActionRecord,
  AllowList,
  ManualOptions,
  Outcome,
} from './responses.js';
export { metrics } from './metrics.js';
export type { Metrics, MetricsOptions, MetricsSnapshot } from './metrics.js';
export { serveMetrics } from './metrics-server.js';
export type { MetricsServer, MetricsServerOptions } from './metrics-server.js';
export { publishSecurityTopics, SECURITY_TOPICS } from './security-topics.js';
export type { SecurityTopicsOptions } from './security-topics.js';
export { AuditLog, DEFAULT_MAX_SIZE as AUDIT_DEFAULT_MAX_SIZE } from './audit/audit-log.js';
export type { AuditLogOptions, AuditLogSettings, AuditHead } from './audit/audit-log.js';
export { verifyAuditFiles } from './audit/verify.js';
export type { VerifyResult, VerifyOptions, ChainBreak } from './audit/verify.js';
export { GENESIS, chainLine, parseLine } from './audit/chain.js';
export { audit } from './audit/audit-middleware.js';
export type { Audit, AuditChange, AuditOptions } from './audit/audit-middleware.js';
