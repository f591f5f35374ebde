/**
 * `openStore(config)`: the persistence and mqemitter to hand to Aedes (via the core's
 * `persistence`/`mq` options), plus the cluster-state channel, from one config — which is what the
 * profile's `persistence` section resolves to.
 *
 * Nothing connects here: Redis clients connect lazily, in the persistence's `setup` (called by
 * Aedes when the broker starts), which first checks the store against the keys and fails closed.
 * When that start fails, every connection is closed again, so a failed start leaves nothing
 * running.
 */
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import { BastionError } from '@bastion/core';
import { ClusterState } from './cluster-state.js';
import { EncryptingPersistence } from './encrypting-persistence.js';
import type { AedesPersistence } from './encrypting-persistence.js';
import type { StoreEvent, StoreEventSink } from './events.js';
import { Keyring } from './keys.js';
import type { KeySource } from './keys.js';
import { PacketCipher } from './records.js';
import { ConnectionHealth, closeRedis, connectNow, createRedis, redisOptions } from './redis.js';
import type { RedisConfig } from './redis.js';
import { createSealedMQ } from './sealed-mq.js';
import { Sealer } from './seal.js';
import { checkStore } from './store-meta.js';

const require = createRequire(import.meta.url);

/** Memory store: ms a queued record rests in plaintext before it is sealed (one acknowledged sooner never is). */
export const MEMORY_SEAL_AFTER = 50;

export interface StoreConfig {
  /** memory: Aedes' in-process store (lost on restart). redis: a Redis server, shared by a cluster. */
  store: 'memory' | 'redis';
  redis?: RedisConfig | undefined;
  /** Share live traffic, client takeovers and cluster state with the other brokers on this Redis. */
  cluster: boolean;
  /** Seal stored payloads (and cluster traffic) with these keys; the first one writes. */
  encryption?: { keys: readonly KeySource[] } | undefined;
}

export interface OpenStoreOptions {
  /** Reports outages, restorations and refused records; settable later with `store.onEvent`. */
  onEvent?: StoreEventSink;
  /** An already loaded keyring (instead of `config.encryption`). */
  keyring?: Keyring;
}

export class Store {
  readonly config: StoreConfig;
  readonly keyring: Keyring | undefined;
  /** The Aedes persistence, or undefined for Aedes' own memory store (memory without encryption). */
  readonly persistence: EncryptingPersistence | undefined;
  /** The Aedes mqemitter, or undefined for Aedes' in-process one (no cluster). */
  readonly mq: unknown;
  /** The cluster-state channel (cluster mode only). */
  readonly state: ClusterState | undefined;
  /** Redis connection health (memory stores are always healthy). */
  readonly health: ConnectionHealth;
  readonly #connections: Redis[];
  readonly #start: () => Promise<void>;
  #sink: StoreEventSink | undefined;
  #closed = false;

  constructor(parts: {
    config: StoreConfig;
    keyring: Keyring | undefined;
    persistence: EncryptingPersistence | undefined;
    mq: unknown;
    state: ClusterState | undefined;
    connections: Redis[];
    health?: ConnectionHealth;
    start?: () => Promise<void>;
  }) {
    this.#start = parts.start ?? (async () => undefined);
    this.config = parts.config;
    this.health = parts.health ?? new ConnectionHealth();
    this.keyring = parts.keyring;
    this.persistence = parts.persistence;
    this.mq = parts.mq;
    this.state = parts.state;
    this.#connections = parts.connections;
  }

  /**
   * Connect, check the store against the keys (fails closed) and start the state channel. The
   * broker does this when it starts (in the persistence's setup); call it yourself only when using
   * a store without a broker. Idempotent; after a failure every connection is closed.
   */
  start(): Promise<void> {
    return this.#start();
  }

  set onEvent(sink: StoreEventSink | undefined) {
    this.#sink = sink;
  }

  /** Deliver an event to the current sink (never throws). */
  report = (event: StoreEvent): void => {
    try {
      this.#sink?.(event);
    } catch {
      /* a faulty sink must not break the store */
    }
  };

  /** Close every connection this store opened (idempotent; Aedes closes the mq and destroys the persistence itself). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#connections.map((c) => closeRedis(c)));
  }
}

interface CallbackPersistenceCtor {
  (opts?: Record<string, unknown>): AedesPersistence;
}

function memoryPersistence(): AedesPersistence {
  return (require('aedes-persistence') as CallbackPersistenceCtor)();
}

function redisPersistence(conn: Redis): AedesPersistence {
  return (require('aedes-persistence-redis') as CallbackPersistenceCtor)({ conn });
}

export async function openStore(config: StoreConfig, options: OpenStoreOptions = {}): Promise<Store> {
  const keyring = options.keyring ?? (config.encryption ? await Keyring.load(config.encryption.keys) : undefined);
  if (config.cluster && config.store !== 'redis') throw new BastionError('BASTION_ERR_PERSISTENCE_CONFIG', 'persistence.cluster needs persistence.store: redis');
  if (config.cluster && !keyring) {
    throw new BastionError('BASTION_ERR_PERSISTENCE_CONFIG', 'persistence.cluster needs persistence.encryption: cluster traffic through Redis is sealed with the persistence keys');
  }
  let store: Store | undefined;
  const report: StoreEventSink = (e) => store?.report(e);
  const cipher = keyring ? new PacketCipher(new Sealer(keyring, 'records')) : undefined;

  if (config.store === 'memory') {
    // records never leave the process: queued ones are sealed once at rest (see seal-at-rest.ts)
    const persistence = cipher ? new EncryptingPersistence(memoryPersistence(), cipher, { onEvent: report, inProcess: true, sealQueuedAfter: MEMORY_SEAL_AFTER }) : undefined;
    store = new Store({ config, keyring, persistence, mq: undefined, state: undefined, connections: [] });
    if (options.onEvent) store.onEvent = options.onEvent;
    return store;
  }

  const redis = config.redis;
  if (!redis) throw new BastionError('BASTION_ERR_PERSISTENCE_CONFIG', 'persistence.store is redis but persistence.redis is not set');
  const base = await redisOptions(redis);
  const connections: Redis[] = [];
  const health = new ConnectionHealth();
  const open = (role: string, keyed: boolean): Redis => {
    const c = createRedis(base, health, role, keyed ? { keyPrefix: redis.prefix } : {});
    connections.push(c);
    return c;
  };
  const db = open('store', true);
  let mq: unknown;
  let state: ClusterState | undefined;
  if (config.cluster && keyring) {
    const pub = open('cluster-pub', false);
    mq = createSealedMQ({ pubConn: pub, subConn: open('cluster-sub', false), prefix: redis.prefix, sealer: new Sealer(keyring, 'cluster'), onEvent: report });
    state = new ClusterState(pub, open('state-sub', false), new Sealer(keyring, 'state'), redis.prefix);
    state.onEvent = report;
  }

  const closeAll = async () => {
    await Promise.all(connections.map((c) => closeRedis(c)));
  };
  let starting: Promise<void> | undefined;
  const beforeSetup = () => (starting ??= startOnce());
  const startOnce = async () => {
    try {
      await connectNow(db, redis);
      await checkStore(db, redis.prefix, keyring);
      if (state) await state.start();
    } catch (err) {
      await closeAll(); // a failed start leaves no connection retrying in the background
      throw err;
    }
  };
  const persistence = new EncryptingPersistence(redisPersistence(db), cipher, { beforeSetup, afterDestroy: closeAll, onEvent: report });
  store = new Store({ config, keyring, persistence, mq, state, connections, health, start: beforeSetup });
  health.sink = report;
  if (options.onEvent) store.onEvent = options.onEvent;
  return store;
}

/** A direct connection to a Redis store, for the offline tools (rotate, backup, restore). */
export interface StoreConnection {
  readonly db: Redis;
  readonly prefix: string;
  readonly keyring: Keyring | undefined;
  close(): Promise<void>;
}

export async function connectStore(config: StoreConfig): Promise<StoreConnection> {
  if (config.store !== 'redis' || !config.redis) {
    throw new BastionError('BASTION_ERR_PERSISTENCE_CONFIG', 'this needs a Redis store (persistence.store: redis): a memory store lives only inside the running broker');
  }
  const keyring = config.encryption ? await Keyring.load(config.encryption.keys) : undefined;
  const redis = config.redis;
  const db = createRedis(await redisOptions(redis), new ConnectionHealth(), 'tool', { keyPrefix: redis.prefix });
  try {
    await connectNow(db, redis);
  } catch (err) {
    await closeRedis(db);
    throw err;
  }
  return { db, prefix: redis.prefix, keyring, close: () => closeRedis(db) };
}
