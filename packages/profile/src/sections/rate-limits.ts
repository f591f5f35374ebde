/**
 * `rateLimits` (PR.SS-5): budgets per remote address, per client, per user, per listener and in
 * total, each with a consequence when exceeded. Defaults follow the tier of PR.SS: a safety net at
 * tier 1 that legitimate loads never reach, tighter from tier 2, bans for repeat offenders at tier 4.
 * A limit set to `false` is off; a limit given replaces the tier's default for that limit only.
 */
import { z } from 'zod';
import { duration, integerRange, size } from '../primitives.js';
import type { Tier } from '../types.js';
import { defineSection } from './section.js';

export const RATE_CONSEQUENCES = ['drop', 'delay', 'refuse', 'disconnect', 'ban'] as const;
export type RateConsequence = (typeof RATE_CONSEQUENCES)[number];

/** One budget: `rate` units per `per`, a bucket of `burst`, and what happens beyond it. */
export interface RateSpec {
  rate: number;
  /** Milliseconds. */
  per: number;
  /** Bucket size (units); equals `rate` unless given. Local limits only. */
  burst: number;
  consequence: RateConsequence;
  /** Exceedances before `disconnect` or `ban` acts (the ones before get the soft answer). */
  strikes: number;
  /** Milliseconds an address is banned for (`ban`). */
  banFor: number;
  /** Longest back-pressure pause per packet, milliseconds (`delay`). */
  maxDelay: number;
}

export interface PublishBudget {
  messages?: RateSpec;
  bytes?: RateSpec;
}

export type RateStore = { type: 'memory' } | { type: 'redis'; url: string; keyPrefix: string };

export interface RateLimitSettings {
  store: RateStore;
  connections: { perIp?: RateSpec; perListener: Record<string, RateSpec>; total?: RateSpec };
  concurrent: { perIp?: number; perListener: Record<string, number>; total?: number; authPerIp?: number };
  publish: { perClient: PublishBudget; perUser: PublishBudget; perListener: Record<string, PublishBudget>; total: PublishBudget };
  subscribe: { perClient?: RateSpec; perUser?: RateSpec };
  authFailures: { perIp?: RateSpec };
  /** Refused sockets held open before they are closed (plain TCP listeners). */
  tarpit?: { hold: number; max: number; maxHold: number };
}

const PER = { min: 1, max: 86_400_000 };

function spec(kind: 'count' | 'bytes', allowed: readonly [RateConsequence, ...RateConsequence[]], what: string) {
  const amount = kind === 'count' ? integerRange(1, 1_000_000_000) : size({ min: 1 });
  return z.union([
    z.literal(false),
    z.strictObject({
      rate: amount.describe(kind === 'count' ? `How many ${what} per \`per\`.` : `How many bytes of ${what} per \`per\` (a size like 1MiB).`),
      per: duration(PER).optional().describe('The window the rate is counted over. Default 1s. Limits kept in the shared store (connections, per user) count whole seconds.'),
      burst: amount.optional().describe('How much may come at once (the bucket size); default equals `rate`. Per-client, per-listener and total limits only.'),
      consequence: z.enum(allowed).optional().describe(`What happens beyond the budget: ${allowed.join(', ')}. See docs/limits.md.`),
      strikes: integerRange(1, 1_000_000).optional().describe('For disconnect and ban: how many times the budget is exceeded before it acts; before that the packet gets the soft answer (QoS 0 dropped, QoS 1/2 delayed, SUBSCRIBE refused, connection refused). Default 3.'),
      banFor: duration({ min: 1_000, max: 365 * 86_400_000 }).optional().describe('For ban: how long the address is banned. Default 10m.'),
      maxDelay: duration({ min: 1, max: 60_000 }).optional().describe('For delay: the longest pause before one packet is read on. Default 1s.'),
    }),
  ]);
}

const publishBudget = (what: string) =>
  z
    .strictObject({
      messages: spec('count', ['drop', 'delay', 'disconnect', 'ban'], 'PUBLISH packets').optional().describe(`PUBLISH packets ${what}.`),
      bytes: spec('bytes', ['drop', 'delay', 'disconnect', 'ban'], 'PUBLISH payload').optional().describe(`PUBLISH payload bytes ${what}.`),
    })
    .optional();

const connSpec = (what: string) => spec('count', ['refuse', 'ban'], 'new connections').optional().describe(what);
const cap = (what: string) => z.union([z.literal(false), integerRange(1, 10_000_000)]).optional().describe(what);

const schema = z.strictObject({
  enabled: z.boolean().optional().describe('false turns every rate limit off (the tier defaults too). Default true.'),
  store: z
    .union([
      z.literal('memory'),
      z.strictObject({
        redis: z
          .strictObject({
            url: z.string().min(1).describe('redis:// or rediss:// URL; put a password in `${env:NAME}`.'),
            keyPrefix: z.string().optional().describe('Prefix of the keys (default `bastion:rl:`); brokers sharing budgets use the same prefix.'),
          })
          .describe('A Redis server shared by several broker processes.'),
      }),
    ])
    .optional()
    .describe('Where shared budgets (new connections, per-user budgets) are counted: `memory` (this process, the default) or `{ redis: { url } }` so that several broker processes share one budget.'),
  connections: z
    .strictObject({
      perIp: connSpec('New connections from one remote address. Tier 1: 200 per 10s, tier 2: 100 per 10s, tier 3: 50 per 10s (refuse), tier 4: 30 per 10s, ban for 10m after 5 strikes.'),
      perListener: z.record(z.string().min(1), spec('count', ['refuse', 'ban'], 'new connections')).optional().describe('New connections per listener, by listener name. No default.'),
      total: connSpec('New connections over the whole broker (or every broker sharing the store). No default.'),
    })
    .optional()
    .describe('Rates of new connections, checked once the transport is up and before CONNECT is read.'),
  concurrent: z
    .strictObject({
      perIp: cap('Open connections from one remote address, counted from TCP accept (before TLS). Tier 1: 1000, tier 2: 500, tier 3: 200, tier 4: 100.'),
      perListener: z.record(z.string().min(1), integerRange(1, 10_000_000)).optional().describe('Open connections per listener, by listener name. No default.'),
      total: cap('Open connections in total. Tier 1–2: 50000, tier 3–4: 20000.'),
      authPerIp: cap('CONNECTs with a username from one address whose authentication is still running (each password check costs a scrypt); beyond it a CONNECT is refused at once with CONNACK 3, so a guesser cannot queue password checks. Tier 1: 32, tier 2: 24, tier 3: 16, tier 4: 8.'),
    })
    .optional()
    .describe('Caps on connections open at once; beyond a cap the socket is closed at accept.'),
  publish: z
    .strictObject({
      perClient: publishBudget('per connection (checked on every PUBLISH, in process, no allocation). Tier 1: 5000/s and 32MiB/s, tier 2: 2000/s and 16MiB/s, tier 3–4: 1000/s and 8MiB/s, burst twice that; consequence delay (back-pressure)').describe('Per connection.'),
      perUser: publishBudget('per authenticated user, over all its connections (and processes, with a shared store). No default').describe('Per authenticated user.'),
      perListener: z.record(z.string().min(1), publishBudget('per listener').unwrap()).optional().describe('Per listener, by listener name. No default.'),
      total: publishBudget('over the whole broker process. No default').describe('Over the broker process.'),
    })
    .optional()
    .describe('PUBLISH budgets.'),
  subscribe: z
    .strictObject({
      perClient: spec('count', ['refuse', 'delay', 'disconnect', 'ban'], 'SUBSCRIBE topic filters').optional().describe('Topic filters subscribed per connection. Tier 1: 200/s, tier 2: 100/s, tier 3–4: 50/s, burst 5× that; refused (SUBACK 0x80), tier 4: disconnect after 10 strikes.'),
      perUser: spec('count', ['refuse', 'delay', 'disconnect', 'ban'], 'SUBSCRIBE topic filters').optional().describe('Topic filters subscribed per authenticated user, over all its connections. No default.'),
    })
    .optional()
    .describe('SUBSCRIBE budgets.'),
  authFailures: z
    .strictObject({
      perIp: spec('count', ['refuse', 'ban'], 'failed authentications').optional().describe('Failed authentications from one remote address (password guessing). Password checks still running count against it: while failures plus checks in flight fill it, a CONNECT with a username is refused with CONNACK 3 before any check. Once the failures alone fill it, the address is refused at TCP accept until the window ends (refuse), or banned for `banFor` at once (ban). Tier 1: 30 per 1m, tier 2: 20 per 1m, tier 3: 10 per 1m, tier 4: 5 per 1m then a 10m ban.'),
    })
    .optional()
    .describe('Budgets of failed authentications, counted in the shared store.'),
  tarpit: z
    .union([
      z.literal(false),
      z.strictObject({
        hold: duration({ min: 1, max: 60_000 }).describe('How long a refused socket is held open, unread, before it is closed.'),
        max: integerRange(1, 1_000_000).optional().describe('Most refused sockets held at once; beyond it they are closed at once. Default 1000.'),
        maxHold: duration({ min: 1, max: 600_000 })
          .optional()
          .describe('Longest hold for an address refused again and again: each refusal within this time of the address\'s previous one doubles its hold, from `hold` up to this; an address not refused for this long starts again at `hold`. Equal to `hold`: no escalation. Default 16 × hold, at most 1m (tier 1–2: 16s, tier 3: 32s, tier 4: 1m).'),
      }),
    ])
    .optional()
    .describe('Sockets refused at TCP accept (open-connection caps, addresses over their connection or login budget) are held open, unread, for the hold (±50% at random) before they are closed, so a flooder that reconnects at once is slowed to one attempt per hold per socket, and an address refused again and again has its hold doubled up to `maxHold`. On every listener type: a refused socket never reaches the TLS handshake or the HTTP upgrade. false = off. Tier 1–2: 1s, tier 3: 2s, tier 4: 5s.'),
});

type Parsed = z.output<typeof schema>;
type SpecInput = Exclude<z.output<ReturnType<typeof spec>>, false>;
type Partial4 = Partial<Omit<RateSpec, 'burst'>> & { rate: number; burst?: number };

const S = 1_000;
const M = 60_000;

/** The longest escalated tarpit hold when none is given: 16 × the hold, at most a minute. */
const defaultMaxHold = (hold: number): number => Math.max(hold, Math.min(16 * hold, M));
/** Defaults per tier (index 0 = tier 1). */
const TIER_DEFAULTS: ReadonlyArray<{
  perIp: Partial4;
  concurrentPerIp: number;
  concurrentTotal: number;
  messages: Partial4;
  bytes: Partial4;
  subscribe: Partial4;
  authFailures?: Partial4;
  tarpit?: number;
  authPerIp?: number;
}> = [
  // tier 1–2: a password-guessing safety net too — every wrong password costs a scrypt (~40 ms of
  // CPU), so an address that keeps guessing would otherwise hold the broker's CPU
  { tarpit: 1 * S, authPerIp: 32, perIp: { rate: 200, per: 10 * S }, concurrentPerIp: 1000, concurrentTotal: 50_000, messages: { rate: 5000, burst: 10_000 }, bytes: { rate: 32 * 2 ** 20, burst: 64 * 2 ** 20 }, subscribe: { rate: 200, burst: 1000 }, authFailures: { rate: 30, per: M } },
  { tarpit: 1 * S, authPerIp: 24, perIp: { rate: 100, per: 10 * S }, concurrentPerIp: 500, concurrentTotal: 50_000, messages: { rate: 2000, burst: 4000 }, bytes: { rate: 16 * 2 ** 20, burst: 32 * 2 ** 20 }, subscribe: { rate: 100, burst: 500 }, authFailures: { rate: 20, per: M } },
  { tarpit: 2 * S, authPerIp: 16, perIp: { rate: 50, per: 10 * S }, concurrentPerIp: 200, concurrentTotal: 20_000, messages: { rate: 1000, burst: 2000 }, bytes: { rate: 8 * 2 ** 20, burst: 16 * 2 ** 20 }, subscribe: { rate: 50, burst: 250 }, authFailures: { rate: 10, per: M } },
  {
    tarpit: 5 * S,
    authPerIp: 8,
    perIp: { rate: 30, per: 10 * S, consequence: 'ban', strikes: 5, banFor: 10 * M },
    concurrentPerIp: 100,
    concurrentTotal: 20_000,
    messages: { rate: 1000, burst: 2000 },
    bytes: { rate: 8 * 2 ** 20, burst: 16 * 2 ** 20 },
    subscribe: { rate: 50, burst: 250, consequence: 'disconnect', strikes: 10 },
    authFailures: { rate: 5, per: M, consequence: 'ban', banFor: 10 * M },
  },
];

function full(s: SpecInput | Partial4, soft: RateConsequence): RateSpec {
  return {
    rate: s.rate,
    per: s.per ?? S,
    burst: s.burst ?? s.rate,
    consequence: s.consequence ?? soft,
    strikes: s.strikes ?? 3,
    banFor: s.banFor ?? 10 * M,
    maxDelay: s.maxDelay ?? S,
  };
}

export const rateLimitsSection = defineSection({
  key: 'rateLimits',
  schema: schema.describe('Rate limits (PR.SS-5) and connection caps; see docs/limits.md.'),
  resolve(parsed: Parsed | undefined, ctx): RateLimitSettings | undefined {
    if (parsed?.enabled === false) return undefined;
    const tier: Tier = ctx.tierFor('PR.SS');
    const d = TIER_DEFAULTS[tier - 1] as (typeof TIER_DEFAULTS)[number];

    /** A limit: the user's (or off with `false`), else the tier default. `shared` limits live in the store: whole seconds, no burst. */
    const pick = (given: SpecInput | false | undefined, fallback: Partial4 | undefined, soft: RateConsequence, at: Array<string>, shared = false): RateSpec | undefined => {
      if (given === false) return undefined;
      if (given === undefined) return fallback && full(fallback, soft);
      const s = full(given, soft);
      if (shared) {
        if (given.burst !== undefined) ctx.issue([...at, 'burst'], 'burst applies to per-client, per-listener and total limits; a shared budget is `rate` per `per`');
        if (s.per % S !== 0) ctx.issue([...at, 'per'], `a shared budget counts whole seconds, got ${s.per} ms`);
      }
      return s;
    };
    const budget = (b: z.output<ReturnType<typeof publishBudget>> | undefined, fallback: { messages?: Partial4; bytes?: Partial4 }, at: string[], shared = false): PublishBudget => {
      const out: PublishBudget = {};
      const m = pick(b?.messages, fallback.messages, 'delay', [...at, 'messages'], shared);
      const y = pick(b?.bytes, fallback.bytes, 'delay', [...at, 'bytes'], shared);
      if (m) out.messages = m;
      if (y) out.bytes = y;
      return out;
    };
    const capOf = (v: number | false | undefined, fallback: number | undefined): number | undefined => (v === false ? undefined : (v ?? fallback));

    const store: RateStore =
      parsed?.store === undefined || parsed.store === 'memory' ? { type: 'memory' } : { type: 'redis', url: parsed.store.redis.url, keyPrefix: parsed.store.redis.keyPrefix ?? 'bastion:rl:' };
    const c = parsed?.connections;
    const perListener: Record<string, RateSpec> = {};
    for (const [name, s] of Object.entries(c?.perListener ?? {})) {
      const r = pick(s, undefined, 'refuse', ['connections', 'perListener', name], true);
      if (r) perListener[name] = r;
    }
    const connections: RateLimitSettings['connections'] = { perListener };
    const perIp = pick(c?.perIp, d.perIp, 'refuse', ['connections', 'perIp'], true);
    if (perIp) connections.perIp = perIp;
    const total = pick(c?.total, undefined, 'refuse', ['connections', 'total'], true);
    if (total) connections.total = total;

    const k = parsed?.concurrent;
    const concurrent: RateLimitSettings['concurrent'] = { perListener: { ...k?.perListener } };
    const cPerIp = capOf(k?.perIp, d.concurrentPerIp);
    if (cPerIp !== undefined) concurrent.perIp = cPerIp;
    const cTotal = capOf(k?.total, d.concurrentTotal);
    if (cTotal !== undefined) concurrent.total = cTotal;
    const cAuth = capOf(k?.authPerIp, d.authPerIp);
    if (cAuth !== undefined) concurrent.authPerIp = cAuth;

    const p = parsed?.publish;
    const publishPerListener: Record<string, PublishBudget> = {};
    for (const [name, b] of Object.entries(p?.perListener ?? {})) publishPerListener[name] = budget(b, {}, ['publish', 'perListener', name]);
    const publish: RateLimitSettings['publish'] = {
      perClient: budget(p?.perClient, { messages: d.messages, bytes: d.bytes }, ['publish', 'perClient']),
      perUser: budget(p?.perUser, {}, ['publish', 'perUser'], true),
      perListener: publishPerListener,
      total: budget(p?.total, {}, ['publish', 'total']),
    };

    const sb = parsed?.subscribe;
    const subscribe: RateLimitSettings['subscribe'] = {};
    const sc = pick(sb?.perClient, d.subscribe, 'refuse', ['subscribe', 'perClient']);
    if (sc) subscribe.perClient = sc;
    const su = pick(sb?.perUser, undefined, 'refuse', ['subscribe', 'perUser'], true);
    if (su) subscribe.perUser = su;

    const authFailures: RateLimitSettings['authFailures'] = {};
    const af = pick(parsed?.authFailures?.perIp, d.authFailures, 'refuse', ['authFailures', 'perIp'], true);
    if (af) authFailures.perIp = af;

    const t = parsed?.tarpit;
    if (t && t.maxHold !== undefined && t.maxHold < t.hold) ctx.issue(['tarpit', 'maxHold'], `shorter than tarpit.hold (${t.hold} ms)`);
    const tarpit =
      t === false ? undefined : t !== undefined ? { hold: t.hold, max: t.max ?? 1000, maxHold: t.maxHold ?? defaultMaxHold(t.hold) } : d.tarpit !== undefined ? { hold: d.tarpit, max: 1000, maxHold: defaultMaxHold(d.tarpit) } : undefined;

    return { store, connections, concurrent, publish, subscribe, authFailures, ...(tarpit === undefined ? {} : { tarpit }) };
  },
});
