/**
 * A profile section for one control (acl, rateLimits, revocation, persistence, detectors …).
 *
 * Each control package adds its section as one file in this folder and one line in `index.ts`:
 * a zod schema (strict objects, every key `.describe()`d — it becomes the JSON Schema and the
 * reference docs) and a `resolve` that turns the parsed value into what the broker needs: paths
 * absolute, tier defaults applied for whatever the user left out, cross-field checks reported as
 * issues with their key path.
 */
import type { z } from 'zod';
import type { Tier } from '../types.js';

export type SectionPath = ReadonlyArray<string | number>;

export interface SectionContext {
  /** Resolve a path from the profile against the profile file's directory. */
  abs(path: string): string;
  /** Effective tier of a CSF category or subcategory ('PR.AC' or 'PR.AC-5'). */
  tierFor(categoryOrSubcategory: string): Tier;
  /** Report a problem at a key path below the section, e.g. issue(['rules', 3, 'topics'], 'empty'). */
  issue(path: SectionPath, message: string): void;
}

export interface Section<S extends z.ZodType, R> {
  /** Top-level key in the profile file. */
  readonly key: string;
  readonly schema: S;
  /** `parsed` is undefined when the key is absent: return the tier's defaults (or undefined for "off"). */
  resolve(parsed: z.output<S> | undefined, ctx: SectionContext): R;
}

export function defineSection<S extends z.ZodType, R>(section: Section<S, R>): Section<S, R> {
  return section;
}
