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
import type { AuthenticationSettings, Listener, Tier } from '../types.js';

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
  /**
   * The section's tier presets and floors (see `SectionTiers` and docs/tiers.md). Every control
   * section declares them: docs/tiers.md is generated from them, `bastion profile assess` reads
   * them, and a profile below a floor does not load unless it records an exception.
   */
  readonly tiers?: SectionTiers<R>;
}

/**
 * What a section declares about Implementation Tiers, in its own file, next to `resolve`:
 *
 *  - **presets** are not written twice: the table in docs/tiers.md shows, for tiers 1 to 4, what
 *    `resolve(example, ctx)` returns with `ctx.tierFor` answering that tier, through `summary`.
 *    So apply tier defaults in `resolve` (via `ctx.tierFor(category)`), and let `summary` only
 *    format a resolved value;
 *  - **floors** are the minimum each tier demands. A resolved value weaker than a floor that
 *    applies (`tierFor(floor.control) >= floor.from`) is a profile error at the key the floor
 *    names, unless the profile's `exceptions` list covers that key for that control. A floor
 *    checks values only: whether it applies is decided by `from`, so `assess` can also ask
 *    "which tier does this profile reach?".
 *
 * Adding a section: give it `tiers: { category, controls, summary, floors }`; run the drift test
 * (test/tiers.test.ts) and regenerate docs/tiers.md as it says.
 */
export interface SectionTiers<R> {
  /** The CSF category (or subcategory) whose tier `resolve` reads for its defaults, e.g. 'PR.AC'. */
  readonly category: string;
  /** The CSF subcategories this section's settings deliver, e.g. ['PR.AC-5']. */
  readonly controls: readonly string[];
  /**
   * For a section that is off when absent: the smallest input that turns it on, so the table can
   * show the defaults a tier gives once it is configured. Omit for sections on by default.
   */
  readonly example?: unknown;
  /**
   * A short line for a resolved value (`undefined` when the section is off): what is on, with the
   * values that matter. With `control`, only what serves that subcategory (assess shows it per
   * subcategory); return '' when the value does nothing for it.
   */
  summary(value: R, control?: string): string;
  readonly floors?: ReadonlyArray<Floor<R>>;
}

/** The minimum a tier demands of a section's resolved value. */
export interface Floor<R> {
  /** The CSF subcategory the floor protects: its tier decides whether the floor applies, and exceptions name it. */
  readonly control: string;
  /** The lowest tier (of `control`'s category) at which the floor applies. */
  readonly from: Tier;
  /** The key it is about, as docs/tiers.md shows it: 'acl.defaultEffect'. */
  readonly key: string;
  /** What is required, in a few words: 'deny'. */
  readonly requirement: string;
  /** Where the value falls short (paths below the section, as for `ctx.issue`), or nothing when it does not. */
  check(value: R, ctx: FloorContext): FloorViolation | readonly FloorViolation[] | undefined;
}

export interface FloorViolation {
  /** Key path below the section (`[]` for the section itself). */
  readonly path: SectionPath;
  /**
   * What falls short, as a noun phrase naming the value: 'default allow (defaultEffect: allow)',
   * 'plaintext mqtt listener "x" on 0.0.0.0'. The loader writes "at tier 3 of PR.AC, <message> is
   * below the floor of PR.AC-5 (<requirement>): …" around it.
   */
  readonly message: string;
}

/** What a floor may look at besides its own section's value (checks values only: never branch on tiers here). */
export interface FloorContext {
  readonly listeners: readonly Listener[];
  readonly authentication: AuthenticationSettings;
  /** Another section's resolved value, by profile key (narrow it yourself). */
  section(key: string): unknown;
}

export function defineSection<S extends z.ZodType, R>(section: Section<S, R>): Section<S, R> {
  return section;
}
