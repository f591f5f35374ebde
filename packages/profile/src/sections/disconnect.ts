/**
 * `disconnect` (PR.SS-2 automatic client disconnect, PR.SS-7 session renegotiation): the keepalive
 * a client may ask for, the idle timeout and the maximum connection age. The CONNECT timeout is
 * `limits.connectTimeout` and the TLS handshake timeout `tls.handshakeTimeout`.
 */
import { z } from 'zod';
import { duration, integerRange } from '../primitives.js';
import type { Tier } from '../types.js';
import { defineSection } from './section.js';

export interface DisconnectSettings {
  keepalive: {
    /** Seconds; 0 = no cap. */
    max: number;
    /** A client asking more than `max` gets `max` (cap) or is refused. */
    overMax: 'cap' | 'refuse';
    /** Refuse keepalive 0 (a client that never has to show it is alive). */
    refuseZero: boolean;
  };
  /** Milliseconds without PUBLISH or SUBSCRIBE from the client; 0 = off. */
  idleTimeout: number;
  /** Milliseconds a connection may last; 0 = off. */
  maxAge: number;
  /** Fraction of maxAge (0–0.5) by which each connection's age is shortened at random. */
  maxAgeJitter: number;
}

const DAY = 86_400_000;
const H = 3_600_000;
/** [tier 1, 2, 3, 4] */
const TIER_DEFAULTS: ReadonlyArray<DisconnectSettings> = [
  { keepalive: { max: 0, overMax: 'cap', refuseZero: false }, idleTimeout: 0, maxAge: 0, maxAgeJitter: 0.1 },
  { keepalive: { max: 3600, overMax: 'cap', refuseZero: false }, idleTimeout: 0, maxAge: 0, maxAgeJitter: 0.1 },
  { keepalive: { max: 1200, overMax: 'cap', refuseZero: true }, idleTimeout: 24 * H, maxAge: 24 * H, maxAgeJitter: 0.1 },
  { keepalive: { max: 600, overMax: 'cap', refuseZero: true }, idleTimeout: 6 * H, maxAge: 8 * H, maxAgeJitter: 0.1 },
];

const schema = z.strictObject({
  enabled: z.boolean().optional().describe('false turns the keepalive cap, idle timeout and maximum age off (the tier defaults too). Default true.'),
  keepalive: z
    .strictObject({
      max: integerRange(0, 65535).optional().describe('Largest keepalive a client may ask for, in seconds; 0 = no cap. Tier 1: none, tier 2: 3600, tier 3: 1200, tier 4: 600.'),
      overMax: z.enum(['cap', 'refuse']).optional().describe('A client asking for more than `max`: `cap` (it gets `max`: MQTT 3.1.1 cannot tell it, so it must ping within 1.5 × max or be disconnected) or `refuse` (CONNACK 5). Default cap.'),
      refuseZero: z.boolean().optional().describe('Refuse keepalive 0 (no keepalive: a dead client is only noticed by TCP). Default: from tier 3.'),
    })
    .optional()
    .describe('Keepalive a client may ask for at CONNECT (PR.SS-2).'),
  idleTimeout: z
    .union([z.literal(false), duration({ min: 1_000, max: 365 * DAY })])
    .optional()
    .describe('Disconnect a client that sends no PUBLISH or SUBSCRIBE for this long (keepalive pings do not count; a client that only receives counts as idle). false = off. Tier 1–2: off, tier 3: 24h, tier 4: 6h.'),
  maxAge: z
    .union([z.literal(false), duration({ min: 1_000, max: 365 * DAY })])
    .optional()
    .describe('Disconnect every connection after this long, so it reconnects with a fresh TLS handshake and keys (PR.SS-7). false = off. Tier 1–2: off, tier 3: 24h, tier 4: 8h.'),
  maxAgeJitter: z
    .number()
    .min(0)
    .max(0.5)
    .optional()
    .describe('Each connection\'s maximum age is shortened by a random part of up to this fraction, so a fleet that connected together does not reconnect together. Default 0.1.'),
});

export const disconnectSection = defineSection({
  key: 'disconnect',
  schema: schema.describe('Automatic client disconnect (PR.SS-2) and maximum connection age (PR.SS-7); see docs/limits.md.'),
  resolve(parsed: z.output<typeof schema> | undefined, ctx): DisconnectSettings | undefined {
    if (parsed?.enabled === false) return undefined;
    const tier: Tier = ctx.tierFor('PR.SS');
    const d = TIER_DEFAULTS[tier - 1] as DisconnectSettings;
    const k = parsed?.keepalive;
    const off = (v: number | false | undefined, fallback: number): number => (v === false ? 0 : (v ?? fallback));
    return {
      keepalive: { max: k?.max ?? d.keepalive.max, overMax: k?.overMax ?? d.keepalive.overMax, refuseZero: k?.refuseZero ?? d.keepalive.refuseZero },
      idleTimeout: off(parsed?.idleTimeout, d.idleTimeout),
      maxAge: off(parsed?.maxAge, d.maxAge),
      maxAgeJitter: parsed?.maxAgeJitter ?? d.maxAgeJitter,
    };
  },
});
