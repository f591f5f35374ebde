/**
 * From a parsed YAML/JSON value (or an object given in code) to a resolved Profile, collecting
 * every problem on the way: env substitution, schema validation, then the checks that need the
 * whole profile (TLS merge, duplicate listeners, authentication factors).
 */
import { resolve as resolvePath } from 'node:path';
import type { z } from 'zod';
import type { Env, PathSegment } from './env.js';
import { substituteEnv } from './env.js';
import type { ProfileIssue } from './errors.js';
import type { Locator, Target } from './locate.js';
import { messageFor, missingKeyMessage, unknownKeyMessage } from './messages.js';
import type { ParsedProfile } from './schema.js';
import { DEFAULT_WS_PATH, TLS_DEFAULTS, TLS_PROTOCOLS, WS_PROTOCOLS, profileSchema } from './schema.js';
import type { Listener, ListenerTls, Profile, TlsDefaults } from './types.js';
import { sections } from './sections/index.js';
import type { SectionsOutput } from './sections/index.js';
import type { Section } from './sections/section.js';
import { parseDuration } from './units.js';
import { formatPath } from './exceptions.js';
import type { ProfileException } from './exceptions.js';
import { enforceFloors, tlsPreset } from './tiers.js';
import type { Tier } from './types.js';

export { formatPath };

export interface ResolveContext {
  file: string;
  /** Absolute. */
  baseDir: string;
  env: Env;
  locate: Locator;
}

export type Outcome = { ok: true; profile: Profile } | { ok: false; issues: ProfileIssue[] };


class Issues {
  readonly list: ProfileIssue[] = [];
  private readonly seen = new Set<string>();
  constructor(private readonly ctx: ResolveContext) {}

  add(path: readonly PathSegment[], target: Target, message: string): void {
    const { line, column } = this.ctx.locate(path, target);
    const issue: ProfileIssue = { file: this.ctx.file, line, column, path: formatPath(path), message };
    const id = `${line}:${column}:${issue.path}:${message}`;
    if (this.seen.has(id)) return;
    this.seen.add(id);
    this.list.push(issue);
  }

  /** In source order (a stable sort, so objects given in code keep the order problems were found). */
  sorted(): ProfileIssue[] {
    return [...this.list].sort((a, b) => a.line - b.line || a.column - b.column);
  }
}

// --- zod issues → profile issues ------------------------------------------------------------

interface SchemaNode {
  _zod: { def: { type: string; shape?: Record<string, SchemaNode>; element?: SchemaNode; innerType?: SchemaNode; in?: SchemaNode; valueType?: SchemaNode } };
}

const WRAPPERS = new Set(['optional', 'default', 'prefault', 'nullable', 'readonly', 'nonoptional', 'catch']);

function unwrap(schema: SchemaNode | undefined): SchemaNode | undefined {
  let s = schema;
  while (s !== undefined) {
    const def = s._zod.def;
    if (WRAPPERS.has(def.type)) s = def.innerType;
    else if (def.type === 'pipe') s = def.in;
    else return s;
  }
  return undefined;
}

/** The keys an object at `path` may have, for "did you mean" suggestions. */
function knownKeysAt(path: readonly PathSegment[]): string[] {
  let s = unwrap(profileSchema as unknown as SchemaNode);
  for (const segment of path) {
    if (s === undefined) return [];
    const def = s._zod.def;
    if (def.type === 'object') s = unwrap(def.shape?.[String(segment)]);
    else if (def.type === 'array') s = unwrap(def.element);
    else if (def.type === 'record') s = unwrap(def.valueType);
    else return [];
  }
  const shape = s?._zod.def.type === 'object' ? s._zod.def.shape : undefined;
  return shape ? Object.keys(shape) : [];
}

function valueAt(root: unknown, path: readonly PathSegment[]): { found: boolean; value: unknown } {
  let node = root;
  for (const segment of path) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, segment)) return { found: false, value: undefined };
    node = (node as Record<PropertyKey, unknown>)[segment];
  }
  return { found: true, value: node };
}

function startsWith(path: readonly PathSegment[], prefix: readonly PathSegment[]): boolean {
  return prefix.length <= path.length && prefix.every((segment, i) => path[i] === segment);
}

function reportSchemaIssues(issues: Issues, zodIssues: readonly z.core.$ZodIssue[], input: unknown, skip: readonly PathSegment[][]): void {
  // Unknown keys first: at the same position as a missing key ("prot" for "protocol"), they are the cause.
  const ordered = [...zodIssues.filter((i) => i.code === 'unrecognized_keys'), ...zodIssues.filter((i) => i.code !== 'unrecognized_keys')];
  for (const iss of ordered) {
    const path = iss.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    // A value whose ${env:...} could not be substituted has been reported already.
    if (skip.some((s) => startsWith(path, s) || (iss.code === 'invalid_union' && startsWith(s, path)))) continue;
    if (iss.code === 'unrecognized_keys') {
      const known = knownKeysAt(path);
      for (const key of iss.keys) issues.add([...path, key], 'key', unknownKeyMessage(key, known));
      continue;
    }
    if (iss.code === 'invalid_key') {
      issues.add(path, 'key', iss.message);
      continue;
    }
    const last = path[path.length - 1];
    if (typeof last === 'string') {
      const parent = valueAt(input, path.slice(0, -1));
      const own = valueAt(input, path);
      if (parent.found && parent.value !== null && typeof parent.value === 'object' && (!own.found || own.value === undefined)) {
        issues.add(path, 'parent', missingKeyMessage(last));
        continue;
      }
    }
    issues.add(path, 'value', iss.message);
  }
}

// --- the checks that need the whole profile ---------------------------------------------------

function tlsPaths(tls: NonNullable<ParsedProfile['tls']>, abs: (p: string) => string): TlsDefaults {
  const out: TlsDefaults = {};
  const list = (v: string | string[]): string[] => (Array.isArray(v) ? v : [v]).map(abs);
  if (tls.cert !== undefined) out.cert = abs(tls.cert);
  if (tls.key !== undefined) out.key = abs(tls.key);
  if (tls.ca !== undefined) out.ca = list(tls.ca);
  if (tls.crl !== undefined) out.crl = list(tls.crl);
  if (tls.minVersion !== undefined) out.minVersion = tls.minVersion;
  if (tls.ciphers !== undefined) out.ciphers = tls.ciphers;
  if (tls.clientCertificate !== undefined) out.clientCertificate = tls.clientCertificate;
  if (tls.handshakeTimeout !== undefined) out.handshakeTimeout = tls.handshakeTimeout;
  return out;
}

function finish(parsed: ParsedProfile, ctx: ResolveContext, issues: Issues, listenersGiven: boolean): Profile | undefined {
  const abs = (p: string): string => resolvePath(ctx.baseDir, p);
  const tiers = { ...parsed.tiers };
  const tierOf = (id: string): Tier => tiers[id.slice(0, 5)] ?? parsed.tier;
  // The tier's defaults for what a TLS listener leaves out (docs/tiers.md); floors are checked below.
  const preset = tlsPreset(tierOf);
  const topTls = parsed.tls === undefined ? undefined : tlsPaths(parsed.tls, abs);
  const listeners: Listener[] = [];
  const byName = new Map<string, number>();
  const byAddress = new Map<string, number>();

  parsed.listeners.forEach((l, i) => {
    const at = ['listeners', i] as const;
    const name = l.name ?? `${l.protocol}:${l.port}`;
    const isTls = TLS_PROTOCOLS.includes(l.protocol);
    const isWs = WS_PROTOCOLS.includes(l.protocol);
    if (!isWs && l.path !== undefined) issues.add([...at, 'path'], 'key', `"path" only applies to ws and wss listeners, not ${l.protocol}`);
    if (!isTls && l.tls !== undefined) issues.add([...at, 'tls'], 'key', `"tls" only applies to mqtts and wss listeners, not ${l.protocol}`);

    const address = `${l.host}:${l.port}`;
    const sameAddress = l.port === 0 ? undefined : byAddress.get(address);
    if (sameAddress !== undefined) {
      issues.add([...at, 'port'], 'value', `${address} is already used by listeners[${sameAddress}]`);
    } else {
      if (l.port !== 0) byAddress.set(address, i);
      const sameName = byName.get(name);
      if (sameName !== undefined) {
        issues.add(l.name === undefined ? at : [...at, 'name'], 'value', `duplicate listener name "${name}" (also used by listeners[${sameName}]); give each listener its own name`);
      }
    }
    if (!byName.has(name)) byName.set(name, i);

    let tls: ListenerTls | undefined;
    if (isTls) {
      if (topTls === undefined && l.tls === undefined) {
        if (listenersGiven) {
          issues.add(at, 'value', `listener "${name}" uses ${l.protocol} but has no tls settings: set listeners[${i}].tls or the top-level tls`);
        } else {
          issues.add(['listeners'], 'parent', `the default listener "${name}" (used when listeners is omitted) needs tls settings: set the top-level tls, or declare listeners`);
        }
      } else {
        const merged: TlsDefaults = { ...topTls, ...(l.tls === undefined ? {} : tlsPaths(l.tls, abs)) };
        const where = `set it in listeners[${i}].tls or the top-level tls`;
        if (merged.cert === undefined) issues.add([...at, 'tls'], 'value', `listener "${name}" has no tls.cert: ${where}`);
        if (merged.key === undefined) issues.add([...at, 'tls'], 'value', `listener "${name}" has no tls.key: ${where}`);
        const clientCertificate = merged.clientCertificate ?? preset.clientCertificate;
        const ca = merged.ca ?? [];
        if (clientCertificate !== 'none' && ca.length === 0) {
          issues.add(
            [...at, 'tls'],
            'value',
            merged.clientCertificate === undefined
              ? `listener "${name}" asks for client certificates (the default at tier ${tierOf('PR.AC-1')} of PR.AC, docs/tiers.md) but has no tls.ca to verify them: set tls.ca`
              : `listener "${name}" asks for client certificates (clientCertificate: ${clientCertificate}) but has no tls.ca to verify them`,
          );
        }
        if (merged.cert !== undefined && merged.key !== undefined) {
          tls = {
            cert: merged.cert,
            key: merged.key,
            ca,
            crl: merged.crl ?? [],
            minVersion: merged.minVersion ?? preset.minVersion,
            ...(merged.ciphers === undefined ? {} : { ciphers: merged.ciphers }),
            clientCertificate,
            handshakeTimeout: merged.handshakeTimeout ?? parseDuration(TLS_DEFAULTS.handshakeTimeout),
          };
        }
      }
    }

    const { host, port } = l;
    const path = l.path ?? DEFAULT_WS_PATH;
    const pp = l.proxyProtocol;
    const proxy = pp === undefined ? {} : { proxyProtocol: { trusted: [...pp.trusted], required: pp.required, timeout: pp.timeout } };
    if (l.protocol === 'mqtt') listeners.push({ name, protocol: 'mqtt', host, port, ...proxy });
    else if (l.protocol === 'ws') listeners.push({ name, protocol: 'ws', host, port, path, ...proxy });
    else if (tls === undefined) return;
    else if (l.protocol === 'mqtts') listeners.push({ name, protocol: 'mqtts', host, port, tls, ...proxy });
    else listeners.push({ name, protocol: 'wss', host, port, path, tls, ...proxy });
  });

  const auth = parsed.authentication;
  const required = [...new Set(auth.require ?? [])];
  const at = ['authentication', 'require'] as const;
  if (required.includes('password') && auth.passwords === undefined) {
    issues.add(at, 'value', '"password" is required but authentication.passwords is not set');
  }
  if (required.includes('certificate')) {
    if (auth.certificates === undefined) issues.add(at, 'value', '"certificate" is required but authentication.certificates is not set');
    const asks = listeners.some((l) => (l.protocol === 'mqtts' || l.protocol === 'wss') && l.tls.clientCertificate !== 'none');
    if (!asks && listeners.length === parsed.listeners.length) {
      issues.add(at, 'value', '"certificate" is required but no listener asks for client certificates (set tls.clientCertificate)');
    }
  }
  if (auth.anonymous && required.length > 0) {
    issues.add(['authentication', 'anonymous'], 'value', 'anonymous clients cannot be allowed while authentication.require is set');
  }

  const sectionValues: Record<string, unknown> = {};
  for (const [key, section] of Object.entries(sections) as Array<[string, Section<z.ZodType, unknown>]>) {
    sectionValues[key] = section.resolve((parsed as Record<string, unknown>)[key], {
      abs,
      tierFor: tierOf,
      issue: (path, message) => issues.add([key, ...path], 'value', message),
    });
  }

  // Tier floors (docs/tiers.md): a setting below the floor of its tier is an error unless an exception covers it.
  enforceFloors({
    listeners,
    authentication: { anonymous: auth.anonymous, require: required, ...(auth.passwords ? { passwords: { file: abs(auth.passwords.file) } } : {}), ...(auth.certificates ? { certificates: { ...auth.certificates } } : {}) },
    sectionValues,
    exceptions: (sectionValues['exceptions'] as ProfileException[] | undefined) ?? [],
    tierFor: tierOf,
    report: (path, message) => issues.add(path, 'value', message),
  });

  if (issues.list.length > 0) return undefined;

  const profile: Profile = {
    ...(sectionValues as SectionsOutput),
    version: parsed.version,
    ...(parsed.name === undefined ? {} : { name: parsed.name }),
    tier: parsed.tier,
    tiers,
    listeners,
    ...(topTls === undefined ? {} : { tls: topTls }),
    authentication: {
      anonymous: auth.anonymous,
      ...(auth.passwords === undefined ? {} : { passwords: { file: abs(auth.passwords.file) } }),
      ...(auth.certificates === undefined ? {} : { certificates: { ...auth.certificates } }),
      require: required,
    },
    limits: { maxPacketSize: parsed.limits.maxPacketSize, connectTimeout: parsed.limits.connectTimeout },
    sys: { subscribers: [...parsed.sys.subscribers] },
    logging: { level: parsed.logging.level },
    ...(parsed.dataDir === undefined ? {} : { dataDir: abs(parsed.dataDir) }),
    source: ctx.file,
    baseDir: ctx.baseDir,
  };
  return profile;
}

/** Validates and resolves `raw` (the parsed file, or an object given in code). */
export function resolveValue(raw: unknown, ctx: ResolveContext): Outcome {
  const issues = new Issues(ctx);
  const { value, problems } = substituteEnv(raw, ctx.env);
  for (const p of problems) issues.add(p.path, 'value', p.message);

  const result = profileSchema.safeParse(value, { reportInput: true, error: (iss) => messageFor(iss) });
  if (!result.success) {
    reportSchemaIssues(
      issues,
      result.error.issues,
      value,
      problems.map((p) => p.path),
    );
    return { ok: false, issues: issues.sorted() };
  }
  if (problems.length > 0) return { ok: false, issues: issues.sorted() };
  const listenersGiven = value !== null && typeof value === 'object' && (value as Record<string, unknown>)['listeners'] !== undefined;
  const profile = finish(result.data, ctx, issues, listenersGiven);
  return profile === undefined ? { ok: false, issues: issues.sorted() } : { ok: true, profile };
}
