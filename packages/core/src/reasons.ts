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
  | 'tls-handshake-failed'
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
  // the connection ends in the handshake, before any MQTT packet: the codes are for completeness
  'tls-handshake-failed': { v5: 0x87, connack: 5 },
  'internal-error': { v5: 0x80, connack: 3 },
});

/**
 * The reason for a failed TLS handshake: `certificate-rejected` when a certificate was at fault
 * (none sent where one is required, an unknown CA, expired, revoked …: OpenSSL's codes and messages
 * name the certificate), else `tls-handshake-failed` (no shared cipher, a protocol version below
 * the minimum, a handshake timeout, a client that hung up).
 */
export function tlsFailureReason(err: { code?: unknown; message?: unknown }): 'certificate-rejected' | 'tls-handshake-failed' {
  const code = typeof err.code === 'string' ? err.code : '';
  const message = typeof err.message === 'string' ? err.message : '';
  return /CERTIFICATE|_CA$/.test(code) || /certificate/i.test(message) ? 'certificate-rejected' : 'tls-handshake-failed';
}
