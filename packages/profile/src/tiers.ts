/**
 * Implementation Tiers as presets and floors.
 *
 * A profile names a tier (1 Partial, 2 Risk-Informed, 3 Repeatable, 4 Adaptive) and may set one
 * per CSF category (`tiers: { PR.AC: 4 }`). Each tier is
 *  - a **preset**: the defaults `resolve` applies for whatever the profile leaves out (every section
 *    reads `ctx.tierFor(category)`; the base keys read `tlsPreset` below), and
 *  - a **floor**: the minimum a setting may be at that tier. Explicit settings override presets; a
 *    setting below its floor is a profile error unless `exceptions` records it.
 *
 * The rows here — the base keys (listeners, authentication, limits) declared in this file, then
 * every section's own `tiers` declaration — are the single source of docs/tiers.md (`tierTable`),
 * of the floor checks the loader runs (`enforceFloors`) and of what `bastion profile assess`
 * measures (`evaluateFloors`, `enabledFor`).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { z } from 'zod';
import { covers, formatPath, isExpired } from './exceptions.js';
import type { ProfileException } from './exceptions.js';
import { TIERS, TIER_NAMES, limitsSchema } from './schema.js';
import { sections } from './sections/index.js';
import type { FloorContext, FloorViolation, Section, SectionContext, SectionPath, SectionTiers } from './sections/section.js';
import type { ClientCertificateMode, Listener, Profile, Tier, TlsListener, TlsVersion } from './types.js';
import { formatDuration, formatSize } from './units.js';

/** Sections that are about the profile itself, not a control: no tier row. */
const META_SECTIONS: ReadonlySet<string> = new Set(['exceptions', 'attestations']);

/** A floor over the whole profile: paths are from the root. */
export interface ProfileFloor {
  /** The row it belongs to ('listeners', 'acl'). */
  readonly row: string;
  readonly control: string;
  readonly from: Tier;
  readonly key: string;
  readonly requirement: string;
  check(ctx: FloorContext): readonly FloorViolation[];
}

/** One row of docs/tiers.md: a base key or a section. */
export interface TierRow {
  readonly key: string;
  readonly category: string;
  readonly controls: readonly string[];
  /** The defaults a tier gives (from the code that applies them). */
  preset(tier: Tier): string;
  /** What a resolved profile has for this row, optionally only for one subcategory ('' = nothing). */
  summary(profile: Profile, control?: string): string;
  readonly floors: readonly ProfileFloor[];
  /** False for a section without a `tiers` declaration yet. */
  readonly declared: boolean;
}

// --- the base keys -------------------------------------------------------------------------------

const LOOPBACK_NAMES: ReadonlySet<string> = new Set(['localhost', '::1', '0:0:0:0:0:0:0:1']);

/** 127.0.0.0/8, ::1, localhost: where a plaintext listener is not on any network. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^::ffff:/, '');
  return LOOPBACK_NAMES.has(h) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** The tier defaults of every TLS listener's `minVersion` (by PR.IP) and `clientCertificate` (by PR.AC). */
export function tlsPreset(tierFor: (id: string) => Tier): { minVersion: TlsVersion; clientCertificate: ClientCertificateMode } {
  return { minVersion: tierFor('PR.IP-1') >= 3 ? 'TLSv1.3' : 'TLSv1.2', clientCertificate: tierFor('PR.AC-1') >= 3 ? 'required' : 'none' };
}

const isTls = (l: Listener): l is TlsListener => l.protocol === 'mqtts' || l.protocol === 'wss';
const url = (l: Listener) => `${l.protocol}://${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;
const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;

function listenerSummary(p: Profile, control?: string): string {
  const tls = p.listeners.filter(isTls);
  const plain = p.listeners.filter((l) => !isTls(l));
  const plainText = plain.length === 0 ? 'no plaintext' : `plaintext: ${plain.map((l) => `${url(l)}${isLoopbackHost(l.host) ? ' (loopback)' : ''}`).join(', ')}`;
  const versions = [...new Set(tls.map((l) => l.tls.minVersion))].join('/');
  const modes = [...new Set(tls.map((l) => l.tls.clientCertificate))].join('/');
  switch (control) {
    case 'PR.AC-1':
      return tls.length === 0 ? '' : `TLS on ${tls.length} of ${p.listeners.length} listeners, client certificates ${modes}; ${plainText}`;
    case 'PR.AC-4':
    case 'ID.RM-4':
      return tls.length === 0 ? '' : `server certificate on ${plural(tls.length, 'TLS listener')}`;
    case 'PR.IP-1':
      return tls.length === 0 ? '' : `TLS ≥ ${versions}${tls.some((l) => l.tls.ciphers !== undefined) ? ', custom TLS 1.2 ciphers' : ', hardened cipher list'}`;
    case 'PR.IP-5':
      return tls.length === 0 ? '' : "TLS keys and session tickets from OpenSSL's CSPRNG";
    case 'PR.IP-2':
    case 'PR.IP-3':
      return tls.length === 0 ? '' : `TLS on ${tls.length} of ${p.listeners.length} listeners; ${plainText}`;
    default:
      return p.listeners.map((l) => (isTls(l) ? `${url(l)} (≥ ${l.tls.minVersion}, client cert ${l.tls.clientCertificate})` : url(l))).join(', ');
  }
}

const LIMIT_DEFAULTS = limitsSchema.parse({});

const BASE_FLOORS: readonly ProfileFloor[] = [
  {
    row: 'listeners',
    control: 'PR.AC-1',
    from: 2,
    key: 'listeners[]',
    requirement: 'no plaintext mqtt/ws listener off loopback',
    check: ({ listeners }) =>
      listeners.flatMap((l, i) =>
        !isTls(l) && !isLoopbackHost(l.host) ? [{ path: ['listeners', i], message: `plaintext ${l.protocol} listener "${l.name}" on ${l.host}` }] : [],
      ),
  },
  {
    row: 'listeners',
    control: 'PR.AC-1',
    from: 3,
    key: 'listeners[].tls.clientCertificate',
    requirement: 'required on every TLS listener (mTLS)',
    check: ({ listeners }) =>
      listeners.flatMap((l, i) =>
        isTls(l) && l.tls.clientCertificate !== 'required'
          ? [{ path: ['listeners', i, 'tls', 'clientCertificate'], message: `TLS listener "${l.name}" with clientCertificate: ${l.tls.clientCertificate}` }]
          : [],
      ),
  },
  {
    row: 'listeners',
    control: 'PR.IP-1',
    from: 3,
    key: 'listeners[].tls.minVersion',
    requirement: 'TLSv1.3 on every TLS listener',
    check: ({ listeners }) =>
      listeners.flatMap((l, i) =>
        isTls(l) && l.tls.minVersion !== 'TLSv1.3' ? [{ path: ['listeners', i, 'tls', 'minVersion'], message: `TLS listener "${l.name}" accepting ${l.tls.minVersion}` }] : [],
      ),
  },
  {
    row: 'authentication',
    control: 'PR.AC-3',
    from: 2,
    key: 'authentication.anonymous',
    requirement: 'false — every client authenticates',
    check: ({ authentication }) => (authentication.anonymous ? [{ path: ['authentication', 'anonymous'], message: 'anonymous access (anonymous: true)' }] : []),
  },
  {
    row: 'authentication',
    control: 'PR.CS-3',
    from: 4,
    key: 'authentication.require',
    requirement: '[certificate, password] — two factors',
    check: ({ authentication }) =>
      authentication.require.includes('certificate') && authentication.require.includes('password')
        ? []
        : [{ path: ['authentication', 'require'], message: `one-factor authentication (require: [${authentication.require.join(', ')}])` }],
  },
];

const BASE_ROWS: readonly TierRow[] = [
  {
    key: 'listeners',
    category: 'PR.AC, PR.IP',
    controls: ['PR.AC-1', 'PR.AC-4', 'ID.RM-4', 'PR.IP-1', 'PR.IP-2', 'PR.IP-3', 'PR.IP-5'],
    preset(tier) {
      const t = tlsPreset(() => tier);
      return `TLS listeners: minVersion ${t.minVersion}, clientCertificate ${t.clientCertificate}`;
    },
    summary: listenerSummary,
    floors: BASE_FLOORS.filter((f) => f.row === 'listeners'),
    declared: true,
  },
  {
    key: 'authentication',
    category: 'PR.AC, PR.CS',
    controls: ['PR.AC-3', 'PR.CS-3'],
    preset: () => 'anonymous: false; any one configured factor (passwords, certificates)',
    summary(p, control) {
      const a = p.authentication;
      const factors = [...(a.passwords ? ['passwords'] : []), ...(a.certificates ? [`certificates (identity ${a.certificates.identity}${a.certificates.clientIdMustMatch ? ', client id must match' : ''})`] : [])];
      if (control === 'PR.CS-3') return a.require.length > 1 ? `two factors required: ${a.require.join(' + ')}` : '';
      const base = factors.length === 0 ? 'no authenticator' : factors.join(', ');
      return `${base}${a.require.length > 0 ? `; required: ${a.require.join(' + ')}` : ''}${a.anonymous ? '; anonymous allowed' : ''}`;
    },
    floors: BASE_FLOORS.filter((f) => f.row === 'authentication'),
    declared: true,
  },
  {
    key: 'limits',
    category: 'PR.SS',
    controls: ['PR.SS-1'],
    preset: () => `maxPacketSize ${formatSize(LIMIT_DEFAULTS.maxPacketSize)}, connectTimeout ${formatDuration(LIMIT_DEFAULTS.connectTimeout)}`,
    summary: (p) => `maxPacketSize ${formatSize(p.limits.maxPacketSize)}, connectTimeout ${formatDuration(p.limits.connectTimeout)}`,
    floors: [],
    declared: true,
  },
];

// --- the sections --------------------------------------------------------------------------------

type AnySection = Section<z.ZodType, unknown>;

function quietContext(tier: Tier): SectionContext {
  return { abs: (p) => p, tierFor: () => tier, issue: () => {} };
}

function sectionRow(section: AnySection): TierRow {
  const t = section.tiers as SectionTiers<unknown> | undefined;
  if (t === undefined) {
    return { key: section.key, category: '—', controls: [], preset: () => 'no tier declaration yet', summary: () => '', floors: [], declared: false };
  }
  const example = t.example === undefined ? undefined : section.schema.parse(t.example);
  return {
    key: section.key,
    category: t.category,
    controls: t.controls,
    preset(tier) {
      const absent = section.resolve(undefined, quietContext(tier));
      if (absent !== undefined || example === undefined) return t.summary(absent);
      return `off unless configured; then ${t.summary(section.resolve(example, quietContext(tier)))}`;
    },
    summary: (p, control) => t.summary((p as unknown as Record<string, unknown>)[section.key], control),
    floors: (t.floors ?? []).map((f) => ({
      row: section.key,
      control: f.control,
      from: f.from,
      key: f.key,
      requirement: f.requirement,
      check(ctx: FloorContext) {
        const r = f.check(ctx.section(section.key), ctx);
        const list = r === undefined ? [] : Array.isArray(r) ? (r as readonly FloorViolation[]) : [r as FloorViolation];
        return list.map((v) => ({ path: [section.key, ...v.path], message: v.message }));
      },
    })),
    declared: true,
  };
}

let rows: readonly TierRow[] | undefined;

/** Every row: the base keys, then the control sections in registry order (built once: sections are static). */
export function tierRows(): readonly TierRow[] {
  rows ??= [...BASE_ROWS, ...Object.values(sections as unknown as Record<string, AnySection>).filter((s) => !META_SECTIONS.has(s.key)).map(sectionRow)];
  return rows;
}

/** Every floor of every row. */
export function tierFloors(): ProfileFloor[] {
  return tierRows().flatMap((r) => [...r.floors]);
}

// --- checking floors -----------------------------------------------------------------------------

function floorContext(p: { listeners: readonly Listener[]; authentication: Profile['authentication'] }, sectionValue: (key: string) => unknown): FloorContext {
  return { listeners: p.listeners, authentication: p.authentication, section: sectionValue };
}

/** The loader's floor check: every floor that applies at the profile's tiers, exceptions honoured. */
export function enforceFloors(input: {
  listeners: readonly Listener[];
  authentication: Profile['authentication'];
  sectionValues: Readonly<Record<string, unknown>>;
  exceptions: readonly ProfileException[];
  tierFor(id: string): Tier;
  report(path: SectionPath, message: string): void;
  now?: Date;
}): void {
  const ctx = floorContext({ listeners: input.listeners, authentication: input.authentication }, (k) => input.sectionValues[k]);
  const floors = tierFloors();
  const known = new Set(floors.map((f) => f.control));
  input.exceptions.forEach((e, i) => {
    if (!known.has(e.control)) {
      input.report(['exceptions', i, 'control'], `no tier floor protects ${e.control}: an exception waives a floor (floors protect ${[...known].sort().join(', ')})`);
    }
  });
  for (const f of floors) {
    const tier = input.tierFor(f.control);
    if (tier < f.from) continue;
    let violations: readonly FloorViolation[];
    try {
      violations = f.check(ctx);
    } catch {
      continue; // a value another error already reported; that error says what to fix
    }
    for (const v of violations) {
      const key = formatPath(v.path);
      const matching = input.exceptions.filter((e) => covers(e, f.control, key));
      if (matching.some((e) => !isExpired(e, input.now))) continue;
      const expired = matching[0];
      const category = f.control.slice(0, 5);
      const way = expired?.expires
        ? `its exception expired on ${expired.expires}`
        : `meet it, lower tiers.${category}, or record an exception { control: ${f.control}, key: ${key}, reason, approvedBy }`;
      input.report(v.path, `at tier ${tier} of ${category}, ${v.message} is below the floor of ${f.control} (${f.key}: ${f.requirement}): ${way}`);
    }
  }
}

export interface FloorFinding {
  readonly floor: ProfileFloor;
  /** Each shortfall, with the exception that covers it, if any (an expired one does not cover). */
  readonly violations: ReadonlyArray<{ path: string; message: string; exception?: ProfileException; expired?: ProfileException }>;
}

/** Every floor of every tier against a resolved profile (applies or not): what assess measures. */
export function evaluateFloors(profile: Profile, now: Date = new Date()): { findings: FloorFinding[]; unusedExceptions: ProfileException[] } {
  const record = profile as unknown as Record<string, unknown>;
  const ctx = floorContext(profile, (k) => record[k]);
  const exceptions = (record['exceptions'] as ProfileException[] | undefined) ?? [];
  const used = new Set<ProfileException>();
  const findings = tierFloors().map((floor): FloorFinding => {
    let raw: readonly FloorViolation[] = [];
    try {
      raw = floor.check(ctx);
    } catch {
      raw = [];
    }
    return {
      floor,
      violations: raw.map((v) => {
        const path = formatPath(v.path);
        const matching = exceptions.filter((e) => covers(e, floor.control, path));
        const live = matching.find((e) => !isExpired(e, now));
        const expired = matching.find((e) => isExpired(e, now));
        for (const e of matching) used.add(e);
        return { path, message: v.message, ...(live ? { exception: live } : {}), ...(expired && !live ? { expired } : {}) };
      }),
    };
  });
  return { findings, unusedExceptions: exceptions.filter((e) => !used.has(e)) };
}

/** What the profile has for one subcategory, row by row (rows with nothing for it are left out). */
export function enabledFor(profile: Profile, control: string): Array<{ key: string; text: string }> {
  const out: Array<{ key: string; text: string }> = [];
  for (const row of tierRows()) {
    if (!row.controls.includes(control)) continue;
    let text = '';
    try {
      text = row.summary(profile, control);
    } catch {
      text = '';
    }
    if (text !== '') out.push({ key: row.key, text });
  }
  return out;
}

// --- docs/tiers.md -------------------------------------------------------------------------------

export const TIER_TABLE_BEGIN = '<!-- BEGIN GENERATED TIER TABLE: tierTable() in @bastion/profile. Do not edit by hand. -->';
export const TIER_TABLE_END = '<!-- END GENERATED TIER TABLE -->';

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');

/** The table of docs/tiers.md: one row per base key and section, one column per tier, presets and floors. */
export function tierTable(): string {
  const head = `| Setting | Category | ${TIERS.map((t) => `${t} ${TIER_NAMES[t]}`).join(' | ')} |`;
  const lines = [head, `| --- | --- | ${TIERS.map(() => '---').join(' | ')} |`];
  for (const row of tierRows()) {
    const cells = TIERS.map((t) => {
      // a floor is shown where it starts and holds in every column to its right
      const floors = row.floors.filter((f) => f.from === t).map((f) => `**floor ${f.control}**: \`${f.key}\`: ${f.requirement}`);
      const inherited = row.floors.some((f) => f.from < t) ? ['+ floors to the left'] : [];
      return cell([row.preset(t), ...floors, ...inherited].join('<br>'));
    });
    lines.push(`| \`${row.key}\` | ${row.category} | ${cells.join(' | ')} |`);
  }
  return `${lines.join('\n')}\n`;
}

/** Replaces the generated table between the BEGIN/END markers of `file` (docs/tiers.md). */
export function writeTierTable(file: string): void {
  const text = readFileSync(file, 'utf8');
  const begin = text.indexOf(TIER_TABLE_BEGIN);
  const end = text.indexOf(TIER_TABLE_END);
  if (begin < 0 || end < begin) throw new Error(`${file} has no ${TIER_TABLE_BEGIN} ... ${TIER_TABLE_END} section`);
  writeFileSync(file, `${text.slice(0, begin + TIER_TABLE_BEGIN.length)}\n\n${tierTable()}\n${text.slice(end)}`);
}
