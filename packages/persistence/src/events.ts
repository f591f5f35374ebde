/** What the store reports; the broker turns these into logged security events. */
import type { OpenFailure, SealKind } from './seal.js';

export type StoreEvent =
  /** A Redis connection was lost (reported once per outage); the client keeps retrying. */
  | { type: 'unavailable'; connection: string; error: string }
  /** Every Redis connection is back after an outage. */
  | { type: 'restored'; downMs: number }
  /** A stored record did not open: not sealed, sealed with a key that is not configured, or altered/moved. It is not served. */
  | { type: 'record-rejected'; kind: SealKind; reason: OpenFailure; keyId: string | undefined; topic: string | undefined; clientId: string | undefined }
  /** A message between cluster nodes (pub/sub traffic or the state channel) did not open or was stale/replayed; it is dropped. */
  | { type: 'cluster-rejected'; channel: 'traffic' | 'state'; reason: OpenFailure | 'stale' | 'replayed' | 'malformed'; keyId: string | undefined }
  /** A state-channel listener threw. */
  | { type: 'state-listener-failed'; kind: string; error: string };

export type StoreEventSink = (event: StoreEvent) => void;
