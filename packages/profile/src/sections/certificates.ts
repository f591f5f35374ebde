/**
 * `certificates`: the broker's own TLS material over time. Server certificate, key, CA and CRL
 * files of every TLS listener reload when they change, without dropping connected clients
 * (RC.RP-5); TLS session-ticket keys rotate on a schedule so a resumed session cannot outlive it
 * (PR.SS-7); the broker warns before its own or a connected client's certificate expires (ID.AM-4).
 * Always on with the tier's defaults; the section only tunes it.
 *
 * Tier defaults for `ticketKeyRotation` (PR.SS): 1: 24h, 2: 12h, 3: 1h, 4: 15m.
 */
import { z } from 'zod';
import { defineSection } from './section.js';
import { duration } from '../primitives.js';
import { formatDuration } from '../units.js';
import type { Tier } from '../types.js';

const DAY = 86_400_000;
export const TICKET_ROTATION_BY_TIER: Readonly<Record<Tier, number>> = { 1: DAY, 2: DAY / 2, 3: DAY / 24, 4: DAY / 96 };

const schema = z
  .strictObject({
    watch: z
      .boolean()
      .default(true)
      .describe("Watch each TLS listener's `cert`, `key`, `ca` and `crl` files and load them again when they change (besides SIGHUP and the embedding API): new handshakes get the new files, connected clients stay. A certificate that does not parse, does not match its key or is outside its validity is refused and the previous one stays."),
    sighup: z
      .boolean()
      .default(true)
      .describe('Reload the TLS files and the revocation CRLs on SIGHUP. Set false when an embedding application uses SIGHUP for something else.'),
    ticketKeyRotation: z
      .union([duration({ min: 1000, max: 7 * DAY }), z.literal(false)], {
        error: () => 'expected a duration like 1h (at least 1s, at most 7d), or false',
      })
      .optional()
      .describe('How often the TLS session-ticket keys of every TLS listener are replaced (PR.SS-7): a session resumed after a rotation falls back to a full handshake. false keeps one key for the life of the process. Default by tier of PR.SS: 1: 24h, 2: 12h, 3: 1h, 4: 15m.'),
    expiryWarning: duration({ min: 0, max: 3650 * DAY })
      .prefault('30d')
      .describe('Raise `certificate.expiring` (and log a warning) when a listener certificate, or the certificate of a connecting or connected client, expires within this time. 0 turns the warning off.'),
  })
  .describe("The broker's TLS material over time: hot reload of certificate files, session-ticket key rotation, expiry warnings. On with defaults when absent. See docs/certificates.md.");

/** The resolved `certificates` section (always present: defaults apply when the key is absent). */
export interface CertificateSettings {
  watch: boolean;
  sighup: boolean;
  /** Milliseconds; undefined = never rotate. */
  ticketKeyRotation?: number;
  /** Milliseconds; 0 = no warning. */
  expiryWarning: number;
}

export const certificatesSection = defineSection({
  key: 'certificates',
  schema,
  resolve(parsed, ctx): CertificateSettings {
    const p = parsed ?? schema.parse({});
    const rotation = p.ticketKeyRotation === undefined ? TICKET_ROTATION_BY_TIER[ctx.tierFor('PR.SS')] : p.ticketKeyRotation;
    const out: CertificateSettings = { watch: p.watch, sighup: p.sighup, expiryWarning: p.expiryWarning };
    if (rotation !== false) out.ticketKeyRotation = rotation;
    return out;
  },
  tiers: {
    category: 'PR.SS',
    controls: ['PR.SS-7', 'RC.RP-5', 'ID.AM-4'],
    summary(v, control) {
      const rotation = v.ticketKeyRotation === undefined ? 'session-ticket keys never rotate' : `session-ticket keys rotate every ${formatDuration(v.ticketKeyRotation)}`;
      const reload = `TLS files reloaded${v.watch ? ' on change' : ''}${v.sighup ? `${v.watch ? ',' : ''} on SIGHUP` : ''}${v.watch || v.sighup ? '' : ' only through the API'}`;
      const expiry = v.expiryWarning > 0 ? `expiry warning ${formatDuration(v.expiryWarning)} ahead` : 'no expiry warning';
      if (control === 'PR.SS-7') return v.ticketKeyRotation === undefined ? '' : rotation;
      if (control === 'RC.RP-5') return reload;
      if (control === 'ID.AM-4') return expiry;
      return `${rotation}; ${reload}; ${expiry}`;
    },
    floors: [
      {
        control: 'PR.SS-7',
        from: 3,
        key: 'certificates.ticketKeyRotation',
        requirement: 'on (not false)',
        check: (v) => (v.ticketKeyRotation === undefined ? { path: ['ticketKeyRotation'], message: 'session-ticket keys that never rotate' } : undefined),
      },
      {
        control: 'PR.SS-7',
        from: 4,
        key: 'certificates.ticketKeyRotation',
        requirement: 'at most 1h',
        check: (v) =>
          v.ticketKeyRotation !== undefined && v.ticketKeyRotation > DAY / 24
            ? { path: ['ticketKeyRotation'], message: `session-ticket keys rotated every ${formatDuration(v.ticketKeyRotation)}` }
            : undefined,
      },
    ],
  },
});
