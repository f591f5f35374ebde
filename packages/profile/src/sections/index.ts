/**
 * The registry of control sections. To add one: write `sections/<name>.ts` exporting a
 * `defineSection({ key, schema, resolve })` and add it to this object (key = the profile key).
 */
import type { z } from 'zod';
import type { Section } from './section.js';

export const sections = {
} satisfies Record<string, Section<z.ZodType, unknown>>;

type Sections = typeof sections;

/** The zod shape the sections add to the profile schema (all optional: absent = tier defaults). */
export type SectionShape = { [K in keyof Sections]: z.ZodOptional<Sections[K]['schema']> };

/** What the sections add to the resolved Profile. */
export type SectionsOutput = { [K in keyof Sections]: ReturnType<Sections[K]['resolve']> };
