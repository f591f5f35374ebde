/**
 * A detection: something a detector saw that an operator (or a response policy) should act on.
 * It travels on the security event bus as a `detection.raised` event, so the response engine, the
 * audit log, metrics and any third-party subscriber read the same thing.
 */
import { randomUUID } from 'node:crypto';
import type { SecurityEvent, SecurityEventBus } from '@bastion/core';

export type Severity = 'low' | 'medium' | 'high' | 'critical';
export const SEVERITIES: readonly Severity[] = ['low', 'medium', 'high', 'critical'];

export type DetectorName =
  | 'connection-attempts'
  | 'abnormal-termination'
  | 'availability'
  | 'auth-failures'
  | 'topic-scanning'
  | 'undeliverable'
  | 'silent-clients';

/** The seven detectors of the note, with the CSF subcategory each implements. */
export const DETECTOR_CONTROLS: Readonly<Record<DetectorName, string>> = Object.freeze({
  'connection-attempts': 'DE.NM-1',
  'abnormal-termination': 'DE.NM-2',
  availability: 'DE.PM-1',
  'auth-failures': 'DE.ID-1',
  'topic-scanning': 'DE.ID-2',
  undeliverable: 'DE.ID-3',
  'silent-clients': 'DE.ID-4',
});
export const DETECTOR_NAMES = Object.keys(DETECTOR_CONTROLS) as DetectorName[];

/** Which attribute was counted: the offender is "this address", "this client id", … or the whole fleet. */
export type OffenderKey = 'ip' | 'clientId' | 'username' | 'connection' | 'fleet';

export interface Offender {
  readonly ip?: string | undefined;
  readonly clientId?: string | undefined;
  readonly username?: string | undefined;
}

export interface Evidence {
  /** Events counted in the window. */
  readonly count: number;
  /** The configured limit that `count` exceeded. */
  readonly threshold: number;
  /** Milliseconds. */
  readonly window: number;
  readonly [more: string]: unknown;
}

export interface Detection {
  readonly id: string;
  readonly detector: DetectorName | (string & {});
  /** CSF subcategory id, e.g. 'DE.ID-1'. */
  readonly control: string;
  readonly severity: Severity;
  readonly key: OffenderKey;
  readonly offender: Offender;
  readonly evidence: Evidence;
  /** A topic the detection is about (topic scanning, undeliverable messages), when there is one. */
  readonly topic?: string | undefined;
  readonly message: string;
  /** Epoch milliseconds. */
  readonly time: number;
}

export type DetectionInput = Omit<Detection, 'id' | 'time' | 'control'> & { control?: string };

export const DETECTION_RAISED = 'detection.raised';
export const DETECTION_CLEARED = 'detection.cleared';

/** Emit a detection on the bus (and return it). Third-party detectors may use this too. */
export function raiseDetection(bus: SecurityEventBus, input: DetectionInput, source = 'detectors'): Detection {
  const d = makeDetection(input);
  bus.emit(detectionEvent(d, DETECTION_RAISED, source));
  return d;
}

/** A detection with its id, time and control filled in (not emitted). */
export function makeDetection(input: DetectionInput): Detection {
  return {
    ...input,
    id: randomUUID(),
    control: input.control ?? DETECTOR_CONTROLS[input.detector as DetectorName] ?? 'PR.SS-3',
    time: Date.now(),
  };
}

export function detectionEvent(d: Detection, type: string, source = 'detectors'): SecurityEvent {
  return {
    type,
    time: d.time,
    control: d.control,
    source,
    clientId: d.offender.clientId,
    username: d.offender.username,
    remoteAddress: d.offender.ip,
    topic: d.topic,
    message: d.message,
    detail: { id: d.id, detector: d.detector, severity: d.severity, key: d.key, evidence: d.evidence },
  };
}

/** The detection carried by a `detection.raised` event (undefined for any other event). */
export function detectionFromEvent(e: SecurityEvent): Detection | undefined {
  if (e.type !== DETECTION_RAISED || e.detail === undefined) return undefined;
  const d = e.detail as { id?: unknown; detector?: unknown; severity?: unknown; key?: unknown; evidence?: unknown };
  if (typeof d.id !== 'string' || typeof d.detector !== 'string') return undefined;
  return {
    id: d.id,
    detector: d.detector,
    control: e.control,
    severity: SEVERITIES.includes(d.severity as Severity) ? (d.severity as Severity) : 'medium',
    key: (d.key as OffenderKey) ?? 'connection',
    offender: { ip: e.remoteAddress, clientId: e.clientId, username: e.username },
    evidence: (d.evidence as Evidence) ?? { count: 0, threshold: 0, window: 0 },
    topic: e.topic,
    message: e.message ?? '',
    time: e.time,
  };
}

export function severityAtLeast(s: Severity, min: Severity): boolean {
  return SEVERITIES.indexOf(s) >= SEVERITIES.indexOf(min);
}
