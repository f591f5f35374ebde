/**
 * `protocol` (PR.SS-1): limits that hold the MQTT specification under attack — topic length and
 * levels, UTF-8 validity, client-id rules, subscriptions per client, QoS 1/2 queues and in-flight
 * windows, slow consumers. Defaults tighten with the tier of PR.SS.
 */
import { z } from 'zod';
import { duration, integerRange, size } from '../primitives.js';
import type { Tier } from '../types.js';
import { defineSection } from './section.js';

export interface ProtocolSettings {
  /** UTF-8 bytes. */
  maxTopicLength: number;
  maxTopicLevels: number;
  /** Refuse C0/C1 control characters in topics ([MQTT-1.5.3-2] SHOULD NOT); U+0000 and invalid UTF-8 are always refused. */
  refuseControlCharacters: boolean;
  maxSubscriptionsPerClient: number;
  /** QoS 1/2 messages kept per client with a persistent session (offline queue, and unacknowledged while online). */
  maxQueuedPerClient: number;
  /** Inbound QoS 2 messages awaiting PUBREL per client. */
  maxInflightInbound: number;
  clientId: {
    /** Characters. */
    maxLength: number;
    /** A regular expression the whole client id must match; undefined = any printable id. */
    pattern?: string;
  };
  slowConsumer: {
    /** Bytes waiting to be written to one client before it is disconnected; 0 = no cap. */
    maxBacklog: number;
    dropQoS0: boolean;
    /** Milliseconds a client's socket may stay full before it is disconnected (Aedes drainTimeout). */
    drainTimeout: number;
  };
}

const MiB = 2 ** 20;
/** [tier 1, 2, 3, 4] */
const TIER_DEFAULTS: ReadonlyArray<ProtocolSettings> = [
  { maxTopicLength: 4096, maxTopicLevels: 64, refuseControlCharacters: true, maxSubscriptionsPerClient: 1000, maxQueuedPerClient: 10_000, maxInflightInbound: 1000, clientId: { maxLength: 256 }, slowConsumer: { maxBacklog: 8 * MiB, dropQoS0: true, drainTimeout: 60_000 } },
  { maxTopicLength: 2048, maxTopicLevels: 32, refuseControlCharacters: true, maxSubscriptionsPerClient: 500, maxQueuedPerClient: 5000, maxInflightInbound: 500, clientId: { maxLength: 128 }, slowConsumer: { maxBacklog: 4 * MiB, dropQoS0: true, drainTimeout: 30_000 } },
  { maxTopicLength: 1024, maxTopicLevels: 16, refuseControlCharacters: true, maxSubscriptionsPerClient: 100, maxQueuedPerClient: 1000, maxInflightInbound: 100, clientId: { maxLength: 64 }, slowConsumer: { maxBacklog: 1 * MiB, dropQoS0: true, drainTimeout: 10_000 } },
  { maxTopicLength: 512, maxTopicLevels: 16, refuseControlCharacters: true, maxSubscriptionsPerClient: 50, maxQueuedPerClient: 500, maxInflightInbound: 50, clientId: { maxLength: 64 }, slowConsumer: { maxBacklog: 1 * MiB, dropQoS0: true, drainTimeout: 5_000 } },
];

const schema = z.strictObject({
  enabled: z.boolean().optional().describe('false turns every protocol limit here off (the tier defaults too), leaving only what Aedes itself enforces: for measurement and diagnosis, not for deployments. Default true.'),
  maxTopicLength: integerRange(1, 65535).optional().describe('Longest topic name or filter, in UTF-8 bytes. Tier 1: 4096, tier 2: 2048, tier 3: 1024, tier 4: 512.'),
  maxTopicLevels: integerRange(1, 100).optional().describe('Most levels (parts between `/`) in a topic name or filter. Tier 1: 64, tier 2: 32, tier 3–4: 16.'),
  refuseControlCharacters: z.boolean().optional().describe('Refuse topics containing control characters U+0001–U+001F and U+007F–U+009F (the specification says they SHOULD NOT be used). U+0000 and invalid UTF-8 are always refused. Default true.'),
  maxSubscriptionsPerClient: integerRange(1, 1_000_000).optional().describe('Most subscriptions one client holds; a SUBSCRIBE beyond it gets SUBACK 0x80 for that filter. Tier 1: 1000, tier 2: 500, tier 3: 100, tier 4: 50.'),
  maxQueuedPerClient: integerRange(1, 10_000_000).optional().describe('Most QoS 1/2 messages kept for one client with a persistent session (queued while offline, or sent and not yet acknowledged); beyond it new messages for that client are dropped. Tier 1: 10000, tier 2: 5000, tier 3: 1000, tier 4: 500.'),
  maxInflightInbound: integerRange(1, 65535).optional().describe('Most QoS 2 messages from one client awaiting PUBREL; a client exceeding it is disconnected. Tier 1: 1000, tier 2: 500, tier 3: 100, tier 4: 50.'),
  clientId: z
    .strictObject({
      maxLength: integerRange(1, 65535).optional().describe('Longest client id, in characters. Tier 1: 256, tier 2: 128, tier 3–4: 64. Control characters are always refused.'),
      pattern: z.string().min(1).optional().describe('A regular expression (JavaScript syntax) the whole client id must match, e.g. `^[a-z0-9-]+$`. CONNACK 2 otherwise. An empty client id (the broker assigns one) is not checked.'),
    })
    .optional()
    .describe('Client-id rules, checked at CONNECT (CONNACK 2 when broken).'),
  slowConsumer: z
    .strictObject({
      maxBacklog: z.union([z.literal(false), size({ min: 1024 })]).optional().describe('Bytes waiting in the broker to be written to one client at which it is disconnected (reason slow-consumer). false = no cap. Tier 1: 8MiB, tier 2: 4MiB, tier 3–4: 1MiB.'),
      dropQoS0: z.boolean().optional().describe('Drop QoS 0 messages for a client whose socket is full instead of making the publisher wait for it. Default true.'),
      drainTimeout: duration({ min: 100, max: 3_600_000 }).optional().describe('How long a client\'s socket may stay full before the client is disconnected. Tier 1: 60s, tier 2: 30s, tier 3: 10s, tier 4: 5s.'),
    })
    .optional()
    .describe('Subscribers that do not read: disconnected, never allowed to grow the broker\'s memory or hold publishers.'),
});

export const protocolSection = defineSection({
  key: 'protocol',
  schema: schema.describe('Protocol limits (PR.SS-1); see docs/limits.md.'),
  resolve(parsed: z.output<typeof schema> | undefined, ctx): ProtocolSettings | undefined {
    if (parsed?.enabled === false) return undefined;
    const tier: Tier = ctx.tierFor('PR.SS');
    const d = TIER_DEFAULTS[tier - 1] as ProtocolSettings;
    const pattern = parsed?.clientId?.pattern;
    if (pattern !== undefined) {
      try {
        new RegExp(pattern, 'u');
      } catch (err) {
        ctx.issue(['clientId', 'pattern'], `not a valid regular expression: ${(err as Error).message}`);
      }
    }
    const sc = parsed?.slowConsumer;
    return {
      maxTopicLength: parsed?.maxTopicLength ?? d.maxTopicLength,
      maxTopicLevels: parsed?.maxTopicLevels ?? d.maxTopicLevels,
      refuseControlCharacters: parsed?.refuseControlCharacters ?? d.refuseControlCharacters,
      maxSubscriptionsPerClient: parsed?.maxSubscriptionsPerClient ?? d.maxSubscriptionsPerClient,
      maxQueuedPerClient: parsed?.maxQueuedPerClient ?? d.maxQueuedPerClient,
      maxInflightInbound: parsed?.maxInflightInbound ?? d.maxInflightInbound,
      clientId: { maxLength: parsed?.clientId?.maxLength ?? d.clientId.maxLength, ...(pattern === undefined ? {} : { pattern }) },
      slowConsumer: {
        maxBacklog: sc?.maxBacklog === false ? 0 : (sc?.maxBacklog ?? d.slowConsumer.maxBacklog),
        dropQoS0: sc?.dropQoS0 ?? d.slowConsumer.dropQoS0,
        drainTimeout: sc?.drainTimeout ?? d.slowConsumer.drainTimeout,
      },
    };
  },
});
