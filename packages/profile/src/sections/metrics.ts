/**
 * `metrics`: a Prometheus endpoint and the $SYS security topics. Off unless configured (it opens a
 * port); the endpoint binds to loopback unless told otherwise.
 */
import { z } from 'zod';
import { duration, integerRange } from '../primitives.js';
import { defineSection } from './section.js';

const schema = z.strictObject({
  endpoint: z
    .strictObject({
      host: z.string().min(1).optional().describe('Address to bind. Default 127.0.0.1 (local scrapers only).'),
      port: integerRange(0, 65535).describe('TCP port of the HTTP endpoint (0: any free port).'),
      path: z.string().regex(/^\//).optional().describe('HTTP path. Default /metrics.'),
      token: z.string().min(16).optional().describe('Require `Authorization: Bearer <token>`: write it as `${env:NAME}`.'),
    })
    .optional()
    .describe('The Prometheus text endpoint (GET only).'),
  process: z.boolean().optional().describe('Also export Node process metrics (CPU, memory, event loop). Default false.'),
  sysTopics: z.boolean().optional().describe('Publish detections to $SYS/bastion/security/detections, response actions to $SYS/bastion/security/actions and counters to $SYS/bastion/security/stats (readable by `sys.subscribers` only). Default true.'),
  sysInterval: duration({ min: 0, max: 86_400_000 }).optional().describe('Period of the $SYS stats snapshot; 0 turns it off. Default 10s.'),
});

type Parsed = z.output<typeof schema>;

export interface ResolvedMetrics {
  endpoint?: { host: string; port: number; path: string; token?: string };
  process: boolean;
  sysTopics: boolean;
  sysInterval: number;
}

export const metricsSection = defineSection({
  key: 'metrics',
  schema: schema.describe('Metrics: a Prometheus endpoint (connections, messages, bytes, denials by reason and control, detections, response actions, bans) and $SYS security topics.'),
  resolve(parsed: Parsed | undefined): ResolvedMetrics | undefined {
    if (parsed === undefined) return undefined;
    const e = parsed.endpoint;
    return {
      ...(e === undefined ? {} : { endpoint: { host: e.host ?? '127.0.0.1', port: e.port, path: e.path ?? '/metrics', ...(e.token === undefined ? {} : { token: e.token }) } }),
      process: parsed.process ?? false,
      sysTopics: parsed.sysTopics ?? true,
      sysInterval: parsed.sysInterval ?? 10_000,
    };
  },
  tiers: {
    category: 'DE.CM',
    controls: ['ID.AM-1', 'DE.CM-1'],
    example: { sysTopics: true },
    summary(v, control) {
      if (v === undefined) return control === undefined ? 'off unless configured' : '';
      return [v.endpoint ? `Prometheus on ${v.endpoint.host}:${v.endpoint.port}${v.endpoint.path}${v.endpoint.token ? ' (token)' : ''}` : 'no endpoint', v.sysTopics ? '$SYS security topics' : ''].filter(Boolean).join(', ');
    },
  },
});
