/**
 * `attestations`: evidence for the subcategories the broker cannot deliver itself — organization and
 * client scope (training, tamper-proof devices, contingency plans) and the people's part of the
 * broker-aids ones (inventory reviews, network maps). `bastion profile assess` lists them beside
 * what the broker enforces; a broker-scope subcategory cannot be attested, it is measured.
 */
import { z } from 'zod';
import { loadCatalog, subcategories } from '../catalog.js';
import { show } from '../messages.js';
import type { Tier } from '../types.js';
import { defineSection } from './section.js';

const attestationSchema = z.strictObject({
  id: z
    .string()
    .regex(/^[A-Z]{2}\.[A-Z]{2}-[0-9]+$/, { error: (iss) => `expected a CSF subcategory id like PR.AT-1, got ${show(iss.input)}` })
    .describe('The CSF subcategory attested, e.g. PR.AT-1 (organization, client or broker-aids scope).'),
  by: z.string().min(1).describe('Who attests (a person or role).'),
  date: z.iso.date({ error: (iss) => `expected a date like 2026-03-01, got ${show(iss.input)}` }).describe('When it was attested (YYYY-MM-DD).'),
  evidence: z
    .url({ protocol: /^https?$/, error: (iss) => `expected an http(s) URL of the evidence, got ${show(iss.input)}` })
    .describe('Where the evidence is: an http(s) URL (training records, inspection report, ticket).'),
  tier: z.literal([1, 2, 3, 4]).optional().describe("The tier the evidence supports. Default: the profile's tier for the subcategory's category."),
  expires: z.iso.date({ error: (iss) => `expected a date like 2027-03-01, got ${show(iss.input)}` }).optional().describe('The first day the attestation no longer counts (YYYY-MM-DD), e.g. when training must be repeated.'),
});

export interface Attestation {
  id: string;
  by: string;
  /** YYYY-MM-DD. */
  date: string;
  evidence: string;
  tier: Tier;
  /** YYYY-MM-DD: the first day it no longer counts. */
  expires?: string;
}

export const attestationsSection = defineSection({
  key: 'attestations',
  schema: z
    .array(attestationSchema)
    .describe('Evidence for subcategories the broker cannot deliver (organization and client scope, and the people\'s part of broker-aids ones). Listed by `bastion profile assess`. See docs/assess.md.'),
  resolve(parsed, ctx): Attestation[] {
    const catalog = new Map(subcategories(loadCatalog()).map((s) => [s.id, s]));
    const today = new Date().toISOString().slice(0, 10);
    return (parsed ?? []).map((a, i) => {
      const s = catalog.get(a.id);
      if (s === undefined) ctx.issue([i, 'id'], `${a.id} is not a subcategory of the catalog (bastion profile assess lists them)`);
      else if (s.scope === 'broker') ctx.issue([i, 'id'], `${a.id} (${s.name}) is delivered by the broker: assess measures it from the profile, it cannot be attested`);
      if (a.date > today) ctx.issue([i, 'date'], `${a.date} is in the future`);
      if (a.expires !== undefined && a.expires <= a.date) ctx.issue([i, 'expires'], 'expires must come after date');
      return { id: a.id, by: a.by, date: a.date, evidence: a.evidence, tier: a.tier ?? ctx.tierFor(a.id), ...(a.expires === undefined ? {} : { expires: a.expires }) };
    });
  },
});
