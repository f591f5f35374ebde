/** Request bodies of the admin API (zod, strict: an unknown field is a 400, never ignored). */
import { z } from 'zod';
import { validateUsername } from '@bastion/middleware';
import { parseDuration } from '@bastion/profile';

const username = z.string().superRefine((v, ctx) => {
  const bad = validateUsername(v);
  if (bad) ctx.addIssue({ code: 'custom', message: bad });
});

/** At least 8 characters (as `bastion passwd`); the upper bound keeps one scrypt call bounded. */
export const password = z.string().min(8, 'a password needs at least 8 characters').max(1024, 'a password is at most 1024 characters');

const group = z.string().regex(/^[^\s:,]+$/, 'a group is one word without spaces, ":" or ","');

/** A password, or `token: true` for a device token the broker generates (returned once). */
const secret = { password: password.optional(), token: z.literal(true).optional() };
const oneSecret = (b: { password?: string | undefined; token?: true | undefined }) => (b.password === undefined) !== (b.token === undefined);
const ONE_SECRET = { message: 'give either "password" or "token": true (a generated device token)', path: ['password'] };

export const newUserBody = z.strictObject({ username, groups: z.array(group).max(64).optional(), ...secret }).refine(oneSecret, ONE_SECRET);

export const passwordBody = z.strictObject(secret).refine(oneSecret, ONE_SECRET);

/** "permanent", a duration like "15m" / "24h" / "1h30m", or milliseconds. */
export const banDuration = z
  .union([z.string(), z.number()], { error: (iss) => (iss.input === undefined ? 'required: a duration like 15m or 24h, or "permanent"' : `expected a duration like 15m or 24h, or "permanent", got ${JSON.stringify(iss.input)}`) })
  .transform((v, ctx): number | undefined => {
    if (v === 'permanent') return undefined;
    let ms: number;
    try {
      ms = parseDuration(v);
    } catch {
      ctx.addIssue({ code: 'custom', message: `expected a duration like 15m or 24h, or "permanent", got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    if (ms <= 0) {
      ctx.addIssue({ code: 'custom', message: 'a ban lasts longer than 0 ms (or is "permanent")' });
      return z.NEVER;
    }
    return ms;
  });

export const banBody = z
  .strictObject({
    ip: z.string().min(1).max(64).optional(),
    clientId: z.string().min(1).max(65535).optional(),
    username: z.string().min(1).max(65535).optional(),
    duration: banDuration,
    reason: z.string().max(1000).optional(),
  })
  .refine((b) => b.ip !== undefined || b.clientId !== undefined || b.username !== undefined, { message: 'name at least one of ip, clientId, username' });

export const disconnectBody = z.strictObject({ reason: z.string().max(1000).optional() }).optional();

/** One ACL rule: its fields are checked by the ACL itself (the same rules as the rules file). */
export const aclRuleBody = z.record(z.string(), z.unknown());

/** PUT /v1/acl: `{ rules: [...] }` or the bare list. */
export const aclReplaceBody = z
  .union([z.strictObject({ rules: z.array(z.unknown()) }), z.array(z.unknown())], { error: 'expected {"rules": [...]} or a list of rules' })
  .transform((v) => (Array.isArray(v) ? v : v.rules));

/** POST /v1/responses/block-topic */
export const blockTopicBody = z.strictObject({
  topic: z.string().min(1).max(65535),
  duration: banDuration.optional(),
  reason: z.string().max(1000).optional(),
});

/** POST /v1/responses/lockdown */
export const lockdownBody = z
  .strictObject({
    duration: banDuration.optional(),
    reason: z.string().max(1000).optional(),
    disconnectOthers: z.boolean().optional(),
  })
  .optional();

/** POST /v1/responses/revoke and /shutdown */
export const revokeBody = z.strictObject({ username: z.string().min(1).max(65535), reason: z.string().max(1000).optional() });
export const shutdownBody = z.strictObject({ reason: z.string().max(1000).optional(), confirm: z.literal(true, { error: 'shutting the broker down needs "confirm": true' }) });
