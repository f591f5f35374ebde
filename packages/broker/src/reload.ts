/**
 * Reloading the whole profile into a running broker (`broker.reload()`, SIGHUP in `bastion start`,
 * `bastion reload`, POST /v1/reload): everything is read and checked first, then applied whole, or
 * nothing is applied and the reasons are given.
 *
 *  1. read — the profile file again (and every file it points to, by building the controls from it:
 *     CRLs, certificates, keys; the users and ACL files are read too). Any error: nothing changes.
 *  2. plan — what differs from the running profile. A change the running broker cannot take live is
 *     a reload error, never half-done: listener addresses, packet-size and CONNECT limits, $SYS
 *     readers, persistence, controls that would be turned on, and settings of a control that has
 *     neither a built-in applier here nor a `reconfigure` hook (see controls.ts).
 *     Still in planning, the `prepare` hooks of the controls that change acquire what can fail — a
 *     new audit file opened, a metrics or admin server bound on its new address — or refuse the
 *     change ("restart required"). Any failure: whatever was prepared is released, nothing applied.
 *  3. apply — TLS material, authentication policy, users, ACL rules, access lists, bans; then the
 *     new profile becomes `broker.profile` and `reconfigure` hooks run (rate limits, protocol limits,
 *     auto-disconnect, detectors, responses, audit, metrics, admin, identify), taking over what
 *     their `prepare` acquired. Connected clients meet the new rules at once: users removed or
 *     re-passworded, clients no longer on the access lists or anonymous where that is now refused,
 *     and TLS clients the listener would no longer accept are disconnected; withdrawn ACL rights are
 *     withdrawn from live subscriptions; new limits count their next packet (docs/reload.md).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import tls from 'node:tls';
import { isDeepStrictEqual } from 'node:util';
import type { ClientInfo, Middleware, TlsOptions } from '@bastion/core';
import { secureContextOptions } from '@bastion/core';
import { readAclFile, readUsersFile, validateAccessLists } from '@bastion/middleware';
import type { AccessList, Acl, Bans, PasswordAuth, Revocation, UserRecord } from '@bastion/middleware';
import { formatProfileIssue, isProfileError } from '@bastion/profile';
import type { Listener, Profile, TlsListener } from '@bastion/profile';
import type { Logger } from 'pino';
import type { Bastion } from './broker.js';
import { RestartRequired, isReconfigurable, wireControls } from './controls.js';
import type { PreparedChange, Reconfigurable, ReconfigureContext, Service, WiredControl } from './controls.js';
import { loadTls } from './listeners.js';

export interface ReloadIssue {
  /** Where: a profile key path (`listeners[0]`), or `(root)`. */
  readonly path: string;
  readonly message: string;
  /** For profile errors: where in the file. */
  readonly file?: string;
  readonly line?: number;
  readonly column?: number;
}

export interface ReloadResult {
  readonly ok: boolean;
  /** The profile that was read (file path, `<inline>`, `<embedded default>`). */
  readonly source: string;
  /** What changed: applied when ok; what would have changed otherwise. */
  readonly changes: readonly string[];
  /** Why nothing was applied (empty when ok). */
  readonly issues: readonly ReloadIssue[];
}

/** One factory's controls in the running broker, by name (kept by buildBroker). */
export interface RunningWiring {
  readonly factory: WiredControl['factory'];
  readonly middleware: readonly string[];
  readonly services: readonly string[];
}

type Step = { what: string; run: () => void | Promise<void> };

/** One control's `prepare`, and what it acquired until its `reconfigure` takes it over. */
interface Preparation {
  readonly name: string;
  readonly path: string;
  readonly run: () => PreparedChange | undefined | Promise<PreparedChange | undefined>;
  prepared: PreparedChange | undefined;
  /** Handed to the control's `reconfigure`: no longer ours to abort. */
  handedOver: boolean;
}

interface Plan {
  issues: ReloadIssue[];
  changes: string[];
  /** Before the profile swap. */
  steps: Step[];
  /** After it (reconfigure hooks read `broker.profile`). */
  hooks: Step[];
  /** Run at the end of planning; released by `discardBuilt` unless applied. */
  prepares: Preparation[];
  /** The controls built from the new profile, to close once done. */
  built: WiredControl[];
}

/** Preparations by the plan's `built` list: `discardBuilt` (called once a reload is over, applied or not) releases the ones not taken over. */
const preparations = new WeakMap<readonly WiredControl[], Preparation[]>();

const issue = (path: string, message: string): ReloadIssue => ({ path, message });
const restart = (path: string, what: string): ReloadIssue => issue(path, `${what}: restart required`);
const show = (v: unknown): string => (v === undefined ? 'unset' : typeof v === 'string' ? v : JSON.stringify(v));

/** The value at a recorded read path (`listeners.0.tls.cert`, `acl#keys` for an object's key list). */
function valueAt(root: unknown, path: string): unknown {
  const [body, keysOf] = path.endsWith('#keys') ? [path.slice(0, -'#keys'.length), true] : [path, false];
  let node: unknown = root;
  for (const part of body === '' ? [] : body.split('.')) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  if (!keysOf) return node;
  return node !== null && typeof node === 'object' ? Object.keys(node).sort().join(',') : undefined;
}

/**
 * Labels, not settings: a control reading the profile's name or tier (to tag records) does not make a
 * new name or tier a change it must take; what a tier changes shows in the settings resolved from it.
 */
const LABELS: ReadonlySet<string> = new Set(['name', 'source', 'baseDir', 'version', 'tier', 'tiers', 'exceptions', 'attestations']);
function isLabel(path: string): boolean {
  return LABELS.has(path.split(/[.#]/, 1)[0] as string);
}

const isObject = (v: unknown): v is object => v !== null && typeof v === 'object';

/** Leaf paths below `prefix` where `a` and `b` differ (at most `limit`). */
function diffPaths(a: unknown, b: unknown, prefix: string, out: string[], limit = 8): void {
  if (out.length >= limit || isDeepStrictEqual(a, b)) return;
  if (!isObject(a) || !isObject(b) || Array.isArray(a) !== Array.isArray(b)) {
    out.push(prefix);
    return;
  }
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    diffPaths((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], prefix === '' ? k : `${prefix}.${k}`, out, limit);
  }
}

/**
 * The settings a factory read that differ between the profiles. A value read is compared as is; an
 * object read whose fields were not all walked (the deepest objects read) is compared whole, since
 * the control may keep it and read its fields later (detector thresholds are read per event).
 */
function changedReads(reads: ReadonlySet<string>, prev: Profile, next: Profile): string[] {
  const paths = [...reads].filter((p) => !isLabel(p));
  const objectAt = (p: string) => !p.endsWith('#keys') && (isObject(valueAt(prev, p)) || isObject(valueAt(next, p)));
  const objects = paths.filter(objectAt);
  const deepest = objects.filter((p) => !objects.some((q) => q.startsWith(`${p}.`)));
  const out = new Set<string>();
  for (const p of paths) {
    if (objectAt(p)) continue;
    if (!isDeepStrictEqual(valueAt(prev, p), valueAt(next, p))) out.add(p);
  }
  for (const p of deepest) {
    const found: string[] = [];
    diffPaths(valueAt(prev, p), valueAt(next, p), p, found);
    for (const f of found) out.add(f);
  }
  return [...out].sort();
}

function namesOf(w: WiredControl['wiring']): { middleware: string[]; services: string[] } {
  return { middleware: (w?.middleware ?? []).map((m) => m.name), services: (w?.services ?? []).map((s) => s.name) };
}

/** Why a TLS set cannot be installed, or undefined. */
function tlsProblem(t: TlsOptions): string | undefined {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(t.cert);
  } catch (err) {
    return `the certificate does not parse (${(err as Error).message})`;
  }
  try {
    if (!cert.checkPrivateKey(createPrivateKey(t.key))) return 'the certificate does not match the private key';
  } catch {
    return 'the private key does not parse (or is encrypted)';
  }
  const now = Date.now();
  if (new Date(cert.validTo).getTime() < now) return `the certificate expired on ${new Date(cert.validTo).toISOString()}`;
  if (new Date(cert.validFrom).getTime() > now) return `the certificate is not valid before ${new Date(cert.validFrom).toISOString()}`;
  try {
    tls.createSecureContext(secureContextOptions(t));
  } catch (err) {
    return `OpenSSL refuses the set (${(err as Error).message})`;
  }
  return undefined;
}

const isTls = (l: Listener): l is TlsListener => l.protocol === 'mqtts' || l.protocol === 'wss';

/** Whether a connected client still passes a listener's new TLS settings; the reason when it does not. */
function tlsRefusal(client: ClientInfo, next: TlsListener['tls'], cas: readonly X509Certificate[] | undefined): string | undefined {
  if (next.clientCertificate === 'required' && client.certificate === undefined) return 'the listener now requires a client certificate';
  if (next.minVersion === 'TLSv1.3' && client.tls !== undefined && client.tls.protocol !== 'TLSv1.3') return `the listener now requires TLSv1.3 (connected with ${client.tls.protocol ?? 'unknown'})`;
  if (cas !== undefined && client.certificate !== undefined && next.clientCertificate !== 'none') {
    try {
      const cert = new X509Certificate(client.certificate.raw.raw);
      if (!cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) return 'its certificate is not issued by the listener\'s new CA';
    } catch {
      return 'its certificate cannot be checked against the listener\'s new CA';
    }
  }
  return undefined;
}

async function planTls(broker: Bastion, prev: Profile, next: Profile, plan: Plan): Promise<boolean> {
  const installs: Array<{ i: number; l: TlsListener; material: TlsOptions; changedSettings: boolean; cas: X509Certificate[] | undefined }> = [];
  for (const [i, l] of next.listeners.entries()) {
    const before = prev.listeners[i];
    if (!isTls(l) || before === undefined || !isTls(before)) continue;
    let material: TlsOptions;
    try {
      material = await loadTls(l.tls, l.name);
    } catch (err) {
      plan.issues.push(issue(`listeners[${i}].tls`, (err as Error).message));
      continue;
    }
    const problem = tlsProblem(material);
    if (problem !== undefined) {
      plan.issues.push(issue(`listeners[${i}].tls`, `listener "${l.name}": ${problem}`));
      continue;
    }
    const changedSettings = !isDeepStrictEqual(before.tls, l.tls);
    if (changedSettings && before.tls.handshakeTimeout !== l.tls.handshakeTimeout) {
      plan.issues.push(restart(`listeners[${i}].tls.handshakeTimeout`, `listener ${l.name}: the TLS handshake timeout changed (${before.tls.handshakeTimeout} → ${l.tls.handshakeTimeout} ms)`));
      continue;
    }
    if (changedSettings) {
      const b = before.tls as unknown as Record<string, unknown>;
      const n = l.tls as unknown as Record<string, unknown>;
      const what = Object.keys(n).filter((k) => !isDeepStrictEqual(b[k], n[k])).map((k) => `${k} ${show(b[k])} → ${show(n[k])}`).join(', ');
      plan.changes.push(`listeners[${i}] (${l.name}): TLS ${what}`);
    }
    const cas = changedSettings && !isDeepStrictEqual(before.tls.ca, l.tls.ca) ? (material.ca as Buffer[] | undefined)?.map((c) => new X509Certificate(c)) : undefined;
    installs.push({ i, l, material, changedSettings, cas });
  }
  // Same settings everywhere: tls-certificates re-reads the files (refresh below). Otherwise every
  // TLS listener gets its checked set here (the control then follows the new files from scratch).
  if (!installs.some((x) => x.changedSettings)) return false;
  for (const { i, l, material, changedSettings, cas } of installs) {
    const coreName = broker.openListeners[i]?.name ?? l.name;
    plan.steps.push({
      what: `TLS of listener ${l.name}`,
      run: () => {
        broker.setListenerTls(coreName, material);
        if (!changedSettings) return;
        const refused = new Map<string, string>();
        for (const c of broker.clients()) {
          if (c.listener !== coreName) continue;
          const why = tlsRefusal(c, l.tls, cas);
          if (why !== undefined) refused.set(c.id, why);
        }
        for (const [id, why] of refused) broker.disconnect(id, 'kicked', `profile reloaded: ${why}`);
      },
    });
  }
  return true;
}

function planAuthentication(broker: Bastion, prev: Profile, next: Profile, plan: Plan): void {
  const a = prev.authentication;
  const b = next.authentication;
  if (!isDeepStrictEqual(a.certificates, b.certificates)) plan.issues.push(restart('authentication.certificates', `certificate identity changed (${show(a.certificates)} → ${show(b.certificates)})`));
  if (a.passwords?.file !== b.passwords?.file) {
    plan.issues.push(restart('authentication.passwords', `the users file changed (${show(a.passwords?.file)} → ${show(b.passwords?.file)})`));
  }
  if (a.anonymous === b.anonymous && isDeepStrictEqual(a.require, b.require)) return;
  const added = b.require.filter((f) => !a.require.includes(f));
  plan.changes.push(`authentication: anonymous ${a.anonymous} → ${b.anonymous}, require [${a.require.join(', ')}] → [${b.require.join(', ')}]`);
  plan.steps.push({
    what: 'authentication policy',
    run: () => {
      broker.setAuthenticationPolicy({ anonymous: b.anonymous, requiredFactors: b.require });
      // Connected clients meet the new policy now: they reconnect under it or stay out.
      broker.disconnectWhere(
        (c) => (a.anonymous && !b.anonymous && c.username === undefined) || (added.includes('certificate') && c.certificate === undefined) || added.includes('password'),
        'kicked',
        'profile reloaded: the authentication policy changed',
      );
    },
  });
}

/** Changes the running broker cannot take without a restart. */
function planRestartOnly(prev: Profile, next: Profile, plan: Plan): void {
  if (prev.listeners.length !== next.listeners.length) {
    plan.issues.push(restart('listeners', `the number of listeners changed (${prev.listeners.length} → ${next.listeners.length})`));
  }
  for (const [i, l] of next.listeners.entries()) {
    const p = prev.listeners[i];
    if (p === undefined) continue;
    const addr = (x: Listener) => `${x.name} ${x.protocol}://${x.host}:${x.port}${'path' in x ? x.path : ''}`;
    if (addr(p) !== addr(l)) plan.issues.push(restart(`listeners[${i}]`, `listener ${p.name} changed address (${addr(p)} → ${addr(l)})`));
    // read once when the listener starts (which peers may send a header, and whether they must)
    if (!isDeepStrictEqual(p.proxyProtocol, l.proxyProtocol)) plan.issues.push(restart(`listeners[${i}].proxyProtocol`, `listener ${p.name}: proxyProtocol changed`));
  }
  for (const key of ['maxPacketSize', 'connectTimeout'] as const) {
    if (prev.limits[key] !== next.limits[key]) plan.issues.push(restart(`limits.${key}`, `limits.${key} changed (${prev.limits[key]} → ${next.limits[key]})`));
  }
  if (!isDeepStrictEqual(prev.sys, next.sys)) plan.issues.push(restart('sys.subscribers', 'the $SYS readers changed'));
  if (prev.dataDir !== next.dataDir) plan.issues.push(restart('dataDir', `dataDir changed (${show(prev.dataDir)} → ${show(next.dataDir)})`));
  const pp = (prev as unknown as Record<string, unknown>)['persistence'];
  const np = (next as unknown as Record<string, unknown>)['persistence'];
  if (!isDeepStrictEqual(pp, np)) plan.issues.push(restart('persistence', 'the persistence settings changed'));
}

/** What a built-in control does with a change of its settings: a step, or a restart-required reason. */
type Applier = (ctx: { running: Middleware | Service; built: Middleware | Service | undefined; prev: Profile; next: Profile; broker: Bastion; plan: Plan }) => Step | ReloadIssue | undefined;

const SAME = undefined;

const APPLIERS: Readonly<Record<string, Applier>> = {
  passwords: () => SAME, // the file path is checked with authentication; its content is refreshed below
  certificates: () => SAME, // authentication.certificates is checked with authentication
  acl({ running, built, prev, next }) {
    const a = prev.acl;
    const b = next.acl;
    if (a === undefined || b === undefined) return restart('acl', 'the ACL would be turned ' + (b === undefined ? 'off' : 'on'));
    for (const k of ['defaultEffect', 'onRevoked', 'publishDenied', 'file'] as const) {
      if (a[k] !== b[k]) return restart(`acl.${k}`, `acl.${k} changed (${show(a[k])} → ${show(b[k])})`);
    }
    const rules = (built as Acl | undefined)?.rules() ?? [];
    return { what: `acl: ${rules.length} profile rules`, run: async () => void (await (running as Acl).setRules(rules)) };
  },
  'access-list'({ running, next }) {
    const lists = next.accessLists ?? {};
    return { what: 'access lists replaced', run: () => void (running as AccessList).setLists(lists) };
  },
  bans({ running, prev, next }) {
    if (prev.bans.maxBans !== next.bans.maxBans) return restart('bans.maxBans', `bans.maxBans changed (${prev.bans.maxBans} → ${next.bans.maxBans})`);
    const key = (b: { ip?: string | undefined; clientId?: string | undefined; username?: string | undefined }) => JSON.stringify([b.ip ?? null, b.clientId ?? null, b.username ?? null]);
    const before = new Set(prev.bans.initial.map(key));
    const after = new Set(next.bans.initial.map(key));
    const added = next.bans.initial.filter((b) => !before.has(key(b)));
    const removed = prev.bans.initial.filter((b) => !after.has(key(b)));
    if (added.length === 0 && removed.length === 0) return SAME;
    return {
      what: `bans.initial: ${added.length} added, ${removed.length} lifted`,
      run: () => {
        const bans = running as Bans;
        for (const b of removed) {
          const found = bans.list().find((x) => key(x) === key(b));
          if (found) bans.unban(found.id, 'profile reload');
        }
        for (const b of added) {
          bans.ban({ ...(b.ip === undefined ? {} : { ip: b.ip }), ...(b.clientId === undefined ? {} : { clientId: b.clientId }), ...(b.username === undefined ? {} : { username: b.username }) }, { duration: b.duration, reason: b.reason, actor: 'profile' });
        }
      },
    };
  },
  revocation({ prev, next }) {
    // the CAs that verify the CRLs default to the TLS listeners' CAs
    const cas = (p: Profile) => p.revocation?.ca ?? [...new Set(p.listeners.flatMap((l) => (isTls(l) ? l.tls.ca : [])))].sort();
    if (!isDeepStrictEqual(prev.revocation, next.revocation)) return restart('revocation', 'the revocation settings changed (the CRL files themselves reload live)');
    return isDeepStrictEqual(cas(prev), cas(next)) ? SAME : restart('revocation', 'the CAs that verify the CRLs changed');
  },
  // SIGHUP services call their control's own reload: nothing of theirs to change.
  'tls-sighup': () => SAME,
  'revocation-sighup': () => SAME,
};

/** Work out everything a reload would do; `issues` non-empty means it must not be applied. */
export async function planReload(broker: Bastion, running: readonly RunningWiring[], next: Profile, logger: Logger): Promise<Plan> {
  const prev = broker.profile;
  const plan: Plan = { issues: [], changes: [], steps: [], hooks: [], prepares: [], built: [] };
  planRestartOnly(prev, next, plan);

  // Build every control from the new profile: loads its CRLs, keys and certificates — the validation.
  try {
    plan.built = await wireControls(next, logger, { record: true });
  } catch (err) {
    plan.issues.push(issue('(root)', `the new profile's controls cannot be built: ${(err as Error).message}`));
    return plan;
  }

  planAuthentication(broker, prev, next, plan);
  const tlsChanged = await planTls(broker, prev, next, plan);

  // Controls whose settings changed: applied here, by their own hook, or restart required.
  const mwByName = new Map(broker.middleware.map((m) => [m.name, m]));
  const svcByName = new Map(broker.controls.services.map((s) => [s.name, s]));
  preparations.set(plan.built, plan.prepares);
  const live = (r: Reconfigurable & { name: string }, built: Middleware | Service | undefined, changed: readonly string[], what: string) => {
    const context = (prepared: PreparedChange | undefined): ReconfigureContext => ({ replacement: built, changed, broker, prepared });
    const prep: Preparation | undefined = r.prepare
      ? { name: r.name, path: changed[0] ?? '(root)', run: () => r.prepare?.(next, context(undefined)), prepared: undefined, handedOver: false }
      : undefined;
    if (prep) plan.prepares.push(prep);
    plan.hooks.push({
      what,
      run: () => {
        if (prep) prep.handedOver = true;
        return r.reconfigure(next, context(prep?.prepared));
      },
    });
    // a control's middleware and service of one name (rate-limit, metrics) are one change
    if (!plan.changes.includes(what)) plan.changes.push(what);
  };
  for (const [i, w] of plan.built.entries()) {
    const was = running[i];
    const now = namesOf(w.wiring);
    const changed = changedReads(w.reads, prev, next);
    if (changed.length === 0) {
      // same settings; a control whose files changed (a renewed certificate, a rewritten key) still takes them
      const seen = new Set<unknown>();
      for (const [r, built] of runningPairs(w, was, mwByName, svcByName)) {
        if (seen.has(r)) continue;
        seen.add(r);
        if (isReconfigurable(r) && r.outdated?.(built) === true) live(r, built, [], `${r.name}: files re-read`);
      }
      continue;
    }
    const where = changed.slice(0, 4).join(', ') + (changed.length > 4 ? ', …' : '');
    const added = [...now.middleware.filter((n) => !was?.middleware.includes(n)), ...now.services.filter((n) => !was?.services.includes(n))];
    const removed = [...(was?.middleware ?? []).filter((n) => !now.middleware.includes(n)), ...(was?.services ?? []).filter((n) => !now.services.includes(n))];
    if (added.length > 0) plan.issues.push(restart(changed[0] ?? '(root)', `${where} changed and would turn on ${added.join(', ')}`));
    for (const name of removed) {
      if (name === 'access-list') {
        const list = mwByName.get(name) as AccessList | undefined;
        if (list) plan.steps.push({ what: 'access lists removed', run: () => void list.setLists({}) });
        plan.changes.push('accessLists: removed (every address and client id passes)');
      } else {
        plan.issues.push(restart(changed[0] ?? '(root)', `${where} changed and would turn off ${name}`));
      }
    }
    const hooked = new Set<unknown>();
    for (const [r, built] of runningPairs(w, was, mwByName, svcByName)) {
      if (hooked.has(r)) continue; // one object can be both middleware and service
      hooked.add(r);
      const applier = APPLIERS[r.name];
      if (applier) {
        const out = applier({ running: r, built, prev, next, broker, plan });
        if (out === undefined) continue;
        if ('run' in out) {
          plan.steps.push(out);
          plan.changes.push(out.what);
        } else plan.issues.push(out);
      } else if (isReconfigurable(r)) {
        live(r, built, changed, `${r.name}: reconfigured (${where})`);
      } else {
        plan.issues.push(restart(changed[0] ?? '(root)', `${where} changed; the ${r.name} control cannot change live (no reconfigure hook)`));
      }
    }
  }

  // What the profile points to is read again even when the profile itself did not change.
  const passwords = mwByName.get('passwords') as PasswordAuth | undefined;
  const usersFile = next.authentication.passwords?.file;
  if (passwords && usersFile !== undefined && usersFile === prev.authentication.passwords?.file) {
    let users: Map<string, UserRecord> | undefined;
    try {
      users = await readUsersFile(usersFile);
    } catch (err) {
      plan.issues.push(issue('authentication.passwords.file', `the users file cannot be used: ${(err as Error).message}`));
    }
    if (users) {
      const list = [...users.values()];
      refresh(plan, { what: `users: ${list.length} from ${usersFile}`, run: () => passwords.setUsers(list) });
    }
  }
  const acl = mwByName.get('acl') as Acl | undefined;
  const aclFile = next.acl?.file;
  if (acl && aclFile !== undefined && aclFile === prev.acl?.file) {
    try {
      await readAclFile(aclFile);
      refresh(plan, { what: `acl: rules file ${aclFile} re-read`, run: async () => void (await acl.reload()) });
    } catch (err) {
      plan.issues.push(issue('acl.file', `the ACL rules file cannot be used: ${(err as Error).message}`));
    }
  }
  const revocation = mwByName.get('revocation') as Revocation | undefined;
  if (revocation && next.revocation !== undefined && isDeepStrictEqual(prev.revocation, next.revocation)) {
    refresh(plan, { what: 'revocation: CRLs re-read', run: async () => void (await revocation.reload()) });
  }
  const certs = mwByName.get('tls-certificates') as (Middleware & { reload?: () => Promise<unknown> }) | undefined;
  if (certs && typeof certs.reload === 'function' && !tlsChanged) {
    const reloadTls = certs.reload.bind(certs);
    refresh(plan, { what: 'TLS files re-read', run: async () => void (await reloadTls()) });
  }
  if (prev.logging.level !== next.logging.level) {
    if (broker.loggerFromProfile) {
      plan.changes.push(`logging.level: ${prev.logging.level} → ${next.logging.level}`);
      plan.steps.push({ what: 'logging level', run: () => void (broker.logger.level = next.logging.level) });
    } else {
      plan.changes.push(`logging.level: ${prev.logging.level} → ${next.logging.level} (not applied: the embedding application's logger decides)`);
    }
  }
  if (prev.tier !== next.tier || !isDeepStrictEqual(prev.tiers, next.tiers)) plan.changes.push(`tiers: ${prev.tier} ${show(prev.tiers)} → ${next.tier} ${show(next.tiers)}`);
  // access-list validation (the built control validated it too; keep the message specific)
  if (next.accessLists) {
    try {
      validateAccessLists(next.accessLists);
    } catch (err) {
      plan.issues.push(issue('accessLists', (err as Error).message));
    }
  }
  // Last, what can still fail: files opened, ports bound, changes refused. Every one runs (all the
  // reasons are reported at once); when any fails, discardBuilt releases what the others acquired.
  for (const p of plan.prepares) {
    try {
      p.prepared = (await p.run()) ?? undefined;
    } catch (err) {
      if (err instanceof RestartRequired) plan.issues.push(issue(err.path, err.message));
      else {
        const message = (err as Error)?.message ?? String(err);
        plan.issues.push(issue(p.path, message.includes(p.name) ? message : `${p.name}: ${message}`));
      }
    }
  }
  return plan;
}

/** The running controls of one factory that the new profile keeps, each with its replacement. */
function runningPairs(w: WiredControl, was: RunningWiring | undefined, mwByName: ReadonlyMap<string, Middleware>, svcByName: ReadonlyMap<string, Service>): Array<[Middleware | Service, Middleware | Service | undefined]> {
  const now = namesOf(w.wiring);
  return [
    ...now.middleware.flatMap((n): Array<[Middleware, Middleware | undefined]> => {
      const r = mwByName.get(n);
      return r && was?.middleware.includes(n) ? [[r, w.wiring?.middleware?.find((m) => m.name === n)]] : [];
    }),
    ...now.services.flatMap((n): Array<[Service, Service | undefined]> => {
      const r = svcByName.get(n);
      return r && was?.services.includes(n) ? [[r, w.wiring?.services?.find((s) => s.name === n)]] : [];
    }),
  ];
}

/** A file the profile points to, read again (listed after the setting changes). */
function refresh(plan: Plan, step: Step): void {
  plan.steps.push(step);
  plan.changes.push(step.what);
}

/**
 * The reload is over: release what `prepare` hooks acquired and no control took over (the reload
 * failed or was refused), then the controls built for planning — never set up — and anything their
 * constructors took.
 */
export async function discardBuilt(built: readonly WiredControl[], logger: Logger): Promise<void> {
  for (const p of (preparations.get(built) ?? []).reverse()) {
    if (p.handedOver || p.prepared === undefined) continue;
    try {
      await p.prepared.abort();
    } catch (err) {
      logger.warn({ err, control: p.name }, 'releasing what a reload had prepared');
    }
  }
  preparations.delete(built);
  for (const w of built) {
    for (const m of w.wiring?.middleware ?? []) {
      try {
        await m.close?.();
      } catch (err) {
        logger.debug({ err, middleware: m.name }, 'closing a control built for a reload');
      }
    }
  }
}

/** Profile errors and other failures of reading the profile, as reload issues. */
export function readFailure(err: unknown): ReloadIssue[] {
  if (isProfileError(err)) return err.issues.map((i) => ({ path: i.path, message: i.message, file: i.file, line: i.line, column: i.column }));
  return [issue('(root)', (err as Error)?.message ?? String(err))];
}

export function formatReloadIssue(i: ReloadIssue): string {
  return i.file !== undefined ? formatProfileIssue({ file: i.file, line: i.line ?? 0, column: i.column ?? 0, path: i.path, message: i.message }) : `${i.path}: ${i.message}`;
}
