/**
 * `persistence` (PR.SS-6, RC.RP-1, RC.RP-7, RC.RP-8): where sessions, queues, retained messages and
 * wills live (memory or Redis), whether brokers on one Redis form a cluster, and the keys that seal
 * what is stored. Resolves to the config `@bastion/persistence`'s `openStore` takes.
 */
import { z } from 'zod';
import { duration, pathOrPaths, pathString } from '../primitives.js';
import { defineSection } from './section.js';

export const PERSISTENCE_STORES = ['memory', 'redis'] as const;
export const DEFAULT_REDIS_PREFIX = 'bastion:';

const keySchema = z.union(
  [
    z.strictObject({
      file: pathString().describe('A key file: 32 random bytes (or them as 64 hex characters or base64). Make one with `bastion keys generate FILE`; keep it mode 0600.'),
    }),
    z.strictObject({
      value: z
        .string()
        .min(1)
        .describe('The key as 64 hex characters or base64, always given as `${env:NAME}` — never write a key itself in the profile.'),
    }),
  ],
  { error: () => 'expected { file: PATH } or { value: "${env:NAME}" }' },
);

const redisSchema = z.strictObject({
  url: z
    .string()
    .min(1)
    .describe('The Redis server: redis://host:port/db, or rediss://host:port/db for TLS. Give a password with `password`, not in the URL.'),
  username: z.string().min(1).optional().describe('Redis ACL user name (Redis 6+).'),
  password: z.string().min(1).optional().describe('Redis password, always as `${env:NAME}`.'),
  prefix: z
    .string()
    .default(DEFAULT_REDIS_PREFIX)
    .describe('Prefix of every key and pub/sub channel Bastion uses, so several deployments can share one Redis. Brokers of one cluster use the same prefix.'),
  tls: z
    .strictObject({
      ca: pathOrPaths().optional().describe("CA certificate(s) the Redis server's certificate must chain to (PEM). When omitted, the system CAs."),
      cert: pathString().optional().describe('Client certificate (PEM), when Redis asks for one.'),
      key: pathString().optional().describe('Private key of the client certificate (PEM).'),
      servername: z.string().min(1).optional().describe("Name the server certificate must carry (default: the URL's host)."),
    })
    .optional()
    .describe('TLS to Redis (also turned on by a rediss:// URL). The server certificate is always verified.'),
  connectTimeout: duration({ min: 100, max: 300_000 })
    .prefault('10s')
    .describe('How long the broker waits for Redis when it starts before failing. Once running, a lost Redis is retried for ever.'),
});

const schema = z
  .strictObject({
    store: z
      .enum(PERSISTENCE_STORES)
      .default('memory')
      .describe('memory: kept in the broker process, lost when it stops. redis: kept in Redis, survives restarts and can be shared by a cluster.'),
    redis: redisSchema.optional().describe('The Redis server (store: redis).'),
    cluster: z
      .boolean()
      .default(false)
      .describe('Brokers on the same Redis and prefix act as one: messages, retained messages and queues reach clients on any node, a client id connecting on one node closes its session on another, and controls share state (bans …) over a sealed channel. Needs store: redis and encryption.'),
    encryption: z
      .strictObject({
        keys: z
          .array(keySchema)
          .min(1)
          .describe('Keys, newest first: the first seals everything written, all of them open what is stored. To rotate, put a new key first, then run `bastion keys rotate`, then drop the old one.'),
      })
      .optional()
      .describe('Seal stored payloads (retained, queued, incoming QoS 2, wills) and cluster traffic with AES-256-GCM. Required for Redis at tier 3 and above (PR.SS), and for cluster.'),
  })
  .describe('Sessions, queues and retained messages: where they are kept and how they are sealed (PR.SS-6, RC.RP-1, RC.RP-8).');

export type PersistenceKeySource = { file: string } | { value: string };

export interface ResolvedPersistence {
  store: (typeof PERSISTENCE_STORES)[number];
  cluster: boolean;
  redis?: {
    url: string;
    username?: string;
    password?: string;
    prefix: string;
    tls?: { ca?: string[]; cert?: string; key?: string; servername?: string };
    /** Milliseconds. */
    connectTimeout: number;
  };
  encryption?: { keys: PersistenceKeySource[] };
}

const KEY_TEXT = /^(?:[0-9a-fA-F]{64}|[A-Za-z0-9+/_-]{43}=?)$/;
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

export const persistenceSection = defineSection({
  key: 'persistence',
  schema,
  resolve(parsed, ctx): ResolvedPersistence {
    if (parsed === undefined) return { store: 'memory', cluster: false };
    const out: ResolvedPersistence = { store: parsed.store, cluster: parsed.cluster };
    const tier = ctx.tierFor('PR.SS');

    if (parsed.store === 'redis' && parsed.redis === undefined) ctx.issue([], 'store: redis needs a redis section with the server url');
    if (parsed.store !== 'redis' && parsed.redis !== undefined) ctx.issue(['redis'], 'redis settings only apply with store: redis');
    if (parsed.cluster && parsed.store !== 'redis') ctx.issue(['cluster'], 'a cluster shares one Redis: set store: redis');
    if (parsed.cluster && parsed.encryption === undefined) ctx.issue(['cluster'], 'cluster traffic through Redis is sealed with the persistence keys: set encryption.keys');
    if (parsed.store === 'redis' && parsed.encryption === undefined && tier >= 3) {
      ctx.issue(['store'], `at tier ${tier} (PR.SS) a Redis store must be encrypted (PR.SS-6): set encryption.keys`);
    }

    const r = parsed.redis;
    if (r !== undefined && parsed.store === 'redis') {
      let url: URL | undefined;
      try {
        url = new URL(r.url);
      } catch {
        ctx.issue(['redis', 'url'], 'expected a URL like redis://127.0.0.1:6379/0 or rediss://redis.example:6380/0');
      }
      if (url && url.protocol !== 'redis:' && url.protocol !== 'rediss:') ctx.issue(['redis', 'url'], `expected redis:// or rediss://, got ${url.protocol}//`);
      if (url && url.pathname.length > 1 && !/^\/\d+$/.test(url.pathname)) ctx.issue(['redis', 'url'], `the path of a Redis URL is the database number, got ${url.pathname}`);
      if (url?.password) ctx.issue(['redis', 'url'], 'do not put the password in the URL: use redis.password with ${env:NAME}');
      const tls = url?.protocol === 'rediss:' || r.tls !== undefined;
      if (url && !tls && tier >= 3 && !LOOPBACK.has(url.hostname)) {
        ctx.issue(['redis', 'url'], `at tier ${tier} (PR.SS) Redis off this host needs TLS: use rediss:// or set redis.tls`);
      }
      if (r.tls && (r.tls.cert === undefined) !== (r.tls.key === undefined)) ctx.issue(['redis', 'tls'], 'cert and key go together');
      out.redis = {
        url: r.url,
        ...(r.username === undefined ? {} : { username: r.username }),
        ...(r.password === undefined ? {} : { password: r.password }),
        prefix: r.prefix,
        connectTimeout: r.connectTimeout,
        ...(r.tls === undefined
          ? {}
          : {
              tls: {
                ...(r.tls.ca === undefined ? {} : { ca: (Array.isArray(r.tls.ca) ? r.tls.ca : [r.tls.ca]).map(ctx.abs) }),
                ...(r.tls.cert === undefined ? {} : { cert: ctx.abs(r.tls.cert) }),
                ...(r.tls.key === undefined ? {} : { key: ctx.abs(r.tls.key) }),
                ...(r.tls.servername === undefined ? {} : { servername: r.tls.servername }),
              },
            }),
      };
    }

    if (parsed.encryption !== undefined) {
      const keys: PersistenceKeySource[] = [];
      parsed.encryption.keys.forEach((k, i) => {
        if ('file' in k) keys.push({ file: ctx.abs(k.file) });
        else if (!KEY_TEXT.test(k.value.trim())) ctx.issue(['encryption', 'keys', i, 'value'], 'expected 32 bytes as 64 hex characters or base64 (make a key with `bastion keys generate FILE`)');
        else keys.push({ value: k.value });
      });
      out.encryption = { keys };
    }
    return out;
  },
});
