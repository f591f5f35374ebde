/** What the detectors keep per live connection: created at CONNACK, dropped at disconnect. */
import type { ClientInfo } from '@bastion/core';
import type { Watch } from './availability.js';

export class ConnState {
  readonly client: ClientInfo;
  /** When the connection was accepted (coarse clock). */
  readonly since: number;
  /** Sent a PUBLISH or SUBSCRIBE since CONNECT (DE.ID-4). */
  data = false;
  silentRaised = false;
  /** Distinct topics in the current scanning window (DE.ID-2), at most maxTopics entries. */
  topics: Set<string> | undefined = undefined;
  scanStart: number;
  /** The last topic published and whether it had subscribers then (DE.ID-3 fast path). */
  lastTopic = '';
  lastGen = 0;
  lastHas = true;
  undeliverable = 0;
  undeliverableStart: number;
  /** Set when the client id is one the profile expects to stay available (DE.PM-1). */
  watch: Watch | undefined = undefined;

  constructor(client: ClientInfo, now: number) {
    this.client = client;
    this.since = now;
    this.scanStart = now;
    this.undeliverableStart = now;
  }
}
