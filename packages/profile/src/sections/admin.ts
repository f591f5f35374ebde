/**
 * `admin`: the authenticated admin API (PR.AC-3 for who may call it; the actions it offers serve
 * PR.AC-5, PR.SS-4, RS.RP-2, RS.RP-3 and ID.AM-1). Off unless the section is present. Callers prove
 * who they are with a bearer token (only its sha256 hash is here) or a client certificate whose CN is
 * allowed; anonymous access exists only for explicit development setups on loopback.
 *
 * Rules applied here: a host that is not loopback needs `tls`; from tier 3 of PR.AC the API always
 * needs `tls`; there must be a way in (a token, a certificate CN, or dev-only anonymous access).
 */
import { z } from 'zod';
import { defineSection } from './section.js';
import { duration, integerRange, pathOrPaths, pathString, size } from '../primitives.js';

export const DEFAULT_ADMIN_PORT = 8884;
const LOOPBACK_HOSTS: readonly string[] = ['127.0.0.1', '::1', 'localhost'];

const adminTls = z.strictObject({
  cert: pathString().describe('Server certificate chain of the admin endpoint (PEM file).'),
  key: pathString().describe('Private key of that certificate (PEM file).'),
  ca: pathOrPaths()
    .optional()
    .describe('CA certificate(s) that admin client certificates must chain to. Required when `clientCertificate` is optional or required.'),
  crl: pathOrPaths().optional().describe('Certificate revocation list(s); admin client certificates revoked there are rejected.'),
  minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2').describe('Lowest TLS version accepted.'),
  clientCertificate: z
    .enum(['none', 'optional', 'required'])
    .default('none')
    .describe('Ask callers for a client certificate: none; optional (a certificate that is sent must be valid; a token still works without one); required (mutual TLS: no valid certificate, no connection).'),
  handshakeTimeout: duration({ min: 1, max: 60_000 }).prefault('10s').describe('Time a caller has to finish the TLS handshake.'),
});

const token = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9._@-]{1,64}$/, { error: 'a token name is 1 to 64 letters, digits, ".", "_", "@" or "-"' })
    .describe('Who holds the token (e.g. `ops`, `ci`); recorded as `token:<name>` in every admin event. Never the token itself.'),
  hash: z
    .string()
    .regex(/^sha256:[0-9a-f]{64}$/, { error: 'expected sha256:<64 lower-case hex digits>; `bastion admin token` prints the line to paste' })
    .describe('`sha256:<hex>` of the token, as printed by `bastion admin token`. The token itself is never in the profile (use `${env:NAME}` to keep even the hash out of the file).'),
  readOnly: z.boolean().default(false).describe('The holder may only read (GET): list clients, bans, ACL and users, but change nothing.'),
});

const schema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Turn the admin API on or off; the section being present turns it on.'),
    host: z
      .string()
      .min(1)
      .default('127.0.0.1')
      .describe('Address to bind. The default accepts local callers only; any other address requires `tls`.'),
    port: integerRange(0, 65535)
      .default(DEFAULT_ADMIN_PORT)
      .describe('TCP port (0 lets the operating system pick one; the bound URL is logged as "admin API listening").'),
    tls: adminTls.optional().describe('Serve HTTPS (and, with `clientCertificate`, authenticate callers by certificate). Required off loopback and from tier 3 of PR.AC.'),
    tokens: z.array(token).default(() => []).describe('Bearer tokens that may call the API, by their hash.'),
    certificates: z
      .strictObject({
        allow: z.array(z.string().min(1)).min(1).describe('Client-certificate subject CNs allowed to call the API (recorded as `cert:<CN>`).'),
      })
      .optional()
      .describe('Authenticate callers by client certificate (needs `tls.clientCertificate` optional or required, and `tls.ca`).'),
    anonymous: z
      .boolean()
      .default(false)
      .describe('No credentials at all. Refused unless `dev: true` and `host` is loopback: for a developer laptop, never a deployment.'),
    dev: z.boolean().default(false).describe('Marks this as a development setup; the only thing it allows is `anonymous: true` on loopback.'),
    maxBodySize: size({ min: 1024, max: 16 * 1024 * 1024 }).prefault('1MiB').describe('Largest request body accepted (an ACL replaced whole is the largest).'),
    authFailures: z
      .strictObject({
        perIp: z
          .union([
            z.literal(false),
            z.strictObject({
              rate: integerRange(1, 1_000_000).default(10).describe('Failed authentications allowed per window.'),
              per: duration({ min: 1_000, max: 86_400_000 }).prefault('1m').describe('The window; it opens with the first failure.'),
            }),
          ])
          .prefault({})
          .describe('Failed authentications (401) from one remote address: `{ rate, per }`, `rate` failures (default 10) in a window `per` (default 1m) that opens with the first failure. The failure that spends the budget locks the address out until its window ends: its requests get 429 with Retry-After and their credentials are not checked, a right token included. false = no limit.'),
        capacity: integerRange(1, 1_000_000).default(10_000).describe('Most remote addresses remembered; when full, the oldest window is forgotten first.'),
      })
      .prefault({})
      .describe('A budget of failed logins per caller address (password guessing against tokens; a lockout is a `rate.limited` event).'),
  })
  .describe('The admin API: list and kick clients, ban, change the ACL and users, live, over authenticated HTTP(S). Off when absent. See docs/admin.md.');

/** The resolved `admin` section: paths absolute, defaults applied. Undefined = the API is off. */
export interface AdminSettings {
  host: string;
  port: number;
  tls?: {
    cert: string;
    key: string;
    ca: string[];
    crl: string[];
    minVersion: 'TLSv1.2' | 'TLSv1.3';
    clientCertificate: 'none' | 'optional' | 'required';
    /** Milliseconds. */
    handshakeTimeout: number;
  };
  tokens: Array<{ name: string; hash: string; readOnly: boolean }>;
  /** CNs; empty when certificates do not authenticate. */
  certificates: { allow: string[] };
  anonymous: boolean;
  dev: boolean;
  /** Bytes. */
  maxBodySize: number;
  /** `perIp` undefined: no limit. `per` in milliseconds. */
  authFailures: { perIp: { rate: number; per: number } | undefined; capacity: number };
}

export const adminSection = defineSection({
  key: 'admin',
  schema,
  resolve(parsed, ctx): AdminSettings | undefined {
    if (parsed === undefined || !parsed.enabled) return undefined;
    const list = (v: string | string[] | undefined) => (v === undefined ? [] : Array.isArray(v) ? v : [v]).map(ctx.abs);
    const loopback = LOOPBACK_HOSTS.includes(parsed.host);
    const tls = parsed.tls && {
      cert: ctx.abs(parsed.tls.cert),
      key: ctx.abs(parsed.tls.key),
      ca: list(parsed.tls.ca),
      crl: list(parsed.tls.crl),
      minVersion: parsed.tls.minVersion,
      clientCertificate: parsed.tls.clientCertificate,
      handshakeTimeout: parsed.tls.handshakeTimeout,
    };
    const allow = parsed.certificates?.allow ?? [];

    if (!loopback && !tls) ctx.issue(['host'], `${parsed.host} is not loopback: set admin.tls (tokens and passwords must not cross a network in clear text)`);
    // HTTPS on loopback too from tier 3 of PR.AC: a tier floor (see `tiers` below), so an exception can waive it.
    if (tls && tls.clientCertificate !== 'none' && tls.ca.length === 0) ctx.issue(['tls', 'ca'], `clientCertificate is ${tls.clientCertificate}: set tls.ca to verify admin client certificates`);
    if (allow.length > 0 && (!tls || tls.clientCertificate === 'none')) ctx.issue(['certificates'], 'certificates.allow needs tls.clientCertificate optional or required');
    if (parsed.anonymous) {
      if (!parsed.dev) ctx.issue(['anonymous'], 'anonymous admin access needs an explicit dev: true (development only)');
      if (!loopback) ctx.issue(['anonymous'], `anonymous admin access is only allowed on a loopback host, not ${parsed.host}`);
    } else if (parsed.tokens.length === 0 && allow.length === 0) {
      ctx.issue([], 'no way in: add a token (`bastion admin token` prints one) or certificates.allow');
    }
    const names = new Set<string>();
    parsed.tokens.forEach((t, i) => {
      if (names.has(t.name)) ctx.issue(['tokens', i, 'name'], `two tokens are named "${t.name}"`);
      names.add(t.name);
    });

    return {
      host: parsed.host,
      port: parsed.port,
      ...(tls ? { tls } : {}),
      tokens: parsed.tokens.map((t) => ({ name: t.name, hash: t.hash, readOnly: t.readOnly })),
      certificates: { allow: [...allow] },
      anonymous: parsed.anonymous,
      dev: parsed.dev,
      maxBodySize: parsed.maxBodySize,
      authFailures: { perIp: parsed.authFailures.perIp === false ? undefined : { ...parsed.authFailures.perIp }, capacity: parsed.authFailures.capacity },
    };
  },
  tiers: {
    category: 'PR.AC',
    controls: ['PR.AC-3', 'ID.AM-1', 'PR.SS-4', 'RS.RP-2', 'RS.RP-3'],
    example: { tokens: [{ name: 'ops', hash: `sha256:${'0'.repeat(64)}` }] },
    summary(v, control) {
      if (v === undefined) return control === undefined ? 'off unless configured' : '';
      const how = [v.tls ? `HTTPS${v.tls.clientCertificate === 'required' ? ' with client certificates' : ''}` : 'HTTP', `${v.tokens.length} token${v.tokens.length === 1 ? '' : 's'}`, ...(v.certificates.allow.length > 0 ? [`${v.certificates.allow.length} certificate CNs`] : [])];
      return `admin API on ${v.host}:${v.port} (${how.join(', ')}${v.anonymous ? ', anonymous dev access' : ''})`;
    },
    floors: [
      {
        control: 'PR.AC-3',
        from: 3,
        key: 'admin.tls',
        requirement: 'set — HTTPS even on loopback',
        check: (v) => (v !== undefined && v.tls === undefined ? { path: [], message: 'an admin API over plain HTTP' } : undefined),
      },
    ],
  },
});
