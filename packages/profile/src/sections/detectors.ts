/**
 * `detectors`: thresholds and windows of the seven detectors of the note (DE.NM-1/2, DE.PM-1,
 * DE.ID-1/2/3/4). Each detector follows the tier of its CSF category: off at tier 1 unless
 * configured, lenient at tier 2, on with the standard thresholds at tier 3 and 4. A detector's key
 * given in the profile turns it on at any tier (`enabled: false` turns it off).
 */
import { z } from 'zod';
import { duration, integerRange } from '../primitives.js';
import type { Tier } from '../types.js';
import { defineSection } from './section.js';
import { formatDuration } from '../units.js';

/** The subcategory each detector delivers (its floor and its assess row). */
const DETECTOR_CONTROLS = {
  connectionAttempts: 'DE.NM-1',
  abnormalTermination: 'DE.NM-2',
  availability: 'DE.PM-1',
  authFailures: 'DE.ID-1',
  topicScanning: 'DE.ID-2',
  undeliverable: 'DE.ID-3',
  silentClients: 'DE.ID-4',
} as const;

function describeDetector(d: Record<string, unknown>): string {
  return Object.entries(d)
    .filter(([k]) => k !== 'expected')
    .map(([k, v]) => `${k} ${typeof v === 'number' && (k === 'window' || k === 'after') ? formatDuration(v) : String(v)}`)
    .join(', ') + (Array.isArray(d['expected']) ? `${(d['expected'] as unknown[]).length} expected clients` : '');
}

export const SEVERITIES = ['low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

const WINDOW = { min: 100, max: 7 * 86_400_000 };
const count = (what: string) => integerRange(1, 10_000_000).optional().describe(what);
const enabled = z.boolean().optional().describe('Turn this detector on or off. When omitted: on at tier 2 and above for its CSF category (or when any of its keys is set), off at tier 1.');
const severity = z.enum(SEVERITIES).optional().describe('Severity of the detections it raises (response rules can select on it).');
const windowKey = duration(WINDOW).optional().describe('Length of the sliding window the counts are taken over.');

const schema = z.strictObject({
  capacity: integerRange(100, 10_000_000)
    .optional()
    .describe('Most entries each detector table keeps (addresses, client ids, usernames). The least recently seen is forgotten first, so memory stays bounded under a flood of distinct identities. Default 10000.'),
  connectionAttempts: z
    .strictObject({ enabled, window: windowKey, perIp: count('Connections from one address (IPv6: one /64) in the window before a detection. Tier 2: 120, tier 3+: 60.'), perClientId: count('CONNECTs with one client id in the window before a detection. Tier 2: 30, tier 3+: 10.'), severity })
    .optional()
    .describe('DE.NM-1 repeated connection attempts, per address and per client id. Window default 1m.'),
  abnormalTermination: z
    .strictObject({
      enabled,
      window: windowKey,
      perClient: count('Abnormal ends (socket closed without DISCONNECT, keepalive timeout, protocol error, oversized packet) of one client id in the window. Tier 2: 20, tier 3+: 10.'),
      perIp: count('Abnormal ends of connections from one address in the window. Tier 2: 50, tier 3+: 30.'),
      fleet: count('Abnormal ends across the whole broker in the window (a spike). Tier 2: 500, tier 3+: 200.'),
      severity,
    })
    .optional()
    .describe('DE.NM-2 abnormal termination of connections. Window default 5m.'),
  availability: z
    .strictObject({
      expected: z
        .array(
          z.strictObject({
            clientId: z.string().min(1).optional().describe('An exact client id that must stay connected.'),
            pattern: z.string().min(1).optional().describe('A glob over client ids (`*` matches any run of characters): every client seen matching it must stay connected.'),
            interval: duration({ min: 100, max: 30 * 86_400_000 }).describe('Longest acceptable absence (not connected, or no PUBLISH when `publishes`).'),
            publishes: z.boolean().optional().describe('The client must also publish at least once per interval. Default true.'),
          }),
        )
        .min(1)
        .describe('The clients expected to be available; each entry has `clientId` or `pattern`.'),
      severity,
    })
    .optional()
    .describe('DE.PM-1 client availability: expected clients that are not connected, or stopped publishing, for longer than their interval. On whenever clients are listed.'),
  authFailures: z
    .strictObject({
      enabled,
      window: windowKey,
      perIp: count('Failed authentications from one address in the window. Tier 2: 20, tier 3+: 5.'),
      perUsername: count('Failed authentications for one username in the window. Tier 2: 20, tier 3+: 5.'),
      perClientId: count('Failed authentications with one client id in the window. Tier 2: 20, tier 3+: 5.'),
      severity,
    })
    .optional()
    .describe('DE.ID-1 repeated authentication attempts, counted per address, per username and per client id at once (rotating one does not evade the others). Window default 5m.'),
  topicScanning: z
    .strictObject({
      enabled,
      window: windowKey,
      maxTopics: count('Distinct topics one connection publishes or subscribes to in the window. Tier 2: 500, tier 3+: 200.'),
      maxDenials: count('Publish/subscribe denials for one client id, username or address in the window. Tier 2: 50, tier 3+: 20.'),
      severity,
    })
    .optional()
    .describe('DE.ID-2 topic scanning: many distinct topics, or many authorization denials. Window default 1m.'),
  undeliverable: z
    .strictObject({ enabled, window: windowKey, max: count('Messages one connection publishes to topics nobody subscribes to in the window. Tier 2: 1000, tier 3+: 500.'), severity })
    .optional()
    .describe('DE.ID-3 undeliverable messages (no subscriber to the topic; retained messages do not count). Window default 1m.'),
  silentClients: z
    .strictObject({ enabled, after: duration({ min: 100, max: 7 * 86_400_000 }).optional().describe('Time after CONNECT without any PUBLISH or SUBSCRIBE. Tier 2: 10m, tier 3+: 2m.'), severity })
    .optional()
    .describe('DE.ID-4 clients that connect but send no data.'),
});

type Parsed = z.output<typeof schema>;

export interface ResolvedDetectors {
  capacity: number;
  connectionAttempts?: { window: number; perIp: number; perClientId: number; severity?: Severity };
  abnormalTermination?: { window: number; perClient: number; perIp: number; fleet: number; severity?: Severity };
  availability?: { expected: Array<{ clientId?: string; pattern?: string; interval: number; publishes: boolean }>; severity?: Severity };
  authFailures?: { window: number; perIp: number; perUsername: number; perClientId: number; severity?: Severity };
  topicScanning?: { window: number; maxTopics: number; maxDenials: number; severity?: Severity };
  undeliverable?: { window: number; max: number; severity?: Severity };
  silentClients?: { after: number; severity?: Severity };
}

const MIN = 60_000;
/** [lenient (tiers 1–2), standard (tiers 3–4)] */
const DEFAULTS = {
  connectionAttempts: [
    { window: MIN, perIp: 120, perClientId: 30 },
    { window: MIN, perIp: 60, perClientId: 10 },
  ],
  abnormalTermination: [
    { window: 5 * MIN, perClient: 20, perIp: 50, fleet: 500 },
    { window: 5 * MIN, perClient: 10, perIp: 30, fleet: 200 },
  ],
  authFailures: [
    { window: 5 * MIN, perIp: 20, perUsername: 20, perClientId: 20 },
    { window: 5 * MIN, perIp: 5, perUsername: 5, perClientId: 5 },
  ],
  topicScanning: [
    { window: MIN, maxTopics: 500, maxDenials: 50 },
    { window: MIN, maxTopics: 200, maxDenials: 20 },
  ],
  undeliverable: [
    { window: MIN, max: 1000 },
    { window: MIN, max: 500 },
  ],
  silentClients: [{ after: 10 * MIN }, { after: 2 * MIN }],
} as const;

const CATEGORY = {
  connectionAttempts: 'DE.NM',
  abnormalTermination: 'DE.NM',
  authFailures: 'DE.ID',
  topicScanning: 'DE.ID',
  undeliverable: 'DE.ID',
  silentClients: 'DE.ID',
} as const;

type Tunable = keyof typeof DEFAULTS;

/** Given keys over the tier's defaults; undefined when the detector is off. */
function tune<K extends Tunable>(key: K, given: Parsed[K] | undefined, tier: Tier): Record<string, unknown> | undefined {
  const g = given as ({ enabled?: boolean } & Record<string, unknown>) | undefined;
  const on = g?.enabled ?? (g !== undefined || tier >= 2);
  if (!on) return undefined;
  const base = DEFAULTS[key][tier >= 3 ? 1 : 0] as Record<string, unknown>;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(g ?? {})) if (k !== 'enabled' && v !== undefined) out[k] = v;
  return out;
}

export const detectorsSection = defineSection({
  key: 'detectors',
  schema: schema.describe(
    'Detectors of the Detect function (DE.NM-1/2, DE.PM-1, DE.ID-1/2/3/4): thresholds and windows. Each detector follows the tier of its category (DE.NM, DE.PM, DE.ID): off at tier 1 unless configured, lenient at tier 2, standard at tiers 3–4. Detections are `detection.raised` events; `responses` decides what is done about them.',
  ),
  resolve(parsed: Parsed | undefined, ctx): ResolvedDetectors | undefined {
    const out: ResolvedDetectors = { capacity: parsed?.capacity ?? 10_000 };
    let any = false;
    for (const key of Object.keys(DEFAULTS) as Tunable[]) {
      const v = tune(key, parsed?.[key], ctx.tierFor(CATEGORY[key]));
      if (v !== undefined) {
        (out as unknown as Record<string, unknown>)[key] = v;
        any = true;
      }
    }
    const av = parsed?.availability;
    if (av !== undefined) {
      av.expected.forEach((e, i) => {
        if ((e.clientId === undefined) === (e.pattern === undefined)) ctx.issue(['availability', 'expected', i], 'give exactly one of clientId or pattern');
      });
      out.availability = {
        expected: av.expected.map((e) => ({
          ...(e.clientId === undefined ? {} : { clientId: e.clientId }),
          ...(e.pattern === undefined ? {} : { pattern: e.pattern }),
          interval: e.interval,
          publishes: e.publishes ?? true,
        })),
        ...(av.severity === undefined ? {} : { severity: av.severity }),
      };
      any = true;
    }
    return any ? out : undefined;
  },
  tiers: {
    category: 'DE.NM, DE.ID',
    controls: ['DE.NM-1', 'DE.NM-2', 'DE.PM-1', 'DE.ID-1', 'DE.ID-2', 'DE.ID-3', 'DE.ID-4', 'PR.SS-3'],
    summary(v, control) {
      if (v === undefined) return control === undefined ? 'off (tier 1 default: no detector unless configured)' : '';
      const on = (Object.keys(DETECTOR_CONTROLS) as Array<keyof typeof DETECTOR_CONTROLS>).filter((k) => v[k] !== undefined);
      if (control !== undefined && control !== 'PR.SS-3') {
        const key = on.find((k) => DETECTOR_CONTROLS[k] === control);
        return key === undefined ? '' : `${key}: ${describeDetector(v[key] as Record<string, unknown>)}`;
      }
      if (on.length === 0) return 'no detector on';
      const lenient = v.authFailures !== undefined && v.authFailures.perIp > DEFAULTS.authFailures[1].perIp;
      return `${on.length} detector${on.length === 1 ? '' : 's'} on${control === undefined && v.authFailures ? ` (${lenient ? 'lenient' : 'standard'} thresholds, e.g. auth failures ${v.authFailures.perIp} per address in ${formatDuration(v.authFailures.window)})` : `: ${on.join(', ')}`}`;
    },
    floors: (Object.keys(CATEGORY) as Tunable[]).map((key) => ({
      control: DETECTOR_CONTROLS[key],
      from: 3 as const,
      key: `detectors.${key}`,
      requirement: 'on (not disabled)',
      check: (v: ResolvedDetectors | undefined) => (v?.[key] === undefined ? { path: [key], message: `the ${key} detector off` } : undefined),
    })),
  },
});
