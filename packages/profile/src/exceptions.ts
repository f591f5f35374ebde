/**
 * `exceptions`: recorded, reasoned, approved waivers of a tier floor. A setting weaker than the floor
 * of its tier is a profile error; an exception naming that floor's subcategory and the key turns it
 * into an accepted risk that `bastion profile assess` lists. An exception covers its key and
 * everything below it (`listeners[0]` covers `listeners[0].tls.clientCertificate`), only for the
 * subcategory it names, and only until it expires. At tier 4 (Adaptive) of the subcategory's
 * category an exception must say when it expires: risk acceptance there is revisited, not forever.
 */
import { z } from 'zod';
import { show } from './messages.js';
import { defineSection } from './sections/section.js';

const SUBCATEGORY = /^[A-Z]{2}\.[A-Z]{2}-[0-9]+$/;

const exceptionSchema = z.strictObject({
  control: z
    .string()
    .regex(SUBCATEGORY, { error: (iss) => `expected a CSF subcategory id like PR.AC-1, got ${show(iss.input)}` })
    .describe('The CSF subcategory whose floor is waived, e.g. PR.AC-1 (docs/tiers.md lists every floor with its subcategory).'),
  key: z
    .string()
    .min(1)
    .describe('The profile key the waiver covers, written as errors print it: `listeners[0]`, `authentication.anonymous`, `acl.defaultEffect`. It covers that key and everything below it.'),
  reason: z.string().min(10, { error: 'give the reason in a sentence (10 characters or more)' }).describe('Why the weaker setting is accepted: the compensating control, the constraint. Shown by `bastion profile assess`.'),
  approvedBy: z.string().min(1).describe('Who accepted the risk (a person or role).'),
  expires: z.iso
    .date({ error: (iss) => `expected a date like 2027-01-01, got ${show(iss.input)}` })
    .optional()
    .describe('The first day the exception no longer applies (YYYY-MM-DD); from then on the floor is enforced again. Required at tier 4 of the subcategory\'s category.'),
});

export interface ProfileException {
  control: string;
  key: string;
  reason: string;
  approvedBy: string;
  /** YYYY-MM-DD: the first day it no longer applies. */
  expires?: string;
}

/**
 * A key path as errors print it and exceptions name it: `listeners[0].tls.ca`, `tiers["PR.AC"]`;
 * `(root)` for the empty path.
 */
export function formatPath(path: ReadonlyArray<string | number>): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out === '' ? '(root)' : out;
}

/** Today as YYYY-MM-DD (UTC). */
export function today(now: Date = new Date()): string {
  return now.toISOString().slice(0, 10);
}

export function isExpired(e: ProfileException, now: Date = new Date()): boolean {
  return e.expires !== undefined && e.expires <= today(now);
}

/** Does `exception` cover the key path `path` (as formatPath prints it) for `control`? */
export function covers(e: ProfileException, control: string, path: string): boolean {
  if (e.control !== control) return false;
  if (path === e.key) return true;
  if (!path.startsWith(e.key)) return false;
  const next = path[e.key.length];
  return next === '.' || next === '[';
}

export const exceptionsSection = defineSection({
  key: 'exceptions',
  schema: z
    .array(exceptionSchema)
    .describe('Waivers of tier floors: a setting below the floor of its tier loads only when an exception names the floor\'s subcategory and the key, with a reason and who approved it. See docs/tiers.md.'),
  resolve(parsed, ctx): ProfileException[] {
    return (parsed ?? []).map((e, i) => {
      if (e.expires === undefined && ctx.tierFor(e.control) >= 4) {
        ctx.issue([i, 'expires'], `at tier 4 (Adaptive) of ${e.control.slice(0, 5)} an exception must say when it expires`);
      }
      return { control: e.control, key: e.key, reason: e.reason, approvedBy: e.approvedBy, ...(e.expires === undefined ? {} : { expires: e.expires }) };
    });
  },
});
