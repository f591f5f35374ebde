/**
 * `responses`: what is done about a detection (RS.RP-1…6). Rules name a detector (or its CSF id, or
 * `*`) and actions; bans escalate for repeat offenders; allow-listed identities are never a
 * target; `dryRun` records what would be done without doing it. Tier 3 and 4 (category RS.RP)
 * default to a small rule set when no rules are given: ban an address after repeated failed
 * authentications or connection attempts, disconnect a client that scans topics.
 */
import { z } from 'zod';
import { show } from '../messages.js';
import { duration } from '../primitives.js';
import { defineSection } from './section.js';
import { formatDuration } from '../units.js';
import { SEVERITIES } from './detectors.js';
import type { Severity } from './detectors.js';

export const RESPONSE_ACTIONS = ['disconnect', 'ban', 'ban-ip', 'ban-client', 'ban-username', 'revoke', 'block-topic', 'lockdown', 'shutdown'] as const;
export type ResponseAction = (typeof RESPONSE_ACTIONS)[number];
/** The detectors of @bastion/detect (kept here so the profile can check rule names without depending on it). */
export const DETECTOR_NAMES = ['connection-attempts', 'abnormal-termination', 'availability', 'auth-failures', 'topic-scanning', 'undeliverable', 'silent-clients'] as const;
export const OFFENDER_KEYS = ['ip', 'clientId', 'username', 'connection', 'fleet'] as const;
const CSF_ID = /^[A-Z]{2}\.[A-Z]{2}-[0-9]+$/;
const ADDRESS = /^[0-9A-Fa-f:.]+(\/[0-9]{1,3})?$/;

const DAY = 86_400_000;

const allowList = z.strictObject({
  ips: z
    .array(z.string().regex(ADDRESS, { error: (iss) => `expected an IP address or CIDR range, got ${show(iss.input)}` }))
    .optional()
    .describe('Addresses and CIDR ranges (IPv4 or IPv6).'),
  clientIds: z.array(z.string().min(1)).optional().describe('Client ids.'),
  usernames: z.array(z.string().min(1)).optional().describe('Usernames (authenticated identities).'),
});

const action = z.union(
  [
    z.enum(RESPONSE_ACTIONS),
    z.strictObject({
      action: z.enum(RESPONSE_ACTIONS).describe('The action.'),
      duration: duration({ min: 1000, max: 365 * DAY }).optional().describe('For bans: the first ban duration (then escalated); for block-topic and lockdown: how long. Omitted: the section defaults.'),
    }),
  ],
  { error: (iss) => `expected one of ${RESPONSE_ACTIONS.join(', ')} or { action, duration }, got ${show(iss.input)}` },
);

const schema = z.strictObject({
  dryRun: z.boolean().optional().describe('Record what the rules would do (`response.action` events with outcome `dry-run`) without doing it. Default false.'),
  allow: allowList.optional().describe('Identities that are never the target of an action: an allow-listed address is never banned, an allow-listed client never disconnected, an allow-listed user never revoked.'),
  ban: z
    .strictObject({
      duration: duration({ min: 1000, max: 365 * DAY }).optional().describe('First ban of an offender. Default 10m.'),
      factor: z.number().min(1).max(100).optional().describe('Each repeat offence multiplies the previous ban by this. Default 2.'),
      maxDuration: duration({ min: 1000, max: 365 * DAY }).optional().describe('Longest ban escalation reaches. Default 24h.'),
      forgetAfter: duration({ min: 1000, max: 365 * DAY }).optional().describe('An offender with no offence for this long starts again at the first duration. Default 24h.'),
    })
    .optional()
    .describe('Ban durations and their escalation for repeat offenders.'),
  lockdown: z
    .strictObject({
      duration: duration({ min: 1000, max: 365 * DAY }).optional().describe('How long a lockdown lasts. Omitted: until lifted.'),
      allow: allowList.optional().describe('Who may still connect during a lockdown (besides `responses.allow`).'),
      disconnectOthers: z.boolean().optional().describe('Also close the connections of everyone not allowed. Default false.'),
    })
    .optional()
    .describe('Lockdown: new connections are refused (CONNACK server unavailable) except from allow-listed addresses, client ids or usernames.'),
  blockTopicDuration: duration({ min: 1000, max: 365 * DAY }).optional().describe('How long block-topic blocks a topic. Omitted: until unblocked.'),
  rules: z
    .array(
      z.strictObject({
        detector: z
          .string()
          .refine((s) => s === '*' || CSF_ID.test(s) || (DETECTOR_NAMES as readonly string[]).includes(s), {
            error: (iss) => `expected a detector (${DETECTOR_NAMES.join(', ')}), a CSF id like DE.ID-1, or *, got ${show(iss.input)}`,
          })
          .describe('The detector the rule answers: its name, its CSF id (DE.ID-1), or `*` for every detection.'),
        keys: z.array(z.enum(OFFENDER_KEYS)).min(1).optional().describe('Only detections counted per these keys (ip, clientId, username, connection, fleet). Default: any.'),
        minSeverity: z.enum(SEVERITIES).optional().describe('Only detections at least this severe.'),
        actions: z
          .array(action)
          .min(1)
          .describe('What to do: disconnect, ban (the counted key), ban-ip, ban-client, ban-username, revoke (the credential), block-topic (the detection\'s topic), lockdown, shutdown. A string or { action, duration }.'),
      }),
    )
    .optional()
    .describe('Response rules; every matching rule runs (each action at most once per detection). When omitted: none at tiers 1–2; at tiers 3–4 (RS.RP), ban the address after auth-failures or connection-attempts counted per address, disconnect on topic-scanning.'),
});

type Parsed = z.output<typeof schema>;

export interface ResolvedAllowList {
  ips: string[];
  clientIds: string[];
  usernames: string[];
}

export interface ResolvedResponses {
  dryRun: boolean;
  allow: ResolvedAllowList;
  ban: { duration: number; factor: number; maxDuration: number; forgetAfter: number };
  lockdown: { duration?: number; allow: ResolvedAllowList; disconnectOthers: boolean };
  blockTopicDuration?: number;
  rules: Array<{ detector: string; keys?: Array<(typeof OFFENDER_KEYS)[number]>; minSeverity?: Severity; actions: Array<{ action: ResponseAction; duration?: number }> }>;
}

const allow = (a: z.output<typeof allowList> | undefined): ResolvedAllowList => ({ ips: [...(a?.ips ?? [])], clientIds: [...(a?.clientIds ?? [])], usernames: [...(a?.usernames ?? [])] });

export const TIER3_RULES: ResolvedResponses['rules'] = [
  { detector: 'auth-failures', keys: ['ip'], actions: [{ action: 'ban' }] },
  { detector: 'connection-attempts', keys: ['ip'], actions: [{ action: 'ban' }] },
  { detector: 'topic-scanning', actions: [{ action: 'disconnect' }] },
];

export const responsesSection = defineSection({
  key: 'responses',
  schema: schema.describe('Response policies of the Respond function (RS.RP-1…6): what is done when a detector raises a detection.'),
  resolve(parsed: Parsed | undefined, ctx): ResolvedResponses | undefined {
    const tier = ctx.tierFor('RS.RP');
    if (parsed === undefined && tier < 3) return undefined;
    const rules =
      parsed?.rules?.map((r) => ({
        detector: r.detector,
        ...(r.keys === undefined ? {} : { keys: [...r.keys] }),
        ...(r.minSeverity === undefined ? {} : { minSeverity: r.minSeverity }),
        actions: r.actions.map((a) => (typeof a === 'string' ? { action: a } : { action: a.action, ...(a.duration === undefined ? {} : { duration: a.duration }) })),
      })) ?? (tier >= 3 ? TIER3_RULES.map((r) => ({ ...r, actions: r.actions.map((a) => ({ ...a })) })) : []);
    const b = parsed?.ban;
    const out: ResolvedResponses = {
      dryRun: parsed?.dryRun ?? false,
      allow: allow(parsed?.allow),
      ban: { duration: b?.duration ?? 10 * 60_000, factor: b?.factor ?? 2, maxDuration: b?.maxDuration ?? DAY, forgetAfter: b?.forgetAfter ?? DAY },
      lockdown: {
        ...(parsed?.lockdown?.duration === undefined ? {} : { duration: parsed.lockdown.duration }),
        allow: allow(parsed?.lockdown?.allow),
        disconnectOthers: parsed?.lockdown?.disconnectOthers ?? false,
      },
      ...(parsed?.blockTopicDuration === undefined ? {} : { blockTopicDuration: parsed.blockTopicDuration }),
      rules,
    };
    if (out.ban.maxDuration < out.ban.duration) ctx.issue(['ban', 'maxDuration'], 'maxDuration is shorter than duration');
    return out;
  },
  tiers: {
    category: 'RS.RP',
    controls: ['RS.RP-2', 'RS.RP-3', 'RS.RP-4', 'RS.RP-5', 'RS.RP-6'],
    summary(v, control) {
      if (v === undefined) return control === undefined ? 'no automatic response (detections are only reported)' : '';
      const actions = new Set(v.rules.flatMap((r) => r.actions.map((a) => a.action)));
      const serves: Record<string, ReadonlyArray<ResponseAction>> = {
        'RS.RP-2': ['revoke', 'ban-username'],
        'RS.RP-3': ['disconnect', 'ban', 'ban-ip', 'ban-client', 'ban-username'],
        'RS.RP-4': ['block-topic'],
        'RS.RP-5': ['ban', 'ban-ip', 'lockdown'],
        'RS.RP-6': ['shutdown'],
      };
      const mode = v.dryRun ? ' (dry run: recorded, not done)' : '';
      if (control !== undefined) {
        const mine = (serves[control] ?? []).filter((a) => actions.has(a));
        return mine.length === 0 ? '' : `automatic ${mine.join(', ')}${mode}`;
      }
      return v.rules.length === 0 ? `no rules${mode}` : `${v.rules.length} rule${v.rules.length === 1 ? '' : 's'}: ${[...actions].join(', ')}; bans from ${formatDuration(v.ban.duration)} up to ${formatDuration(v.ban.maxDuration)}${mode}`;
    },
    floors: [
      {
        control: 'RS.RP-3',
        from: 4,
        key: 'responses',
        requirement: 'at least one rule, dryRun off — detections drive actions',
        check: (v) =>
          v === undefined || v.rules.length === 0
            ? { path: v === undefined ? [] : ['rules'], message: 'no response rule' }
            : v.dryRun
              ? { path: ['dryRun'], message: 'responses in dry run' }
              : undefined,
      },
    ],
  },
});
