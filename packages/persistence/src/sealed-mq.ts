/**
 * Cluster traffic through Redis pub/sub, sealed (PR.IP-2, PR.IP-3, PR.SS-6).
 *
 * mqemitter-redis publishes every packet, whole and in clear, to a Redis channel named after its
 * topic: anyone who can PSUBSCRIBE on that Redis (another application, a replica, an operator)
 * reads every payload. TLS to Redis would protect the wire only. So the packet's payload, its
 * publisher's client id and MQTT 5 properties are sealed here with the cluster subkey; the routing
 * fields (topic, qos, retain, brokerId, brokerCounter …) stay readable but are authenticated, and a
 * send time inside the seal lets receivers drop stale replays. The topic remains visible as the
 * channel name: Redis routes on it.
 *
 * Sealing happens once per publish and opening once per node (in `_emit`, before the local fan-out
 * to subscribers), never per subscriber.
 */
import { createRequire } from 'node:module';
import v8 from 'node:v8';
import type { Redis } from 'ioredis';
import type { StoreEventSink } from './events.js';
import type { Context, Sealer } from './seal.js';

const require = createRequire(import.meta.url);

type Callback = (err?: Error | null) => void;
interface Packet {
  topic: string;
  payload?: Buffer | string;
  clientId?: string;
  properties?: unknown;
  brokerId?: string;
  brokerCounter?: number;
  qos?: number;
  retain?: boolean;
  dup?: boolean;
  cmd?: string;
  [k: string]: unknown;
}
interface MQEmitterRedisLike {
  on(topic: string, fn: (packet: Packet, done: () => void) => void, done?: () => void): unknown;
  removeListener(topic: string, fn: unknown, done?: () => void): unknown;
  emit(packet: Packet, done?: Callback): unknown;
  close(cb?: () => void): unknown;
  state: { on(event: 'error', fn: (err: Error) => void): unknown };
}
type MQCtor = new (prefix: string, opts: Record<string, unknown>) => MQEmitterRedisLike & { _emit(packet: Packet, cb?: Callback): unknown };

const mqemitterRedis = require('mqemitter-redis') as { MQEmitterRedisPrefix: MQCtor };
const Base = mqemitterRedis.MQEmitterRedisPrefix;

const FLAG_PROPERTIES = 1;
/** Messages older (or further in the future) than this are dropped as replays. */
export const MAX_CLUSTER_MESSAGE_AGE_MS = 60_000;
const EMPTY = Buffer.alloc(0);

export interface SealedMQOptions {
  pubConn: Redis;
  subConn: Redis;
  /** Channel prefix (the store's key prefix), so brokers on one Redis stay apart. */
  prefix: string;
  sealer: Sealer;
  onEvent?: StoreEventSink;
  /** Aedes' default mqemitter concurrency. */
  concurrency?: number;
}

/** Bind the routing fields of a packet (readable on the wire) into the associated data. */
function bindRouting(ctx: Context, p: Packet, topic: string): void {
  ctx.clientId = p.brokerId ?? '';
  ctx.topic = topic;
  ctx.counter = typeof p.brokerCounter === 'number' ? p.brokerCounter : -1;
  ctx.bits = ((p.qos ?? 0) & 3) | (p.retain ? 4 : 0) | (p.dup ? 8 : 0) | (p.cmd === undefined || p.cmd === 'publish' ? 0 : 16);
}

export function createSealedMQ(opts: SealedMQOptions): MQEmitterRedisLike {
  const { prefix, sealer, onEvent } = opts;
  const ctx: Context = { kind: 'M', clientId: undefined, topic: undefined };

  class SealedMQ extends Base {
    // publish: seal, then let mqemitter-redis prefix the channel and send
    override emit(packet: Packet, done?: Callback): unknown {
      const payload = packet.payload === undefined ? EMPTY : typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
      const client = packet.clientId === undefined ? EMPTY : Buffer.from(packet.clientId);
      const props = packet.properties === undefined ? EMPTY : v8.serialize(packet.properties);
      const plain = Buffer.allocUnsafe(8 + 2 + client.length + 4 + payload.length + props.length);
      plain.writeDoubleBE(Date.now(), 0);
      plain.writeUInt16BE(client.length, 8);
      client.copy(plain, 10);
      plain.writeUInt32BE(payload.length, 10 + client.length);
      payload.copy(plain, 14 + client.length);
      props.copy(plain, 14 + client.length + payload.length);
      const sealedPacket: Packet = { ...packet, payload: EMPTY };
      delete sealedPacket.clientId;
      delete sealedPacket.properties;
      bindRouting(ctx, sealedPacket, packet.topic);
      sealedPacket.payload = sealer.seal(plain, ctx, props.length > 0 ? FLAG_PROPERTIES : 0);
      return super.emit(sealedPacket, done);
    }

    // receive (once per node, before the local fan-out): open, or drop and report
    override _emit(msg: Packet, cb?: Callback): unknown {
      const topic = msg.topic.startsWith(prefix) ? msg.topic.slice(prefix.length) : msg.topic;
      bindRouting(ctx, msg, topic);
      const envelope = msg.payload;
      const plain = sealer.open(envelope, ctx);
      if (plain === undefined) {
        onEvent?.({ type: 'cluster-rejected', channel: 'traffic', reason: sealer.failure ?? 'forged', keyId: sealer.failureKeyId });
        return cb?.();
      }
      const age = Date.now() - plain.readDoubleBE(0);
      if (age > MAX_CLUSTER_MESSAGE_AGE_MS || age < -MAX_CLUSTER_MESSAGE_AGE_MS) {
        onEvent?.({ type: 'cluster-rejected', channel: 'traffic', reason: 'stale', keyId: undefined });
        return cb?.();
      }
      const n = plain.readUInt16BE(8);
      if (n > 0) msg.clientId = plain.toString('utf8', 10, 10 + n);
      const len = plain.readUInt32BE(10 + n);
      msg.payload = plain.subarray(14 + n, 14 + n + len);
      if ((envelope as Buffer)[2]! & FLAG_PROPERTIES) msg.properties = v8.deserialize(plain.subarray(14 + n + len));
      return super._emit(msg, cb);
    }
  }

  const mq = new SealedMQ(prefix, {
    pubConn: opts.pubConn,
    subConn: opts.subConn,
    concurrency: opts.concurrency ?? 100,
    matchEmptyLevels: true, // [MQTT-4.7.1-3], as Aedes' default mqemitter
  });
  // mqemitter-redis re-emits connection errors on `state`: without a listener they end the process.
  // Outages are reported by the connections' health watcher; this only keeps them from crashing.
  mq.state.on('error', () => undefined);
  return mq;
}
