/** `accessLists`: allow and deny lists of addresses (CIDR) and client ids (PR.SS-4). */
import { z } from 'zod';
import { defineSection } from './section.js';

const list = (what: string) =>
  z
    .strictObject({
      allow: z.array(z.string().min(1)).optional().describe(`${what} allowed; when non-empty, only these pass.`),
      deny: z.array(z.string().min(1)).optional().describe(`${what} refused; deny wins over allow.`),
    })
    .optional();

export interface AccessListSettings {
  addresses: { allow: string[]; deny: string[] };
  clientIds: { allow: string[]; deny: string[] };
}

export const accessListsSection = defineSection({
  key: 'accessLists',
  schema: z
    .strictObject({
      addresses: list('IP addresses or CIDR ranges (IPv4 and IPv6)').describe('Checked when a connection opens, before CONNECT is read.'),
      clientIds: list('Client ids, exact or glob (* and ?)').describe('Checked at CONNECT.'),
    })
    .describe('Static access lists (PR.SS-4). Timed bans are the `bans` section and the admin API.'),
  resolve(parsed): AccessListSettings | undefined {
    if (parsed === undefined) return undefined;
    return {
      addresses: { allow: parsed.addresses?.allow ?? [], deny: parsed.addresses?.deny ?? [] },
      clientIds: { allow: parsed.clientIds?.allow ?? [], deny: parsed.clientIds?.deny ?? [] },
    };
  },
  tiers: {
    category: 'PR.SS',
    controls: ['PR.SS-4'],
    example: { addresses: { allow: ['10.0.0.0/8'] } },
    summary: (v, control) =>
      v === undefined
        ? control === undefined
          ? 'off unless configured'
          : ''
        : `addresses: ${v.addresses.allow.length} allowed, ${v.addresses.deny.length} denied; client ids: ${v.clientIds.allow.length} allowed, ${v.clientIds.deny.length} denied`,
  },
});
