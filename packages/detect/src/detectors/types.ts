/** What every detector module gets from the detectors middleware, and the options each one takes. */
import type { Detection, DetectionInput, Severity } from '../detection.js';

export interface DetectorRuntime {
  /** Emit a detection on the bus. */
  raise(input: DetectionInput): Detection;
  /** Entries each table may hold (addresses, client ids, usernames …). */
  readonly capacity: number;
}

export interface ConnectionAttemptsOptions {
  /** Milliseconds. */
  window: number;
  /** Connections from one address (IPv6: one /64) in the window before a detection. */
  perIp: number;
  /** CONNECTs with one client id in the window before a detection. */
  perClientId: number;
  severity?: Severity;
}

export interface AbnormalTerminationOptions {
  window: number;
  /** Abnormal ends of one client id in the window. */
  perClient: number;
  /** Abnormal ends of connections from one address in the window. */
  perIp: number;
  /** Abnormal ends across the whole broker in the window (a spike: an outage or an attack). */
  fleet: number;
  severity?: Severity;
}

export interface ExpectedClient {
  /** An exact client id. */
  clientId?: string;
  /** A glob over client ids (`*` any run of characters): every client seen matching it is expected to stay. */
  pattern?: string;
  /** Longest acceptable silence (not connected, or no PUBLISH when `publishes`), milliseconds. */
  interval: number;
  /** The client must also publish at least once per interval (default true). */
  publishes?: boolean;
}

export interface AvailabilityOptions {
  expected: ExpectedClient[];
  severity?: Severity;
}

export interface AuthFailuresOptions {
  window: number;
  perIp: number;
  perUsername: number;
  perClientId: number;
  severity?: Severity;
}

export interface TopicScanningOptions {
  window: number;
  /** Distinct topics published or subscribed by one connection in the window. */
  maxTopics: number;
  /** Publish or subscribe denials for one client id, username or address in the window. */
  maxDenials: number;
  severity?: Severity;
}

export interface UndeliverableOptions {
  window: number;
  /** Messages one connection publishes to topics nobody subscribes to, in the window. */
  max: number;
  severity?: Severity;
}

export interface SilentClientsOptions {
  /** A connection that sent no PUBLISH and no SUBSCRIBE this long after CONNECT is reported once. */
  after: number;
  severity?: Severity;
}
