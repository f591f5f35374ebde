/**
 * The response engine (RS.RP-1…6): on a detection, run the actions the profile's rules name —
 * disconnect, ban an address / client id / username for a while (longer for repeat offenders),
 * revoke a credential, block a topic, lock the broker down, shut it down. The same actions are
 * methods for code (`broker.controls.get<Responses>('responses')`) and for an admin API.
 *
 * Every action, done or not, is a `response.action` event: in `dryRun` mode rules only record what
 * they would have done. Identities on the allow-list are never the target of an action.
 *
 * It is also a middleware, for the state it enforces itself: a lockdown (new connections refused
 * unless allow-listed) and blocked topics (PUBLISH dropped). Bans go to the `bans` control when the
 * broker has one (attach()), else to a private ban table of the same kind inside this middleware.
 */
import { randomUUID } from 'node:crypto';
import type { AuthVerdict, BrokerContext, ClientInfo, ConnectionInfo, ConnectPacketInfo, Credentials, Middleware, PublishPacket, SecurityEvent, Verdict } from '@bastion/core';
import { BastionError, deny } from '@bastion/core';
import { CidrSet, bans as makeBans } from '@bastion/middleware';
import type { Ban, BanSpec, BanTarget, Bans } from '@bastion/middleware';
import { DETECTION_RAISED, detectionFromEvent, severityAtLeast } from './detection.js';
import type { Detection, OffenderKey, Severity } from './detection.js';

export const ACTIONS = ['disconnect', 'ban', 'ban-ip', 'ban-client', 'ban-username', 'revoke', 'block-topic', 'lockdown', 'shutdown'] as const;
export type ActionName = (typeof ACTIONS)[number];

/** The CSF subcategory each action implements. */
export const ACTION_CONTROLS: Readonly<Record<ActionName, string>> = Object.freeze({
  disconnect: 'RS.RP-3',
  ban: 'RS.RP-3',
  'ban-ip': 'RS.RP-5',
  'ban-client': 'RS.RP-3',
  'ban-username': 'RS.RP-3',
  revoke: 'RS.RP-2',
  'block-topic': 'RS.RP-4',
  lockdown: 'RS.RP-5',
  shutdown: 'RS.RP-6',
});

export interface ActionSpec {
  action: ActionName;
  /** Milliseconds, for bans (the base of the escalation), block-topic and lockdown. */
  duration?: number | undefined;
}

export interface ResponseRule {
  /** A detector name ('auth-failures'), a CSF id ('DE.ID-1') or '*'. */
  detector: string;
  /** Only detections counted by these keys (default: any). */
  keys?: OffenderKey[] | undefined;
  minSeverity?: Severity | undefined;
  actions: ActionSpec[];
}

export interface AllowList {
  ips?: string[];
  clientIds?: string[];
  usernames?: string[];
}

export interface ResponsesOptions {
  /** Rules record what they would do (`response.action` with outcome `dry-run`) and do nothing. */
  dryRun?: boolean;
  rules?: ResponseRule[];
  /** Never the target of an action (a ban of an allow-listed address is skipped, and so on). */
  allow?: AllowList;
  /** Bans: first duration, growth per repeat offence, ceiling, and how long an offence is remembered. */
  ban?: { duration: number; factor: number; maxDuration: number; forgetAfter: number };
  /** Default lockdown: duration (undefined = until lifted), who may still connect, whether others are kicked. */
  lockdown?: { duration?: number | undefined; allow?: AllowList; disconnectOthers?: boolean };
  /** Default duration of a topic block (undefined = until lifted). */
  blockTopicDuration?: number | undefined;
  /** Most offenders remembered for escalation (default 10,000). */
  capacity?: number;
  /** Action records kept for `history()` (default 1,000). */
  history?: number;
}

/** What the response engine drives. The broker attaches the controls it has. */
export interface ResponseCapabilities {
  /** The `bans` control (@bastion/middleware). Without it, a private ban table is used. */
  bans?: Pick<Bans, 'ban' | 'unban' | 'list' | 'check'> | undefined;
  /** The `passwords` control: revoke(username) removes the credential and ends its sessions. */
  passwords?: { revoke(username: string): boolean; hasUser(username: string): boolean } | undefined;
  /** A certificate revocation control, when the broker has one (RS.RP-1). */
  certificates?: { revoke(serial: string, reason?: string): unknown } | undefined;
  /** Graceful broker shutdown. */
  shutdown?: (() => Promise<void> | void) | undefined;
}

export type Outcome = 'done' | 'dry-run' | 'skipped' | 'failed';

export interface ActionRecord {
  readonly id: string;
  readonly time: number;
  readonly action: ActionName | 'unban' | 'unblock-topic' | 'lift-lockdown';
  readonly control: string;
  readonly outcome: Outcome;
  /** Why it was skipped or failed. */
  readonly why?: string | undefined;
  readonly target: { ip?: string | undefined; clientId?: string | undefined; username?: string | undefined; topic?: string | undefined };
  readonly duration?: number | undefined;
  /** The detection that caused it (absent for actions called by code or people). */
  readonly detection?: string | undefined;
  readonly actor: string;
  readonly detail?: Readonly<Record<string, unknown>> | undefined;
}

export interface ManualOptions {
  /** Who asks (an operator, an API client); recorded. Default 'api'. */
  actor?: string;
  reason?: string;
  /** Milliseconds (bans, topic blocks, lockdown); undefined = permanent / until lifted. */
  duration?: number;
  /** Record without doing. */
  dryRun?: boolean;
}

export interface Responses extends Middleware {
  readonly dryRun: boolean;
  setDryRun(on: boolean): void;
  /**
   * New rules and policies while running (a profile reload): rules, allow-list, ban escalation,
   * lockdown and topic-block defaults, capacity. Throws ResponseError on an unknown action, changing
   * nothing. What is in force stays: bans, blocked topics, a lockdown (on the terms it was started
   * with), the offence history and the action records. `dryRun` follows `opts.dryRun` only when that
   * differs from the options before, so a dry run switched on by hand survives an unrelated reload.
   */
  update(opts: ResponsesOptions): void;
  /** Give the engine the broker's controls (called by the broker once it listens). */
  attach(caps: ResponseCapabilities): void;
  /** Run the profile's rules for a detection (done automatically for every `detection.raised`). */
  respond(d: Detection): ActionRecord[];
  /** Close the live connections of a client id, a username or an address. */
  disconnect(target: BanTarget, opts?: ManualOptions): ActionRecord;
  ban(target: BanTarget, opts?: ManualOptions): ActionRecord;
  unban(id: string, opts?: ManualOptions): boolean;
  bans(): Ban[];
  /** Revoke a user's credential (password: removed from the users table; certificate: revoked or its identity banned). */
  revoke(username: string, opts?: ManualOptions): ActionRecord;
  /** Nobody may publish to this topic or filter (`+`/`#` allowed) until unblocked or expired. */
  blockTopic(topic: string, opts?: ManualOptions): ActionRecord;
  unblockTopic(topic: string, opts?: ManualOptions): boolean;
  blockedTopics(): Array<{ topic: string; expiresAt: number | undefined }>;
  /** Refuse new connections except allow-listed ones (and optionally close the others). */
  lockdown(opts?: ManualOptions & { allow?: AllowList; disconnectOthers?: boolean }): ActionRecord;
  liftLockdown(opts?: ManualOptions): boolean;
  readonly lockedDown: boolean;
  shutdown(opts?: ManualOptions): ActionRecord;
  /** The last action records, oldest first. */
  history(): ActionRecord[];
}

const LOCKED = deny('server-busy', 'the broker is in lockdown');
const BLOCKED = deny('not-authorized', 'the topic is blocked by a response action', 'drop');

interface Allow {
  ips: CidrSet;
  clientIds: ReadonlySet<string>;
  usernames: ReadonlySet<string>;
}

function makeAllow(a: AllowList | undefined, b?: AllowList): Allow {
  return {
    ips: new CidrSet([...(a?.ips ?? []), ...(b?.ips ?? [])]),
    clientIds: new Set([...(a?.clientIds ?? []), ...(b?.clientIds ?? [])]),
    usernames: new Set([...(a?.usernames ?? []), ...(b?.usernames ?? [])]),
  };
}

/** MQTT filter match (`+` one level, `#` the rest), for blocked filters. */
function filterMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

export class ResponseError extends BastionError {
  constructor(message: string) {
    super('BASTION_ERR_RESPONSE', message);
    this.name = 'ResponseError';
  }
}

const DEFAULT_BAN_POLICY = { duration: 10 * 60_000, factor: 2, maxDuration: 24 * 3_600_000, forgetAfter: 24 * 3_600_000 };

function checkRules(rules: readonly ResponseRule[]): void {
  for (const r of rules) for (const a of r.actions) if (!ACTIONS.includes(a.action)) throw new ResponseError(`unknown response action "${String(a.action)}" (known: ${ACTIONS.join(', ')})`);
}

export function responses(initial: ResponsesOptions = {}): Responses {
  let opts = initial;
  let dryRun = opts.dryRun ?? false;
  let rules = opts.rules ?? [];
  let allow = makeAllow(opts.allow);
  let banPolicy = opts.ban ?? DEFAULT_BAN_POLICY;
  let capacity = opts.capacity ?? 10_000;
  let keep = opts.history ?? 1_000;
  checkRules(rules);

  let ctx: BrokerContext | undefined;
  let caps: ResponseCapabilities = {};
  const privateBans = makeBans();
  let unsubscribe: (() => void) | undefined;
  const records: ActionRecord[] = [];
  /** Offences per ban target, for escalation; bounded, least recent forgotten first. */
  const offences = new Map<string, { count: number; last: number }>();

  // topic blocks: exact topics in a Map (one lookup per PUBLISH while any exist), filters in a list
  const blockedExact = new Map<string, number | undefined>();
  const blockedFilters = new Map<string, number | undefined>();
  let blockedCount = 0;
  const recount = () => {
    blockedCount = blockedExact.size + blockedFilters.size;
  };

  let lock: { until: number | undefined; allow: Allow; timer: NodeJS.Timeout | undefined } | undefined;

  const banner = () => caps.bans ?? privateBans;

  const allowed = (who: { ip?: string | undefined; clientId?: string | undefined; username?: string | undefined }, set = allow): boolean =>
    (who.ip !== undefined && set.ips.size > 0 && set.ips.has(who.ip)) ||
    (who.clientId !== undefined && set.clientIds.has(who.clientId)) ||
    (who.username !== undefined && set.usernames.has(who.username));

  const record = (r: Omit<ActionRecord, 'id' | 'time' | 'control'> & { control?: string }): ActionRecord => {
    const rec: ActionRecord = {
      id: randomUUID(),
      time: Date.now(),
      control: r.control ?? (ACTION_CONTROLS[r.action as ActionName] ?? 'RS.RP-3'),
      ...r,
    };
    records.push(rec);
    if (records.length > keep) records.shift();
    if (ctx) {
      const log = rec.outcome === 'done' ? ctx.logger.warn.bind(ctx.logger) : ctx.logger.info.bind(ctx.logger);
      log({ response: rec }, 'response.action');
      const event: SecurityEvent = {
        type: 'response.action',
        time: rec.time,
        control: rec.control,
        source: 'responses',
        clientId: rec.target.clientId,
        username: rec.target.username,
        remoteAddress: rec.target.ip,
        topic: rec.target.topic,
        message: `${rec.action}: ${rec.outcome}${rec.why ? ` (${rec.why})` : ''}`,
        detail: { id: rec.id, action: rec.action, outcome: rec.outcome, why: rec.why, duration: rec.duration, detection: rec.detection, actor: rec.actor, ...rec.detail },
      };
      ctx.events.emit(event);
    }
    return rec;
  };

  /** Ban duration for a target after `count` earlier offences: base × factor^count, capped. */
  const escalate = (key: string, base: number | undefined): { duration: number | undefined; offence: number } => {
    const now = Date.now();
    let o = offences.get(key);
    if (o !== undefined && now - o.last > banPolicy.forgetAfter) o = undefined;
    const count = o?.count ?? 0;
    offences.delete(key);
    if (offences.size >= capacity) offences.delete(offences.keys().next().value as string);
    offences.set(key, { count: count + 1, last: now });
    if (base === undefined) return { duration: undefined, offence: count + 1 };
    return { duration: Math.min(base * banPolicy.factor ** count, banPolicy.maxDuration), offence: count + 1 };
  };

  const clientMatcher = (t: BanTarget): ((c: ClientInfo) => boolean) => {
    const range = t.ip !== undefined ? new CidrSet([t.ip]) : undefined;
    return (c) => {
      if (t.clientId !== undefined && c.id !== t.clientId) return false;
      if (t.username !== undefined && c.username !== t.username) return false;
      if (range !== undefined && !range.has(c.remoteAddress)) return false;
      return !allowed({ ip: c.remoteAddress, clientId: c.id, username: c.username });
    };
  };

  // ---- the actions ---------------------------------------------------------------------------

  interface Run {
    actor: string;
    dry: boolean;
    detection?: string | undefined;
    reason?: string | undefined;
  }

  const doDisconnect = (target: BanTarget, run: Run): ActionRecord => {
    const base = { action: 'disconnect' as const, target, actor: run.actor, detection: run.detection };
    if (target.ip === undefined && target.clientId === undefined && target.username === undefined) return record({ ...base, outcome: 'skipped', why: 'no target' });
    if (allowed(target)) return record({ ...base, outcome: 'skipped', why: 'allow-listed' });
    if (run.dry) return record({ ...base, outcome: 'dry-run' });
    if (!ctx) return record({ ...base, outcome: 'failed', why: 'broker not started' });
    const detail = `disconnected by a response${run.reason ? `: ${run.reason}` : ''}`;
    const n = ctx.disconnectWhere(clientMatcher(target), 'kicked', detail);
    return record({ ...base, outcome: 'done', detail: { disconnected: n } });
  };

  const doBan = (action: 'ban' | 'ban-ip' | 'ban-client' | 'ban-username', target: BanTarget, duration: number | undefined, run: Run, escalating: boolean): ActionRecord => {
    const base = { action, target, actor: run.actor, detection: run.detection };
    if (target.ip === undefined && target.clientId === undefined && target.username === undefined) return record({ ...base, outcome: 'skipped', why: 'no target' });
    if (allowed(target)) return record({ ...base, outcome: 'skipped', why: 'allow-listed' });
    const b = banner();
    if (b.check(target) !== undefined && escalating) return record({ ...base, outcome: 'skipped', why: 'already banned' });
    const key = JSON.stringify([target.ip, target.clientId, target.username]);
    const { duration: d, offence } = escalating ? escalate(key, duration) : { duration, offence: undefined };
    if (run.dry) return record({ ...base, duration: d, outcome: 'dry-run', detail: { offence } });
    try {
      const spec: BanSpec = { reason: run.reason, actor: run.actor };
      if (d !== undefined) spec.duration = d;
      const ban = b.ban(target, spec);
      return record({ ...base, duration: d, outcome: 'done', detail: { ban: ban.id, expiresAt: ban.expiresAt, offence, via: caps.bans ? 'bans' : 'responses' } });
    } catch (err) {
      return record({ ...base, duration: d, outcome: 'failed', why: (err as Error).message });
    }
  };

  const doRevoke = (username: string | undefined, run: Run): ActionRecord => {
    const base = { action: 'revoke' as const, target: { username }, actor: run.actor, detection: run.detection };
    if (username === undefined) return record({ ...base, outcome: 'skipped', why: 'no username' });
    if (allowed({ username })) return record({ ...base, outcome: 'skipped', why: 'allow-listed' });
    const pw = caps.passwords;
    const live = ctx ? [...ctx.clients()].find((c) => c.username === username) : undefined;
    const serial = live?.certificate?.serial;
    if (pw?.hasUser(username)) {
      if (run.dry) return record({ ...base, outcome: 'dry-run', detail: { credential: 'password' } });
      pw.revoke(username);
      return record({ ...base, outcome: 'done', detail: { credential: 'password' } });
    }
    if (serial !== undefined && caps.certificates) {
      if (run.dry) return record({ ...base, control: 'RS.RP-1', outcome: 'dry-run', detail: { credential: 'certificate', serial } });
      try {
        caps.certificates.revoke(serial, run.reason);
        ctx?.disconnectWhere((c) => c.certificate?.serial === serial, 'kicked', 'certificate revoked by a response');
        return record({ ...base, control: 'RS.RP-1', outcome: 'done', detail: { credential: 'certificate', serial } });
      } catch (err) {
        return record({ ...base, control: 'RS.RP-1', outcome: 'failed', why: (err as Error).message });
      }
    }
    // No control can revoke this identity's credential: shut the identity out instead.
    if (run.dry) return record({ ...base, outcome: 'dry-run', detail: { credential: serial ? 'certificate' : 'unknown', via: 'ban' } });
    try {
      const ban = banner().ban({ username }, { reason: run.reason ?? 'credential revoked', actor: run.actor });
      return record({ ...base, outcome: 'done', detail: { credential: serial ? 'certificate' : 'unknown', via: 'ban', ban: ban.id, serial } });
    } catch (err) {
      return record({ ...base, outcome: 'failed', why: (err as Error).message });
    }
  };

  const doBlockTopic = (topic: string | undefined, duration: number | undefined, run: Run): ActionRecord => {
    const base = { action: 'block-topic' as const, target: { topic }, actor: run.actor, detection: run.detection, duration };
    if (topic === undefined || topic === '') return record({ ...base, outcome: 'skipped', why: 'no topic' });
    if (run.dry) return record({ ...base, outcome: 'dry-run' });
    // bounded like every other table an attacker can drive (a block per undeliverable topic …)
    if (blockedCount >= capacity) {
      const now = Date.now();
      for (const m of [blockedExact, blockedFilters]) for (const [t, until] of m) if (until !== undefined && until <= now) m.delete(t);
      recount();
    }
    if (blockedCount >= capacity && !blockedExact.has(topic) && !blockedFilters.has(topic)) return record({ ...base, outcome: 'skipped', why: `${capacity} topics already blocked` });
    const expiresAt = duration === undefined ? undefined : Date.now() + duration;
    (topic.includes('+') || topic.includes('#') ? blockedFilters : blockedExact).set(topic, expiresAt);
    recount();
    return record({ ...base, outcome: 'done', detail: { expiresAt } });
  };

  const doLockdown = (duration: number | undefined, extra: AllowList | undefined, disconnectOthers: boolean, run: Run): ActionRecord => {
    const base = { action: 'lockdown' as const, target: {}, actor: run.actor, detection: run.detection, duration };
    if (run.dry) return record({ ...base, outcome: 'dry-run' });
    const set = makeAllow(opts.allow, { ...opts.lockdown?.allow, ...extra });
    if (lock?.timer) clearTimeout(lock.timer);
    const until = duration === undefined ? undefined : Date.now() + duration;
    lock = { until, allow: set, timer: undefined };
    if (duration !== undefined) {
      lock.timer = setTimeout(() => lift({ actor: 'timer', dry: false }), duration);
      lock.timer.unref();
    }
    const kicked = disconnectOthers && ctx ? ctx.disconnectWhere((c) => !allowed({ ip: c.remoteAddress, clientId: c.id, username: c.username }, set), 'kicked', 'broker lockdown') : 0;
    return record({ ...base, outcome: 'done', detail: { until, disconnected: kicked } });
  };

  const lift = (run: Run): boolean => {
    if (!lock) return false;
    if (run.dry) {
      record({ action: 'lift-lockdown', control: 'RS.RP-5', target: {}, actor: run.actor, outcome: 'dry-run' });
      return true;
    }
    if (lock.timer) clearTimeout(lock.timer);
    lock = undefined;
    record({ action: 'lift-lockdown', control: 'RS.RP-5', target: {}, actor: run.actor, outcome: 'done' });
    return true;
  };

  const doShutdown = (run: Run): ActionRecord => {
    const base = { action: 'shutdown' as const, target: {}, actor: run.actor, detection: run.detection };
    if (run.dry) return record({ ...base, outcome: 'dry-run' });
    const stop = caps.shutdown;
    if (!stop) return record({ ...base, outcome: 'failed', why: 'no shutdown capability attached' });
    const rec = record({ ...base, outcome: 'done' });
    // after this event has reached every listener (the audit log writes it before it stops)
    setImmediate(() => {
      Promise.resolve()
        .then(stop)
        .catch((err: unknown) => ctx?.logger.error({ err }, 'shutdown by a response action failed'));
    });
    return rec;
  };

  /** The ban target a detection names for each ban action. */
  const banTarget = (action: 'ban' | 'ban-ip' | 'ban-client' | 'ban-username', d: Detection): BanTarget => {
    const ip = (d.evidence['range'] as string | undefined) ?? d.offender.ip;
    const by: OffenderKey | undefined =
      action === 'ban-ip' ? 'ip' : action === 'ban-client' ? 'clientId' : action === 'ban-username' ? 'username' : d.key === 'connection' ? 'clientId' : d.key;
    if (by === 'ip') return ip !== undefined ? { ip } : {};
    if (by === 'clientId') return d.offender.clientId !== undefined ? { clientId: d.offender.clientId } : {};
    if (by === 'username') return d.offender.username !== undefined ? { username: d.offender.username } : {};
    return {};
  };

  /** The connections a detection is about: the counted key only (an address detection closes that address). */
  const disconnectTarget = (d: Detection): BanTarget => {
    if (d.key === 'ip') return d.offender.ip !== undefined ? { ip: (d.evidence['range'] as string | undefined) ?? d.offender.ip } : {};
    if (d.key === 'username') return d.offender.username !== undefined ? { username: d.offender.username } : {};
    if (d.key === 'fleet') return {};
    return d.offender.clientId !== undefined ? { clientId: d.offender.clientId } : {};
  };

  const respond = (d: Detection): ActionRecord[] => {
    const out: ActionRecord[] = [];
    const seen = new Set<ActionName>();
    const run: Run = { actor: `detector:${d.detector}`, dry: dryRun, detection: d.id, reason: d.message };
    for (const rule of rules) {
      if (rule.detector !== '*' && rule.detector !== d.detector && rule.detector !== d.control) continue;
      if (rule.keys && !rule.keys.includes(d.key)) continue;
      if (rule.minSeverity && !severityAtLeast(d.severity, rule.minSeverity)) continue;
      for (const a of rule.actions) {
        if (seen.has(a.action)) continue;
        seen.add(a.action);
        try {
          switch (a.action) {
            case 'disconnect':
              out.push(doDisconnect(disconnectTarget(d), run));
              break;
            case 'ban':
            case 'ban-ip':
            case 'ban-client':
            case 'ban-username':
              out.push(doBan(a.action, banTarget(a.action, d), a.duration ?? banPolicy.duration, run, true));
              break;
            case 'revoke':
              out.push(doRevoke(d.offender.username, run));
              break;
            case 'block-topic':
              out.push(doBlockTopic(d.topic, a.duration ?? opts.blockTopicDuration, run));
              break;
            case 'lockdown':
              out.push(doLockdown(a.duration ?? opts.lockdown?.duration, undefined, opts.lockdown?.disconnectOthers ?? false, run));
              break;
            case 'shutdown':
              out.push(doShutdown(run));
              break;
          }
        } catch (err) {
          out.push(record({ action: a.action, target: {}, actor: run.actor, detection: d.id, outcome: 'failed', why: (err as Error).message }));
        }
      }
    }
    return out;
  };

  /** Listen for detections while there are rules (a bus nobody listens to skips building some events). */
  const listen = () => {
    if (rules.length === 0 || !ctx) {
      unsubscribe?.();
      unsubscribe = undefined;
      return;
    }
    unsubscribe ??= ctx.events.on(
      (e) => {
        const d = detectionFromEvent(e);
        if (d) respond(d);
      },
      { types: [DETECTION_RAISED] },
    );
  };

  const manual = (o: ManualOptions | undefined): Run => ({ actor: o?.actor ?? 'api', dry: o?.dryRun ?? false, reason: o?.reason });

  const lockdownVerdict = (who: { ip?: string | undefined; clientId?: string | undefined; username?: string | undefined }, final: boolean): Verdict => {
    if (lock === undefined) return undefined;
    if (allowed(who, lock.allow)) return undefined;
    // not decided yet when a later stage may still name an allowed identity
    if (!final) return undefined;
    return LOCKED;
  };

  const isBlocked = (topic: string): boolean => {
    const exact = blockedExact.get(topic);
    const now = Date.now();
    if (exact !== undefined || blockedExact.has(topic)) {
      if (exact === undefined || exact > now) return true;
      blockedExact.delete(topic);
      recount();
    }
    if (blockedFilters.size === 0) return false;
    for (const [filter, until] of blockedFilters) {
      if (until !== undefined && until <= now) {
        blockedFilters.delete(filter);
        recount();
        continue;
      }
      if (filterMatches(filter, topic)) return true;
    }
    return false;
  };

  const mw: Responses = {
    name: 'responses',
    controls: ['RS.RP-3', 'RS.RP-1', 'RS.RP-2', 'RS.RP-4', 'RS.RP-5', 'RS.RP-6'],

    get dryRun() {
      return dryRun;
    },
    setDryRun(on) {
      dryRun = on;
    },
    get lockedDown() {
      return lock !== undefined;
    },

    async setup(context) {
      ctx = context;
      await privateBans.setup?.(context);
      listen();
    },

    update(next) {
      checkRules(next.rules ?? []);
      if (next.dryRun !== undefined && next.dryRun !== opts.dryRun) dryRun = next.dryRun;
      rules = next.rules ?? [];
      allow = makeAllow(next.allow);
      banPolicy = next.ban ?? DEFAULT_BAN_POLICY;
      capacity = next.capacity ?? 10_000;
      keep = next.history ?? keep;
      opts = next;
      listen();
      ctx?.logger.info({ responses: { rules: rules.length, dryRun } }, 'response rules changed');
    },

    attach(c) {
      caps = { ...caps, ...c };
    },

    respond,

    onConnection(conn: ConnectionInfo): Verdict {
      if (lock !== undefined) {
        const l = lock;
        const later = l.allow.clientIds.size > 0 || l.allow.usernames.size > 0;
        const v = lockdownVerdict({ ip: conn.remoteAddress }, !later);
        if (v) return v;
      }
      return caps.bans ? undefined : (privateBans.onConnection?.(conn) as Verdict);
    },

    onConnect(client: ClientInfo, packet: ConnectPacketInfo): Verdict {
      if (lock !== undefined) {
        const v = lockdownVerdict({ ip: client.remoteAddress, clientId: packet.clientId }, lock.allow.usernames.size === 0);
        if (v) return v;
      }
      return caps.bans ? undefined : (privateBans.onConnect?.(client, packet) as Verdict);
    },

    authenticate(client: ClientInfo, creds: Credentials): AuthVerdict {
      if (lock !== undefined) {
        const v = lockdownVerdict({ ip: client.remoteAddress, clientId: client.id, username: creds.username }, true);
        if (v) return v;
      }
      return caps.bans ? undefined : (privateBans.authenticate?.(client, creds) as AuthVerdict);
    },

    onConnected(client: ClientInfo) {
      if (!caps.bans) privateBans.onConnected?.(client);
    },

    authorizePublish(_client: ClientInfo, packet: PublishPacket): Verdict {
      if (blockedCount === 0) return undefined;
      return isBlocked(packet.topic) ? BLOCKED : undefined;
    },

    disconnect: (target, o) => doDisconnect(target, manual(o)),
    ban: (target, o) => doBan(target.ip !== undefined && target.clientId === undefined && target.username === undefined ? 'ban-ip' : 'ban', target, o?.duration, manual(o), false),
    unban(id, o) {
      const run = manual(o);
      const b = banner();
      const exists = b.list().some((x) => x.id === id);
      if (!exists) return false;
      if (run.dry) {
        record({ action: 'unban', control: 'RS.RP-3', target: {}, actor: run.actor, outcome: 'dry-run', detail: { ban: id } });
        return true;
      }
      const ok = b.unban(id, run.actor);
      record({ action: 'unban', control: 'RS.RP-3', target: {}, actor: run.actor, outcome: ok ? 'done' : 'failed', detail: { ban: id } });
      return ok;
    },
    bans: () => banner().list(),
    revoke: (username, o) => doRevoke(username, manual(o)),
    blockTopic: (topic, o) => doBlockTopic(topic, o?.duration, manual(o)),
    unblockTopic(topic, o) {
      const run = manual(o);
      const had = blockedExact.has(topic) || blockedFilters.has(topic);
      if (!had) return false;
      if (!run.dry) {
        blockedExact.delete(topic);
        blockedFilters.delete(topic);
        recount();
      }
      record({ action: 'unblock-topic', control: 'RS.RP-4', target: { topic }, actor: run.actor, outcome: run.dry ? 'dry-run' : 'done' });
      return true;
    },
    blockedTopics() {
      const now = Date.now();
      const out: Array<{ topic: string; expiresAt: number | undefined }> = [];
      for (const m of [blockedExact, blockedFilters]) for (const [topic, expiresAt] of m) if (expiresAt === undefined || expiresAt > now) out.push({ topic, expiresAt });
      return out;
    },
    lockdown: (o) => doLockdown(o?.duration ?? opts.lockdown?.duration, o?.allow, o?.disconnectOthers ?? opts.lockdown?.disconnectOthers ?? false, manual(o)),
    liftLockdown: (o) => lift(manual(o)),
    shutdown: (o) => doShutdown(manual(o)),
    history: () => [...records],

    async close() {
      unsubscribe?.();
      if (lock?.timer) clearTimeout(lock.timer);
      await privateBans.close?.();
    },
  };
  return mw;
}
