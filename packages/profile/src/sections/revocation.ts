/**
 * `revocation` (RS.RP-1, PR.AC-1): client certificates checked against CRLs by Bastion itself, on
 * mqtts and wss alike, with each CRL's signature verified against its CA, `nextUpdate` honoured,
 * reloaded when the file changes (and on SIGHUP), and connected holders of a newly revoked
 * certificate disconnected. Off unless the section is present.
 *
 * Tier default for a stale CRL (past its nextUpdate): from tier 3 of PR.AC refuse every client of
 * that CA; below, accept and warn.
 */
import { z } from 'zod';
import { defineSection } from './section.js';
import { pathOrPaths } from '../primitives.js';

export const STALE_POLICIES = ['refuse', 'warn'] as const;
export const UNKNOWN_ISSUER_POLICIES = ['allow', 'refuse'] as const;

const schema = z
  .strictObject({
    crl: pathOrPaths().describe(
      'CRL file(s), PEM or DER, one per issuing CA (several CAs: list one CRL each). A client certificate whose serial a CRL of its issuer lists is refused, and a connected client presenting it is disconnected when the CRL changes.',
    ),
    ca: pathOrPaths()
      .optional()
      .describe("CA certificate(s) that sign the CRLs; each CRL must verify against one of them or it is refused. Default: every TLS listener's `tls.ca`."),
    stale: z
      .enum(STALE_POLICIES)
      .optional()
      .describe('What a CRL past its `nextUpdate` means for the clients of its CA: refuse (no new connection until a fresh CRL is loaded) or warn (accept, and raise a `crl.stale` event). Default: refuse from tier 3 of PR.AC, warn below.'),
    unknownIssuer: z
      .enum(UNKNOWN_ISSUER_POLICIES)
      .default('allow')
      .describe('A client certificate from a CA that no configured CRL covers: allow it (its revocation cannot be checked), or refuse it.'),
    watch: z
      .boolean()
      .default(true)
      .describe('Reload the CRL files when they change on disk (debounced), besides SIGHUP and the embedding API. A file that does not verify is refused and the previous CRL stays in force.'),
  })
  .describe("Certificate revocation checked by Bastion on every TLS listener (mqtts and wss): CRLs verified against their CA, reloaded live, and revoked clients disconnected within a second. Off when absent. See docs/certificates.md.");

/** The resolved `revocation` section: paths absolute, tier defaults applied. Undefined = off. */
export interface RevocationSettings {
  /** Absolute paths of the CRL files. */
  crl: string[];
  /** Absolute paths of the CA certificates that sign them; undefined = the listeners' `tls.ca`. */
  ca?: string[];
  stale: (typeof STALE_POLICIES)[number];
  unknownIssuer: (typeof UNKNOWN_ISSUER_POLICIES)[number];
  watch: boolean;
}

const list = (v: string | string[]): string[] => (Array.isArray(v) ? v : [v]);

export const revocationSection = defineSection({
  key: 'revocation',
  schema,
  resolve(parsed, ctx): RevocationSettings | undefined {
    if (parsed === undefined) return undefined;
    const out: RevocationSettings = {
      crl: [...new Set(list(parsed.crl).map((p) => ctx.abs(p)))],
      stale: parsed.stale ?? (ctx.tierFor('PR.AC') >= 3 ? 'refuse' : 'warn'),
      unknownIssuer: parsed.unknownIssuer,
      watch: parsed.watch,
    };
    if (parsed.ca !== undefined) out.ca = [...new Set(list(parsed.ca).map((p) => ctx.abs(p)))];
    return out;
  },
  tiers: {
    category: 'PR.AC',
    controls: ['RS.RP-1', 'PR.AC-1'],
    example: { crl: 'ca.crl' },
    summary: (v, control) =>
      v === undefined
        ? control === undefined
          ? 'off: client certificates are not checked against CRLs by Bastion'
          : ''
        : `${v.crl.length} CRL file${v.crl.length === 1 ? '' : 's'}${v.watch ? ' (reloaded on change)' : ''}, stale CRL: ${v.stale}, unknown issuer: ${v.unknownIssuer}; revoked clients are disconnected`,
    floors: [
      {
        control: 'RS.RP-1',
        from: 4,
        key: 'revocation',
        requirement: 'configured wherever client certificates are accepted',
        check: (v, ctx) =>
          v === undefined && ctx.listeners.some((l) => (l.protocol === 'mqtts' || l.protocol === 'wss') && l.tls.clientCertificate !== 'none')
            ? { path: [], message: 'client certificates that cannot be revoked (no revocation section)' }
            : undefined,
      },
    ],
  },
});
