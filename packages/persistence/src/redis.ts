/**
 * Redis connections for the store, the cluster traffic and the state channel (ioredis).
 *
 * A Redis that goes away must be an event and a retry, never a crash:
 *   - every connection has an 'error' listener (ioredis and mqemitter-redis re-emit errors; an
 *     EventEmitter 'error' without a listener ends the process);
 *   - connections are wrapped so that a command promise nobody awaits (aedes-persistence-redis
 *     fires some LREM/RPUSH without awaiting them) cannot become an unhandled rejection, which
 *     would end the process too;
 *   - commands issued while Redis is down fail after a couple of retries instead of hanging, so
 *     MQTT clients see an error (and reconnect) while the connection keeps retrying forever.
 */
import { readFile } from 'node:fs/promises';
import { Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';
import { BastionError } from '@bastion/core';
import type { StoreEventSink } from './events.js';

export interface RedisTlsConfig {
  /** CA certificate files (PEM) the Redis server certificate must chain to; system CAs when empty. */
  ca?: readonly string[];
  /** Client certificate and key (PEM files) when Redis asks for one. */
  cert?: string;
  key?: string;
  /** Server name to verify (default: the URL's host). */
  servername?: string;
}

export interface RedisConfig {
  /** redis://host:port/db or rediss://… (TLS). */
  url: string;
  username?: string | undefined;
  password?: string | undefined;
  /** Prefix of every key and pub/sub channel (several brokers or tests can share one Redis). */
  prefix: string;
  /** TLS settings; TLS is on when this is set or the URL is rediss://. */
  tls?: RedisTlsConfig | undefined;
  /** Milliseconds to wait for Redis at start before failing. */
  connectTimeout: number;
}

/** ioredis options from the config (TLS files read here). `keyPrefix` is added by the caller where keys are used. */
export async function redisOptions(cfg: RedisConfig): Promise<RedisOptions> {
  let url: URL;
  try {
    url = new URL(cfg.url);
  } catch {
    throw new BastionError('BASTION_ERR_PERSISTENCE_CONFIG', `persistence.redis.url is not a URL: expected redis://host:port/db or rediss://…`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new BastionError('BASTION_ERR_PERSISTENCE_CONFIG', `persistence.redis.url must start with redis:// or rediss://, got ${url.protocol}//`);
  }
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new BastionError('BASTION_ERR_PERSISTENCE_CONFIG', `persistence.redis.url: the database must be a number, got ${url.pathname.slice(1)}`);
  const opts: RedisOptions = {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port ? Number(url.port) : 6379,
    db,
    username: cfg.username ?? (url.username ? decodeURIComponent(url.username) : undefined),
    password: cfg.password ?? (url.password ? decodeURIComponent(url.password) : undefined),
    lazyConnect: true,
    connectTimeout: cfg.connectTimeout,
    // fail commands issued during an outage quickly (the client sees an error) …
    maxRetriesPerRequest: 2,
    // … while the connection itself retries forever, backing off to 2 s
    retryStrategy: (times) => Math.min(100 * times, 2000),
    enableAutoPipelining: true,
  };
  if (url.protocol === 'rediss:' || cfg.tls) {
    const t = cfg.tls ?? {};
    const read = async (f: string) => {
      try {
        return await readFile(f);
      } catch (err) {
        throw new BastionError('BASTION_ERR_PERSISTENCE_CONFIG', `persistence.redis.tls: cannot read ${f} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
      }
    };
    opts.tls = {
      ...(t.ca && t.ca.length > 0 ? { ca: await Promise.all(t.ca.map(read)) } : {}),
      ...(t.cert ? { cert: await read(t.cert) } : {}),
      ...(t.key ? { key: await read(t.key) } : {}),
      servername: t.servername ?? url.hostname,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    };
  }
  return opts;
}

const noop = (): void => undefined;

/** A proxy that marks every promise a command returns as handled (the caller still sees its rejection). */
function guarded(redis: Redis): Redis {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(redis, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      let w = wrapped.get(prop);
      if (w === undefined) {
        const fn = v as (...args: unknown[]) => unknown;
        w = function (this: unknown, ...args: unknown[]) {
          const r = fn.apply(target, args);
          if (r !== null && typeof r === 'object' && typeof (r as Promise<unknown>).catch === 'function' && r !== target) (r as Promise<unknown>).catch(noop);
          return r;
        };
        wrapped.set(prop, w);
      }
      return w;
    },
  });
}

/**
 * Tracks the connections of one store: reports `unavailable` once when the first one drops and
 * `restored` when all are back. Never throws.
 */
export class ConnectionHealth {
  readonly #down = new Map<string, number>();
  #since = 0;
  sink: StoreEventSink | undefined;

  watch(redis: Redis, role: string): void {
    let wasReady = false;
    redis.on('error', (err: Error) => {
      // reported through 'close' below; ioredis emits an error per failed attempt
      if (!this.#down.has(role) && wasReady) this.#markDown(role, err.message);
    });
    redis.on('ready', () => {
      wasReady = true;
      this.#markUp(role);
    });
    redis.on('close', () => {
      if (wasReady && redis.status !== 'end') this.#markDown(role, 'connection closed');
    });
    redis.on('end', () => {
      this.#down.delete(role); // closed on purpose
    });
  }

  #markDown(role: string, error: string): void {
    if (this.#down.has(role)) return;
    if (this.#down.size === 0) this.#since = Date.now();
    this.#down.set(role, Date.now());
    this.sink?.({ type: 'unavailable', connection: role, error });
  }

  #markUp(role: string): void {
    if (!this.#down.delete(role)) return;
    if (this.#down.size === 0) this.sink?.({ type: 'restored', downMs: Date.now() - this.#since });
  }

  get healthy(): boolean {
    return this.#down.size === 0;
  }
}

/** A lazily connecting, guarded ioredis client. */
export function createRedis(options: RedisOptions, health: ConnectionHealth, role: string, extra: RedisOptions = {}): Redis {
  const redis = new Redis({ ...options, ...extra, connectionName: `bastion-${role}` });
  health.watch(redis, role);
  return guarded(redis);
}

/** Connect now (lazy clients connect on first use), or fail with a clear error after the connect timeout. */
export async function connectNow(redis: Redis, cfg: RedisConfig): Promise<void> {
  if (redis.status === 'ready') return;
  const where = redactUrl(cfg.url);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BastionError('BASTION_ERR_PERSISTENCE_UNAVAILABLE', `cannot reach Redis at ${where} within ${cfg.connectTimeout} ms`)), cfg.connectTimeout);
  });
  // ioredis rejects with "Connection is closed"; the cause (TLS, refused, auth) comes as an 'error' event
  let cause: Error | undefined;
  const onError = (err: Error) => {
    cause = err;
  };
  redis.on('error', onError);
  try {
    const connecting = redis.status === 'wait' ? redis.connect() : new Promise<void>((resolve) => redis.once('ready', () => resolve()));
    await Promise.race([connecting, timeout]);
    await Promise.race([redis.ping(), timeout]);
  } catch (err) {
    const why = cause && cause !== err ? `${cause.message}` : (err as Error).message;
    if (err instanceof BastionError) throw cause ? new BastionError(err.code, `${err.message}: ${why}`, { cause }) : err;
    throw new BastionError('BASTION_ERR_PERSISTENCE_UNAVAILABLE', `cannot use Redis at ${where}: ${why}`, { cause: cause ?? err });
  } finally {
    clearTimeout(timer);
    redis.off('error', onError);
  }
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<invalid url>';
  }
}

/** Close a client: QUIT when connected, otherwise just stop reconnecting. */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'end') return;
  if (redis.status === 'ready') {
    try {
      await Promise.race([redis.quit(), new Promise((r) => setTimeout(r, 1000).unref())]);
    } catch {
      /* already gone */
    }
  }
  redis.disconnect(false);
}

/** Every key under `prefix` (ioredis' keyPrefix does not apply to SCAN patterns), without the prefix. */
export async function* scanKeys(redis: Redis, prefix: string, pattern = '*'): AsyncGenerator<string> {
  let cursor = '0';
  const match = `${escapeGlob(prefix)}${pattern}`;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 500);
    cursor = next;
    for (const k of keys) yield k.slice(prefix.length);
  } while (cursor !== '0');
}

function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
