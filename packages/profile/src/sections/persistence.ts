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
    }).meta({ title: '{ file }' }),
    z.strictObject({
      value: z
        .string()
        .min(1)
        .describe('The key as 64 hex characters or base64, always given as `${env:NAME}` — never write a key itself in the profile.'),
    }).meta({ title: '{ value }' }),
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
          .describe('Keys, newest first, each `{ file: PATH }` (a key file, mode 0600, made by `bastion keys generate`) or `{ value: ${env:NAME} }` (64 hex characters or base64 from the environment). The first seals everything written; all of them open what is stored. To rotate: put a new key first, run `bastion keys rotate`, then drop the old one.'),
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

    if (parsed.store === 'redis' && parsed.redis === undefined) ctx.issue([], 'store: redis needs a redis section with the server url');
    if (parsed.store !== 'redis' && parsed.redis !== undefined) ctx.issue(['redis'], 'redis settings only apply with store: redis');
    if (parsed.cluster && parsed.store !== 'redis') ctx.issue(['cluster'], 'a cluster shares one Redis: set store: redis');
    if (parsed.cluster && parsed.encryption === undefined) ctx.issue(['cluster'], 'cluster traffic through Redis is sealed with the persistence keys: set encryption.keys');
    // From tier 3 of PR.SS a Redis store is encrypted and off-host Redis uses TLS: tier floors (see `tiers` below).

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
  tiers: {
    category: 'PR.SS',
    controls: ['PR.SS-6', 'RC.RP-1', 'RC.RP-8'],
    summary(v, control) {
      const where = v.store === 'redis' ? `Redis${v.redis ? ` ${v.redis.url.replace(/\/\/[^@/]*@/, '//')}` : ''}${v.cluster ? ', cluster' : ''}` : 'memory (lost when the broker stops)';
      const sealed = v.encryption ? `sealed with AES-256-GCM (${v.encryption.keys.length} key${v.encryption.keys.length === 1 ? '' : 's'})` : 'not encrypted';
      if (control === 'PR.SS-6') return v.store === 'memory' && !v.encryption ? 'nothing stored at rest (memory store)' : sealed;
      if (control === 'RC.RP-1' || control === 'RC.RP-8') return v.store === 'redis' ? `sessions, queues and retained messages survive a restart in ${where}` : '';
      return `${where}, ${sealed}`;
    },
    floors: [
      {
        control: 'PR.SS-6',
        from: 3,
        key: 'persistence.encryption',
        requirement: 'a Redis store must be encrypted (encryption.keys)',
        check: (v) => (v.store === 'redis' && v.encryption === undefined ? { path: ['store'], message: 'an unencrypted Redis store' } : undefined),
      },
      {
        control: 'PR.SS-6',
        from: 3,
        key: 'persistence.redis.url',
        requirement: 'Redis off this host needs TLS (rediss:// or redis.tls)',
        check(v) {
          if (v.store !== 'redis' || v.redis === undefined || v.redis.tls !== undefined) return undefined;
          let url: URL;
          try {
            url = new URL(v.redis.url);
          } catch {
            return undefined; // reported by resolve
          }
          return url.protocol === 'redis:' && !LOOPBACK.has(url.hostname) ? { path: ['redis', 'url'], message: `plain Redis on ${url.hostname}` } : undefined;
        },
      },
    ],
  },
});
