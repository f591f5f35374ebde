/** `bans`: timed or permanent bans by address, client id or username (PR.SS-4, RS.RP-3). */
import { z } from 'zod';
import { duration } from '../primitives.js';
import { defineSection } from './section.js';

export interface BanInput {
  ip?: string;
  clientId?: string;
  username?: string;
  /** Milliseconds; absent = permanent. */
  duration?: number;
  reason?: string;
}

export interface BanSettings {
  maxBans: number;
  initial: BanInput[];
}

export const bansSection = defineSection({
  key: 'bans',
  schema: z
    .strictObject({
      maxBans: z.number().int().min(1).max(10_000_000).optional().describe('Most bans kept in memory (default 100000); when full the oldest temporary ban is evicted.'),
      initial: z
        .array(
          z.strictObject({
            ip: z.string().min(1).optional().describe('Address or CIDR range.'),
            clientId: z.string().min(1).optional().describe('Client id, exact.'),
            username: z.string().min(1).optional().describe('Username, exact.'),
            duration: duration({ min: 1 }).optional().describe('How long, from broker start (e.g. 24h); omitted = permanent.'),
            reason: z.string().optional().describe('Why, for events and the admin API.'),
          }),
        )
        .optional()
        .describe('Bans in force from the start; every field given must match.'),
    })
    .describe('Bans: always available to the admin API and to response policies; this section sets their limits and any bans from the start.'),
  resolve(parsed, ctx): BanSettings {
    const initial = (parsed?.initial ?? []).map((b, i) => {
      if (b.ip === undefined && b.clientId === undefined && b.username === undefined) ctx.issue(['initial', i], 'a ban needs at least one of ip, clientId, username');
      return b as BanInput;
    });
    return { maxBans: parsed?.maxBans ?? 100_000, initial };
  },
  tiers: {
    category: 'PR.SS',
    controls: ['PR.SS-4', 'RS.RP-3'],
    summary: (v) => `on: up to ${v.maxBans} bans${v.initial.length > 0 ? `, ${v.initial.length} from the start` : ''}`,
  },
});
