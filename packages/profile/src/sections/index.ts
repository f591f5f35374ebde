/**
 * The registry of control sections. To add one: write `sections/<name>.ts` exporting a
 * `defineSection({ key, schema, resolve, tiers })` and add it to this object (key = the profile key).
 * `tiers` declares the section's tier presets and floors: see section.ts and docs/tiers.md.
 */
import type { z } from 'zod';
import type { Section } from './section.js';
import { rateLimitsSection } from './rate-limits.js';
import { disconnectSection } from './disconnect.js';
import { protocolSection } from './protocol.js';
import { revocationSection } from './revocation.js';
import { certificatesSection } from './certificates.js';
import { adminSection } from './admin.js';
import { persistenceSection } from './persistence.js';
import { aclSection } from './acl.js';
import { accessListsSection } from './access-lists.js';
import { bansSection } from './bans.js';
import { detectorsSection } from './detectors.js';
import { responsesSection } from './responses.js';
import { auditSection } from './audit.js';
import { metricsSection } from './metrics.js';
import { attestationsSection } from './attestations.js';
import { exceptionsSection } from '../exceptions.js';

export const sections = {
  revocation: revocationSection,
  certificates: certificatesSection,
  admin: adminSection,
  persistence: persistenceSection,
  acl: aclSection,
  accessLists: accessListsSection,
  bans: bansSection,
  detectors: detectorsSection,
  responses: responsesSection,
  audit: auditSection,
  metrics: metricsSection,
  rateLimits: rateLimitsSection,
  disconnect: disconnectSection,
  protocol: protocolSection,
  // about the profile itself (no control): waivers of tier floors, and evidence assess lists
  exceptions: exceptionsSection,
  attestations: attestationsSection,
} satisfies Record<string, Section<z.ZodType, unknown>>;

type Sections = typeof sections;

/** The zod shape the sections add to the profile schema (all optional: absent = tier defaults). */
export type SectionShape = { [K in keyof Sections]: z.ZodOptional<Sections[K]['schema']> };

/** What the sections add to the resolved Profile. */
export type SectionsOutput = { [K in keyof Sections]: ReturnType<Sections[K]['resolve']> };
