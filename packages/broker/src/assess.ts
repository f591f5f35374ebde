/**
 * `bastion profile assess`: the Current Profile against a Target Profile, subcategory by
 * subcategory of the note's catalog, with the gaps.
 *
 * For every subcategory it shows what the profile enables (the tier rows of @bastion/profile: base
 * keys and sections), which middleware and services implement it (their `controls`, from the code:
 * the controls are built from the profile without listening, or read from a running broker), the
 * tier it reaches and the target:
 *
 *  - reached, for what the broker delivers (scope broker, and the broker's part of broker-aids):
 *    1 (Partial) when nothing enforces it; otherwise the highest tier whose floors (docs/tiers.md)
 *    the profile meets — a shortfall an exception covers counts as met, and is listed;
 *  - reached, for what it cannot deliver (organization, client scope): the tier of a valid
 *    attestation in the profile, else 0 (needs attestation);
 *  - target: with a target profile, its tier for the subcategory wherever it enables it (or
 *    attests it); without one, the profile's own tier for every broker-scope subcategory.
 *
 * A gap is a target above what is reached, or something the target enables that the current
 * profile does not. `bastion profile assess` exits 3 when any gap remains.
 */
import { BastionBroker } from '@bastion/core';
import type { Middleware } from '@bastion/core';
import { TIER_NAMES, enabledFor, evaluateFloors, isLoopbackHost, loadCatalog, subcategories, tierFor } from '@bastion/profile';
import type { Attestation, FloorFinding, Profile, ProfileException, Scope, Tier } from '@bastion/profile';
import { pino } from 'pino';
import type { Logger } from 'pino';
import type { Bastion } from './broker.js';
import { controlsFromProfile } from './controls.js';
import type { Service } from './controls.js';

/** A middleware, service or core feature and the subcategories it implements. */
export interface Implementation {
  readonly name: string;
  readonly kind: 'middleware' | 'service' | 'core';
  readonly controls: readonly string[];
}

/** What GET /v1/profile/effective returns: the configuration in force, secrets redacted. */
export interface EffectiveProfile {
  readonly source: string;
  readonly loadedAt: string;
  readonly profile: Profile;
  readonly middleware: ReadonlyArray<{ name: string; controls: readonly string[] }>;
  readonly services: ReadonlyArray<{ name: string; controls: readonly string[] }>;
  readonly authentication: { anonymous: boolean; requiredFactors: readonly string[] };
}

export type Status = 'met' | 'gap' | 'attested' | 'needs-attestation' | 'not-targeted';

export interface SubcategoryAssessment {
  readonly id: string;
  readonly name: string;
  readonly scope: Scope | 'outside-catalog';
  /** Profile keys and what they set for it. */
  readonly enabled: ReadonlyArray<{ key: string; text: string }>;
  /** Middleware, services and core features that declare it. */
  readonly implementedBy: readonly string[];
  /** The profile's tier for the subcategory's category. */
  readonly declaredTier: Tier;
  /** 0 (nothing) to 4. */
  readonly reached: number;
  /** The tier the target asks for; null when the target does not ask for it. */
  readonly target: number | null;
  readonly status: Status;
  /** Why there is a gap, or why reached stops where it does. */
  readonly notes: readonly string[];
  readonly floors: ReadonlyArray<{ from: Tier; key: string; requirement: string; met: boolean; excepted: readonly string[]; shortfalls: readonly string[] }>;
  readonly exceptions: readonly ProfileException[];
  readonly attestation?: Attestation;
}

export interface Assessment {
  readonly profile: { source: string; name?: string; tier: Tier; tiers: Record<string, Tier> };
  readonly target: { source: string; tier: Tier; tiers: Record<string, Tier> } | { source: 'own tiers' };
  readonly live: boolean;
  readonly functions: ReadonlyArray<{
    id: string;
    name: string;
    categories: ReadonlyArray<{ id: string; name: string; tier: Tier; subcategories: readonly SubcategoryAssessment[] }>;
  }>;
  /** Controls the code declares that the note's catalog does not list (e.g. PR.PT-1 for the audit log). */
  readonly other: readonly SubcategoryAssessment[];
  readonly unusedExceptions: readonly ProfileException[];
  readonly summary: { subcategories: number; met: number; gaps: number; attested: number; needsAttestation: number; notTargeted: number };
}

const TLS_CONTROLS = ['PR.AC-4', 'ID.RM-4', 'PR.IP-1', 'PR.IP-2', 'PR.IP-3', 'PR.IP-5'];

/** Features of the core that are not middleware: TLS listeners, the packet guard, multi-factor authentication. */
export function coreImplementations(profile: Profile): Implementation[] {
  // the packet-size guard, and this assessment itself (the broker's part of risk assessment)
  const out: Implementation[] = [
    { name: 'packet-guard', kind: 'core', controls: ['PR.SS-1'] },
    { name: 'profile assess', kind: 'core', controls: ['ID.RM-3'] },
  ];
  for (const l of profile.listeners) {
    if (l.protocol !== 'mqtts' && l.protocol !== 'wss') continue;
    const controls = [...TLS_CONTROLS];
    // plaintext listeners on a network would undo PKI use; the floor check says which
    if (!profile.listeners.some((x) => (x.protocol === 'mqtt' || x.protocol === 'ws') && !isLoopbackHost(x.host))) controls.push('PR.AC-1');
    out.push({ name: `listener ${l.name}`, kind: 'core', controls });
  }
  if (profile.authentication.require.length > 1) out.push({ name: 'core authentication (all required factors)', kind: 'core', controls: ['PR.CS-3'] });
  return out;
}

/** The controls a profile builds, read without listening (core guards included), plus the core features. */
export async function implementationsOf(profile: Profile, logger: Logger = pino({ level: 'silent' })): Promise<Implementation[]> {
  const controls = await controlsFromProfile(profile, logger);
  // a core broker that never listens: its middleware list is the one a real broker would run
  const core = new BastionBroker({ listeners: [], middleware: [...controls.middleware], logger, anonymous: profile.authentication.anonymous, requiredFactors: profile.authentication.require, sysSubscribers: profile.sys.subscribers });
  const out = [...implementationsFrom(core.middleware, controls.services), ...coreImplementations(profile)];
  for (const m of controls.middleware) {
    try {
      await m.close?.();
    } catch {
      /* never set up: nothing to release */
    }
  }
  return out;
}

export function implementationsFrom(middleware: readonly Pick<Middleware, 'name' | 'controls'>[], services: readonly Pick<Service, 'name' | 'controls'>[]): Implementation[] {
  return [
    ...middleware.map((m) => ({ name: m.name, kind: 'middleware' as const, controls: [...m.controls] })),
    ...services.filter((s) => (s.controls ?? []).length > 0).map((s) => ({ name: s.name, kind: 'service' as const, controls: [...(s.controls ?? [])] })),
  ];
}

// --- the effective profile of a running broker ----------------------------------------------------

const SECRET_KEYS = /^(password|passphrase|token|secret|hash|value)$/i;

/** A deep copy with secrets replaced by '[redacted]' (passwords, tokens, token hashes, key values) and URL credentials removed. */
export function redactProfile<T>(value: T): T {
  const walk = (v: unknown, key: string | undefined): unknown => {
    if (typeof v === 'string') {
      if (key !== undefined && SECRET_KEYS.test(key)) return '[redacted]';
      return v.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/i, '$1');
    }
    if (Array.isArray(v)) return v.map((x) => walk(x, undefined));
    if (v !== null && typeof v === 'object') {
      if (Buffer.isBuffer(v)) return '[redacted]';
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]));
    }
    return v;
  };
  return walk(value, undefined) as T;
}

export function effectiveProfile(broker: Bastion): EffectiveProfile {
  return {
    source: broker.profile.source,
    loadedAt: broker.loadedAt.toISOString(),
    profile: redactProfile(broker.profile),
    middleware: broker.middleware.map((m) => ({ name: m.name, controls: [...m.controls] })),
    services: broker.controls.services.map((s) => ({ name: s.name, controls: [...(s.controls ?? [])] })),
    authentication: broker.authenticationPolicy,
  };
}

/** Implementations of a running broker, from its effective profile. */
export function implementationsOfEffective(e: EffectiveProfile): Implementation[] {
  return [...implementationsFrom(e.middleware, e.services), ...coreImplementations(e.profile)];
}

// --- the assessment --------------------------------------------------------------------------------

export interface AssessOptions {
  readonly profile: Profile;
  readonly implementations: readonly Implementation[];
  /** The target profile; omitted: the profile's own tiers for every broker-scope subcategory. */
  readonly target?: Profile;
  readonly live?: boolean;
  readonly now?: Date;
}

const attestationsOf = (p: Profile): Attestation[] => ((p as unknown as Record<string, unknown>)['attestations'] as Attestation[] | undefined) ?? [];

function validAttestation(p: Profile, id: string, today: string): { valid?: Attestation; expired?: Attestation } {
  const list = attestationsOf(p).filter((a) => a.id === id);
  const valid = list.find((a) => a.expires === undefined || a.expires > today);
  const expired = list.find((a) => a.expires !== undefined && a.expires <= today);
  return { ...(valid ? { valid } : {}), ...(expired ? { expired } : {}) };
}

/** The profile rows or core features that deliver `id` in `p` (for "the target enables it"). */
function enables(p: Profile, id: string): boolean {
  return enabledFor(p, id).length > 0 || coreImplementations(p).some((c) => c.controls.includes(id));
}

export function assess(opts: AssessOptions): Assessment {
  const { profile, target } = opts;
  const now = opts.now ?? new Date();
  const today = now.toISOString().slice(0, 10);
  const { findings, unusedExceptions } = evaluateFloors(profile, now);
  const byControl = new Map<string, FloorFinding[]>();
  for (const f of findings) byControl.set(f.floor.control, [...(byControl.get(f.floor.control) ?? []), f]);
  const impl = new Map<string, string[]>();
  for (const i of opts.implementations) for (const c of i.controls) impl.set(c, [...new Set([...(impl.get(c) ?? []), i.name])]);

  const one = (id: string, name: string, scope: Scope | 'outside-catalog'): SubcategoryAssessment => {
    const declaredTier = tierFor(profile, id);
    const enabled = enabledFor(profile, id);
    const implementedBy = impl.get(id) ?? [];
    const delivered = enabled.length > 0 || implementedBy.length > 0;
    const notes: string[] = [];
    const floors = (byControl.get(id) ?? [])
      .slice()
      .sort((a, b) => a.floor.from - b.floor.from)
      .map((f) => {
        const shortfalls = f.violations.filter((v) => !v.exception).map((v) => `${v.path}: ${v.message}${v.expired ? ` (its exception expired on ${v.expired.expires})` : ''}`);
        const excepted = f.violations.filter((v) => v.exception).map((v) => `${v.path}: ${v.message}`);
        return { from: f.floor.from, key: f.floor.key, requirement: f.floor.requirement, met: shortfalls.length === 0, excepted, shortfalls };
      });
    const exceptions = [...new Set((byControl.get(id) ?? []).flatMap((f) => f.violations.flatMap((v) => (v.exception ? [v.exception] : []))))];
    const brokerPart = scope === 'broker' || scope === 'broker-aids' || scope === 'outside-catalog';
    let reached = 0;
    if (brokerPart) {
      if (!delivered) {
        reached = 1;
        notes.push('not enforced by the broker with this profile');
      } else {
        reached = 4;
        for (const f of floors) {
          if (!f.met) {
            reached = Math.min(reached, f.from - 1);
            notes.push(`tier-${f.from} floor not met: ${f.shortfalls.join('; ')}`);
          }
        }
      }
    }
    const att = validAttestation(profile, id, today);
    if (att.valid) reached = Math.max(reached, att.valid.tier);
    else if (att.expired) notes.push(`attestation expired on ${att.expired.expires}`);

    // the target
    let targetTier: number | null = null;
    const gaps: string[] = [];
    if (target === undefined) {
      if (scope === 'broker' || scope === 'outside-catalog') targetTier = declaredTier;
    } else {
      const tAtt = validAttestation(target, id, today).valid ?? attestationsOf(target).find((a) => a.id === id);
      const tEnables = scope !== 'organization' && scope !== 'client' && enables(target, id);
      // a target's tiers hold for every broker-scope subcategory; elsewhere only for what it enables or attests
      if (scope === 'broker' || scope === 'outside-catalog' || tEnables || tAtt) targetTier = tierFor(target, id);
      if (tEnables && !delivered) gaps.push(`the target enables it (${enabledFor(target, id).map((e) => e.key).join(', ') || 'core'}); this profile does not`);
      if (tAtt && !att.valid) gaps.push(`the target has an attestation (${tAtt.by}, ${tAtt.date}); this profile has ${att.expired ? 'an expired one' : 'none'}`);
    }
    if (targetTier !== null && reached < targetTier) gaps.unshift(`reaches tier ${reached}, target ${targetTier}`);
    const status: Status =
      gaps.length > 0 ? 'gap' : brokerPart && scope !== 'broker-aids' ? (targetTier === null ? 'not-targeted' : 'met') : att.valid ? 'attested' : scope === 'broker-aids' && targetTier !== null ? 'met' : 'needs-attestation';
    return {
      id,
      name,
      scope,
      enabled,
      implementedBy,
      declaredTier,
      reached,
      target: targetTier,
      status,
      notes: [...gaps, ...notes.filter((n) => !gaps.includes(n))],
      floors,
      exceptions,
      ...(att.valid ? { attestation: att.valid } : {}),
    };
  };

  const catalog = loadCatalog();
  const known = new Set(subcategories(catalog).map((s) => s.id));
  const functions = catalog.functions.map((fn) => ({
    id: fn.id,
    name: fn.name,
    categories: fn.categories.map((c) => ({ id: c.id, name: c.name, tier: tierFor(profile, c.id), subcategories: c.subcategories.map((s) => one(s.id, s.name, s.scope)) })),
  }));
  const outside = [...new Set([...impl.keys(), ...findings.map((f) => f.floor.control)])].filter((id) => !known.has(id)).sort();
  const other = outside.map((id) => one(id, 'declared by the code, not in the note\'s catalog', 'outside-catalog'));
  const all = [...functions.flatMap((f) => f.categories.flatMap((c) => c.subcategories)), ...other];
  const count = (s: Status) => all.filter((x) => x.status === s).length;
  return {
    profile: { source: profile.source, ...(profile.name === undefined ? {} : { name: profile.name }), tier: profile.tier, tiers: { ...profile.tiers } },
    target: target === undefined ? { source: 'own tiers' } : { source: target.source, tier: target.tier, tiers: { ...target.tiers } },
    live: opts.live ?? false,
    functions,
    other,
    unusedExceptions,
    summary: { subcategories: all.length, met: count('met'), gaps: count('gap'), attested: count('attested'), needsAttestation: count('needs-attestation'), notTargeted: count('not-targeted') },
  };
}

// --- output ----------------------------------------------------------------------------------------

const STATUS_TEXT: Record<Status, string> = { met: 'ok', gap: 'GAP', attested: 'attested', 'needs-attestation': 'attest', 'not-targeted': '-' };
const tierText = (t: number | null) => (t === null ? '-' : String(t));

function header(a: Assessment): string[] {
  const p = a.profile;
  const tiers = Object.entries(p.tiers).map(([k, v]) => `${k}: ${v}`);
  const target = 'tier' in a.target ? `${a.target.source} (tier ${a.target.tier}${Object.keys(a.target.tiers).length > 0 ? `, ${Object.entries(a.target.tiers).map(([k, v]) => `${k}: ${v}`).join(', ')}` : ''})` : "the profile's own tiers for every broker-scope subcategory";
  return [
    `Current: ${p.source}${p.name ? ` (${p.name})` : ''}, tier ${p.tier} ${TIER_NAMES[p.tier]}${tiers.length > 0 ? `, ${tiers.join(', ')}` : ''}${a.live ? ' — effective configuration of the running broker' : ''}`,
    `Target:  ${target}`,
  ];
}

function summaryLine(a: Assessment): string {
  const s = a.summary;
  return `${s.subcategories} subcategories: ${s.met} met, ${s.gaps} gap${s.gaps === 1 ? '' : 's'}, ${s.attested} attested, ${s.needsAttestation} need attestation, ${s.notTargeted} not targeted`;
}

function clip(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}

/** The readable table: one line per subcategory, grouped by function and category, notes indented below. */
export function renderAssessment(a: Assessment): string {
  const out = [...header(a), ''];
  const row = (s: SubcategoryAssessment) => {
    const what = s.enabled.map((e) => `${e.key}: ${e.text}`).join('; ') || (s.attestation ? `attested by ${s.attestation.by} ${s.attestation.date}` : '—');
    out.push(
      `    ${s.id.padEnd(8)} ${clip(s.name, 34).padEnd(34)} ${(s.scope === 'outside-catalog' ? 'other' : s.scope).padEnd(12)} ${tierText(s.reached).padStart(2)} ${tierText(s.target).padStart(3)}  ${STATUS_TEXT[s.status].padEnd(8)} ${clip(what, 70)}`,
    );
    if (s.implementedBy.length > 0) out.push(`${' '.repeat(14)}implemented by: ${s.implementedBy.join(', ')}`);
    for (const n of s.notes) out.push(`${' '.repeat(14)}${s.status === 'gap' && n === s.notes[0] ? '! ' : '- '}${n}`);
    for (const e of s.exceptions) out.push(`${' '.repeat(14)}- exception ${e.key}: ${e.reason} (approved by ${e.approvedBy}${e.expires ? `, until ${e.expires}` : ''})`);
  };
  out.push(`    ${'id'.padEnd(8)} ${'subcategory'.padEnd(34)} ${'scope'.padEnd(12)} ${'at'.padStart(2)} ${'tgt'.padStart(3)}  ${'status'.padEnd(8)} what the profile sets`);
  for (const fn of a.functions) {
    out.push(`${fn.id}  ${fn.name}`);
    for (const c of fn.categories) {
      out.push(`  ${c.id}  ${c.name} (tier ${c.tier})`);
      for (const s of c.subcategories) row(s);
    }
  }
  if (a.other.length > 0) {
    out.push('Outside the catalog');
    for (const s of a.other) row(s);
  }
  if (a.unusedExceptions.length > 0) {
    out.push('', 'Exceptions that waive nothing (remove them):');
    for (const e of a.unusedExceptions) out.push(`  ${e.control} ${e.key}: ${e.reason}`);
  }
  out.push('', summaryLine(a));
  return `${out.join('\n')}\n`;
}

const md = (t: string) => t.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** Markdown: one table per function. */
export function renderAssessmentMarkdown(a: Assessment): string {
  const out = ['# Profile assessment', '', ...header(a).map((l) => `- ${l}`), '', `**${summaryLine(a)}**`, ''];
  const table = (title: string, rows: readonly SubcategoryAssessment[]) => {
    out.push(`## ${title}`, '', '| Subcategory | Scope | Profile sets | Implemented by | Reached | Target | Status | Notes |', '| --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const s of rows) {
      const what = s.enabled.map((e) => `\`${e.key}\`: ${e.text}`).join('<br>') || (s.attestation ? `attested by ${s.attestation.by}, ${s.attestation.date} ([evidence](${s.attestation.evidence}))` : '—');
      const notes = [...s.notes, ...s.exceptions.map((e) => `exception \`${e.key}\`: ${e.reason} (${e.approvedBy})`)].join('<br>');
      out.push(`| ${s.id} ${md(s.name)} | ${s.scope} | ${md(what)} | ${md(s.implementedBy.join(', ') || '—')} | ${tierText(s.reached)} | ${tierText(s.target)} | ${s.status === 'gap' ? '**gap**' : s.status} | ${md(notes)} |`);
    }
    out.push('');
  };
  for (const fn of a.functions) table(`${fn.id} ${fn.name}`, fn.categories.flatMap((c) => c.subcategories));
  if (a.other.length > 0) table('Outside the catalog', a.other);
  return `${out.join('\n')}`;
}

/** Exit code for CI: 3 when a gap remains. */
export function assessmentExitCode(a: Assessment): number {
  return a.summary.gaps > 0 ? 3 : 0;
}
