/**
 * `audit`: the tamper-evident audit log (PR.PT-1) and publish receipts (PR.IP-4). Off unless
 * configured, at every tier (it writes files); at tier 4 (PR.PT) every batch is fsynced by default.
 */
import { z } from 'zod';
import { integerRange, pathString, size } from '../primitives.js';
import { defineSection } from './section.js';

const schema = z.strictObject({
  file: pathString().describe('The active audit file (JSON lines). Rotated files sit beside it as <file>.1, <file>.2, … (higher is newer). Created mode 0600.'),
  maxSize: size({ min: 4096, max: 64 * 1024 * 1024 * 1024 })
    .optional()
    .describe('Rotate when the active file would grow past this size. Default 64MiB. The hash chain runs on across files.'),
  maxFiles: integerRange(0, 1_000_000).optional().describe('Rotated files kept; the oldest are deleted beyond it. 0 keeps all (default).'),
  hmacKey: z
    .union(
      [
        z.strictObject({ file: pathString().describe('A file holding the key (at least 16 bytes; surrounding whitespace is ignored).') }),
        z.strictObject({ value: z.string().min(16).describe('The key, written as `${env:NAME}` (at least 16 characters).') }),
      ],
      { error: () => 'expected { file: PATH } or { value: "${env:NAME}" } (a key of at least 16 bytes)' },
    )
    .optional()
    .describe('Key of the HMAC-SHA-256 every line then carries, so that nobody without it can rewrite the log undetected: `{ file: path }` or `{ value: "${env:NAME}" }`. Never write the key itself in the profile.'),
  fsync: z.boolean().optional().describe('fsync every batch of lines. Default: true at tier 4 (PR.PT), else false.'),
  exclude: z.array(z.string().min(1)).optional().describe('Event types not written, e.g. [forward.denied] on a very busy broker. Default none.'),
  receipts: z
    .strictObject({ topics: z.array(z.string().min(1)).min(1).describe('Topic filters (+ and # allowed).') })
    .optional()
    .describe('Publish receipts (non-repudiation, PR.IP-4): for each PUBLISH to these topics a line with client id, username, certificate fingerprint, topic, payload SHA-256 and time.'),
});

type Parsed = z.output<typeof schema>;

export interface ResolvedAudit {
  /** Absolute. */
  file: string;
  maxSize: number;
  maxFiles: number;
  /** The key, or the absolute path of the file holding it. */
  hmacKey?: { value: string } | { file: string };
  fsync: boolean;
  exclude: string[];
  receipts: string[];
}

export const auditSection = defineSection({
  key: 'audit',
  schema: schema.describe('The audit log: every security event, detection, response and admin action as a hash-chained JSON line; check it with `bastion audit verify`.'),
  resolve(parsed: Parsed | undefined, ctx): ResolvedAudit | undefined {
    if (parsed === undefined) return undefined;
    const key = parsed.hmacKey;
    return {
      file: ctx.abs(parsed.file),
      maxSize: parsed.maxSize ?? 64 * 1024 * 1024,
      maxFiles: parsed.maxFiles ?? 0,
      ...(key === undefined ? {} : { hmacKey: 'file' in key ? { file: ctx.abs(key.file) } : { value: key.value } }),
      fsync: parsed.fsync ?? ctx.tierFor('PR.PT') >= 4,
      exclude: [...(parsed.exclude ?? [])],
      receipts: [...(parsed.receipts?.topics ?? [])],
    };
  },
  tiers: {
    category: 'PR.PT',
    controls: ['PR.PT-1', 'PR.IP-4'],
    example: { file: 'audit.log' },
    summary(v, control) {
      if (v === undefined) return control === undefined ? 'off unless configured (it writes files)' : '';
      if (control === 'PR.IP-4') return v.receipts.length === 0 ? '' : `publish receipts for ${v.receipts.join(', ')}`;
      return `hash-chained audit log${v.hmacKey ? ' with HMAC' : ''}, ${v.fsync ? 'fsync per batch' : 'no fsync'}${v.receipts.length > 0 ? `, receipts for ${v.receipts.length} topic filter${v.receipts.length === 1 ? '' : 's'}` : ''}`;
    },
    floors: [
      {
        control: 'PR.PT-1',
        from: 3,
        key: 'audit',
        requirement: 'configured — every security event in a hash-chained log',
        check: (v) => (v === undefined ? { path: [], message: 'no audit log' } : undefined),
      },
    ],
  },
});
