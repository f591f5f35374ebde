/**
 * The framework profile: the one source of truth for what a profile may contain. The loader
 * validates with it, the JSON Schema (profile.schema.json) is generated from it and the reference
 * in docs/profile.md is generated from that, so every `.describe()` text here is user documentation.
 *
 * Every object is strict: an unknown key is an error, never silently ignored.
 */
import { z } from 'zod';
import { sections } from './sections/index.js';
import type { SectionShape } from './sections/index.js';
import type { Section } from './sections/section.js';
import { show } from './messages.js';
import { size, duration, pathString, pathOrPaths, integerRange } from './primitives.js';
import { proxyProtocolSchema } from './proxy-protocol.js';
export { size, duration, pathString } from './primitives.js';

export const PROTOCOLS = ['mqtt', 'mqtts', 'ws', 'wss'] as const;
export const TLS_PROTOCOLS: readonly string[] = ['mqtts', 'wss'];
export const WS_PROTOCOLS: readonly string[] = ['ws', 'wss'];
export const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
export const CLIENT_CERTIFICATE_MODES = ['none', 'optional', 'required'] as const;
export const CERTIFICATE_IDENTITIES = ['cn', 'san-dns', 'san-uri', 'san-email'] as const;
export const AUTH_FACTORS = ['password', 'certificate'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const TIERS = [1, 2, 3, 4] as const;
export const TIER_NAMES: Readonly<Record<(typeof TIERS)[number], string>> = {
  1: 'Partial',
  2: 'Risk-Informed',
  3: 'Repeatable',
  4: 'Adaptive',
};
/** A CSF category id: two upper-case letters, a dot, two upper-case letters (PR.AC, DE.CM). */
export const CATEGORY_PATTERN = /^[A-Z]{2}\.[A-Z]{2}$/;

/** Defaults of the TLS keys, applied after a listener's `tls` is merged over the top-level `tls`. */
export const TLS_DEFAULTS = {
  minVersion: 'TLSv1.2',
  clientCertificate: 'none',
  handshakeTimeout: '10s',
} as const;
export const DEFAULT_WS_PATH = '/mqtt';
export const DEFAULT_HOST = '127.0.0.1';
export const MIN_PACKET_SIZE = 64;
export const MAX_PACKET_SIZE = 256 * 1024 * 1024;
const MAX_TIMEOUT = 86_400_000; // 24h: far beyond any sane timeout, well inside setTimeout's range

/**
 * Defaults that are documented (JSON Schema `default`, the reference) but applied in code, not by
 * zod: TLS keys (applied after the listener/top-level merge) and the WebSocket path.
 */
export const documentedDefaults = z.registry<{ default: unknown }>();

const tierSchema = z.literal(TIERS);

/** The TLS keys; used for the top-level `tls` defaults and for each listener's own `tls`. */
export const tlsSchema = z.strictObject({
  cert: pathString()
    .optional()
    .describe('Server certificate chain (PEM file). Every mqtts and wss listener needs one, from its own `tls` or the top-level `tls`.'),
  key: pathString()
    .optional()
    .describe('Private key of the server certificate (PEM file). Every mqtts and wss listener needs one. Keep it readable by the broker only.'),
  ca: pathOrPaths()
    .optional()
    .describe('CA certificate(s) that client certificates must chain to (PEM file or list of files). Required when `clientCertificate` is optional or required; the system CAs are never used for clients.'),
  crl: pathOrPaths()
    .optional()
    .describe('Certificate revocation list(s) (PEM file or list of files). Client certificates revoked there are rejected.'),
  minVersion: z
    .enum(TLS_VERSIONS)
    .optional()
    .describe('Lowest TLS protocol version accepted. Default by tier of PR.IP: TLSv1.2 at tiers 1–2, TLSv1.3 from tier 3 (also the floor there; docs/tiers.md).'),
  ciphers: z
    .string()
    .min(1)
    .optional()
    .describe("OpenSSL cipher list for TLS 1.2 connections (TLS 1.3 suites are not affected). When omitted, Bastion's built-in hardened list is used."),
  clientCertificate: z
    .enum(CLIENT_CERTIFICATE_MODES)
    .optional()
    .describe('Whether clients are asked for a certificate: none (not asked), optional (asked; a certificate that is presented must be valid), required (clients without a valid certificate are rejected during the handshake). Default by tier of PR.AC: none at tiers 1–2, required from tier 3 (also the floor there; docs/tiers.md).'),
  handshakeTimeout: duration({ min: 1, max: MAX_TIMEOUT })
    .optional()
    .describe('Time a client has to complete the TLS handshake before the connection is dropped.')
    .register(documentedDefaults, { default: TLS_DEFAULTS.handshakeTimeout }),
});

export const listenerSchema = z.strictObject({
  name: z
    .string()
    .min(1)
    .optional()
    .describe('Name of the listener in logs and events; must be unique. Defaults to `<protocol>:<port>`, e.g. `mqtts:8883`.'),
  protocol: z
    .enum(PROTOCOLS)
    .describe('Transport: mqtt (MQTT over TCP), mqtts (MQTT over TLS), ws (MQTT over WebSocket), wss (MQTT over WebSocket over TLS). mqtt and ws carry passwords in clear text: use them on loopback only, or behind a TLS-terminating proxy.'),
  host: z
    .string()
    .min(1)
    .default(DEFAULT_HOST)
    .describe('Address to bind. The default accepts local connections only; use 0.0.0.0 or :: to accept remote ones.'),
  port: integerRange(0, 65535).describe('TCP port to listen on (0 to 65535). 0 lets the operating system pick a free port.'),
  path: z
    .string()
    .regex(/^\//, { error: (iss) => `expected a path starting with "/", got ${show(iss.input)}` })
    .optional()
    .describe('HTTP path of the WebSocket endpoint (ws and wss listeners only).')
    .register(documentedDefaults, { default: DEFAULT_WS_PATH }),
  tls: tlsSchema
    .optional()
    .describe('TLS settings of this listener (mqtts and wss only), merged over the top-level `tls`: keys set here win.'),
  proxyProtocol: proxyProtocolSchema
    .optional()
    .describe('PROXY protocol v1/v2 behind load balancers (docs/proxy-protocol.md): the client address from the header of a trusted balancer is the one access lists, bans, limits, events and client listings use. Read before TLS and WebSocket.'),
});

export const authenticationSchema = z.strictObject({
  anonymous: z
    .boolean()
    .default(false)
    .describe('Allow clients that present no credentials at all (no username and password, no client certificate).'),
  passwords: z
    .strictObject({
      file: pathString().describe('The users file: usernames and password hashes, one user per line.'),
    })
    .optional()
    .describe('Enables username/password authentication against a users file.'),
  certificates: z
    .strictObject({
      identity: z
        .enum(CERTIFICATE_IDENTITIES)
        .default('cn')
        .describe("Certificate field that names the client: cn (subject common name), or the first subject alternative name of type DNS (san-dns), URI (san-uri) or e-mail (san-email)."),
      clientIdMustMatch: z
        .boolean()
        .default(false)
        .describe('Reject clients whose MQTT client id is not exactly their certificate identity.'),
    })
    .optional()
    .describe('Enables client-certificate identity: a client presenting a valid certificate (see `tls.clientCertificate`) is identified by it. `{}` enables it with the defaults.'),
  require: z
    .array(z.enum(AUTH_FACTORS))
    .optional()
    .describe("Factors every client must present, all of them valid: ['certificate', 'password'] makes authentication two-factor (PR.CS-3). When omitted, any one configured factor is enough."),
});

export const limitsSchema = z.strictObject({
  maxPacketSize: size({ min: MIN_PACKET_SIZE, max: MAX_PACKET_SIZE })
    .prefault('256KiB')
    .describe('Largest MQTT packet accepted (64 bytes to 256MiB); a client sending a larger one is disconnected.'),
  connectTimeout: duration({ min: 1, max: MAX_TIMEOUT })
    .prefault('10s')
    .describe('Time a client has, once its connection is open, to send its MQTT CONNECT packet.'),
});

export const sysSchema = z.strictObject({
  subscribers: z
    .array(z.string().min(1))
    .default(() => [])
    .describe('Usernames allowed to subscribe to $SYS/# (broker statistics). Nobody may ever publish to $SYS, whatever this says.'),
});

export const loggingSchema = z.strictObject({
  level: z
    .enum(LOG_LEVELS)
    .default('info')
    .describe('Least severe level that is logged; silent turns logging off.'),
});

function sectionShape(): SectionShape {
  const shape: Record<string, z.ZodType> = {};
  for (const [key, section] of Object.entries(sections)) shape[key] = (section as Section<z.ZodType, unknown>).schema.optional();
  return shape as SectionShape;
}

export const profileSchema = z.strictObject({
  $schema: z
    .string()
    .optional()
    .describe('URL or path of the JSON Schema (profile.schema.json), for editor completion and checking. Ignored by Bastion.'),
  version: z.literal(1).describe('Profile format version. Always 1.'),
  name: z.string().min(1).optional().describe('Name of this deployment, used in logs and reports.'),
  tier: tierSchema
    .default(1)
    .describe('NIST CSF implementation tier this deployment targets: 1 Partial, 2 Risk-Informed, 3 Repeatable, 4 Adaptive. Each tier is a preset of defaults for what the profile leaves out and a floor that explicit settings may not go below (unless `exceptions` records it); docs/tiers.md has the table.'),
  tiers: z
    .record(z.string().regex(CATEGORY_PATTERN), tierSchema, {
      error: (iss) =>
        iss.code === 'invalid_key'
          ? `invalid category ${show(iss.input)}: expected two upper-case letters, a dot and two upper-case letters, like PR.AC`
          : undefined,
    })
    .optional()
    .describe('Tier overrides per CSF category, e.g. `{ PR.AC: 3 }`. Keys are category ids (two upper-case letters, a dot, two upper-case letters); a category not listed uses `tier`.'),
  listeners: z
    .array(listenerSchema)
    .min(1)
    .prefault(() => [{ protocol: 'mqtts' as const, port: 8883 }])
    .describe('Endpoints the broker accepts connections on; at least one. When omitted: one mqtts listener on 127.0.0.1:8883, which takes its certificate from the top-level `tls`.'),
  tls: tlsSchema
    .optional()
    .describe('TLS defaults for every mqtts and wss listener; a listener\'s own `tls` is merged over them.'),
  authentication: authenticationSchema.prefault({}).describe('How clients prove who they are.'),
  limits: limitsSchema.prefault({}).describe('Resource limits applied to every connection.'),
  sys: sysSchema.prefault({}).describe('Access to the $SYS/# broker status topics.'),
  logging: loggingSchema.prefault({}).describe('Broker logging.'),
  dataDir: pathString()
    .optional()
    .describe('Directory for persistent state (sessions, retained messages). When omitted, the broker chooses.'),
  ...sectionShape(),
});

/** What a user writes: the profile file's shape, for typed embedding (`const p: ProfileInput = {...}`). */
export type ProfileInput = z.input<typeof profileSchema>;
/** What the schema alone produces (sizes and durations as numbers, defaults applied); see `Profile`. */
export type ParsedProfile = z.output<typeof profileSchema>;
