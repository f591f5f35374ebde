/**
 * Why something was refused. Each reason maps to an MQTT 5 reason code and to the MQTT 3.1.1 answer,
 * so no control has to change when MQTT 5 clients arrive (Aedes 1.x speaks 3.1.1 only).
 */
export type DenyReason =
  | 'not-authorized'
  | 'bad-credentials'
  | 'client-id-rejected'
  | 'banned'
  | 'quota-exceeded'
  | 'rate-limited'
  | 'packet-too-large'
  | 'topic-invalid'
  | 'server-busy'
  | 'use-another-server'
  | 'connection-rate-exceeded'
  | 'certificate-rejected'
  | 'internal-error';

interface ReasonCodes {
  /** MQTT 5 reason code (CONNACK / DISCONNECT / PUBACK / SUBACK). */
  readonly v5: number;
  /** MQTT 3.1.1 CONNACK return code used when the refusal happens at CONNECT. */
  readonly connack: 1 | 2 | 3 | 4 | 5;
}

export const REASON_CODES: Readonly<Record<DenyReason, ReasonCodes>> = Object.freeze({
  'not-authorized': { v5: 0x87, connack: 5 },
  'bad-credentials': { v5: 0x86, connack: 4 },
  'client-id-rejected': { v5: 0x85, connack: 2 },
  banned: { v5: 0x8a, connack: 5 },
  'quota-exceeded': { v5: 0x97, connack: 3 },
  'rate-limited': { v5: 0x96, connack: 3 },
  'packet-too-large': { v5: 0x95, connack: 3 },
  'topic-invalid': { v5: 0x90, connack: 5 },
  'server-busy': { v5: 0x89, connack: 3 },
  'use-another-server': { v5: 0x9c, connack: 3 },
  'connection-rate-exceeded': { v5: 0x9f, connack: 3 },
  'certificate-rejected': { v5: 0x87, connack: 5 },
  'internal-error': { v5: 0x80, connack: 3 },
});
