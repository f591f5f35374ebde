/**
 * The cluster-state channel: small, sealed messages between the brokers that share a Redis, so a
 * decision taken on one node (a ban, an ACL change, a revocation, a rate-limit budget) is in force
 * on every node within about a Redis round trip.
 *
 *   const off = state.subscribe('ban', (data, meta) => { … });   // messages from *other* nodes
 *   await state.publish('ban', { op: 'add', ip: '10.0.0.0/8' });  // JSON-serialisable data
 *
 * One Redis pub/sub channel (`<prefix>bastion:state`). Each message is sealed (AES-256-GCM, the
 * state subkey, the channel name as associated data) and carries the sender's node id, a sequence
 * number and its send time: a receiver drops what does not open, what is older than a minute, and
 * what repeats or precedes a sequence number it has seen from that node. Delivery is at most once
 * and only to nodes connected at that moment: state that must survive a restart belongs in the
 * profile or a store; this channel spreads changes, it does not keep them.
 *
 * No echo loops: a control applies what another node sent with the origin `clusterOrigin(meta)`
 * (`cluster:<node id>`) and never publishes a change whose origin `isClusterOrigin`. Redis does echo
 * a node's own messages; the receiver drops them by node id.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { StoreEventSink } from './events.js';
import type { Context, Sealer } from './seal.js';

export interface StateMeta {
  /** The node that published. */
  readonly node: string;
  /** Its clock at publish time (epoch ms). */
  readonly time: number;
}

export type StateListener = (data: unknown, meta: StateMeta) => void;

/** The API other controls use (see docs/persistence.md). */
export interface ClusterStateChannel {
  /** This node's id (random per process). */
  readonly nodeId: string;
  /** Send `data` (JSON-serialisable) to every other node subscribed to `kind`. Resolves once Redis has it. */
  publish(kind: string, data: unknown): Promise<void>;
  /** Receive what other nodes publish under `kind` (never this node's own messages). Returns an unsubscribe function. */
  subscribe(kind: string, listener: StateListener): () => void;
}

interface Wire {
  v: 1;
  node: string;
  seq: number;
  time: number;
  kind: string;
  data: unknown;
}

export const STATE_CHANNEL = 'bastion:state';
const ORIGIN_PREFIX = 'cluster:';

/** The origin to give a change applied for another node: `cluster:<its node id>`. */
export function clusterOrigin(meta: Pick<StateMeta, 'node'>): string {
  return ORIGIN_PREFIX + meta.node;
}

/** True for a change applied for another node: it must not be published again. */
export function isClusterOrigin(origin: string | undefined): boolean {
  return origin !== undefined && origin.startsWith(ORIGIN_PREFIX);
}

const MAX_AGE_MS = 60_000;

export class ClusterState implements ClusterStateChannel {
  readonly nodeId = randomUUID();
  readonly channel: string;
  readonly #pub: Redis;
  readonly #sub: Redis;
  readonly #sealer: Sealer;
  readonly #ctx: Context;
  readonly #listeners = new Map<string, Set<StateListener>>();
  readonly #lastSeq = new Map<string, { seq: number; at: number }>();
  #seq = 0;
  #started = false;
  onEvent: StoreEventSink | undefined;

  constructor(pub: Redis, sub: Redis, sealer: Sealer, prefix: string) {
    this.#pub = pub;
    this.#sub = sub;
    this.#sealer = sealer;
    this.channel = `${prefix}${STATE_CHANNEL}`;
    this.#ctx = { kind: 'S', topic: this.channel };
  }

  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.#sub.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      if (channel.toString() === this.channel) this.#receive(message);
    });
    await this.#sub.subscribe(this.channel);
  }

  async publish(kind: string, data: unknown): Promise<void> {
    if (typeof kind !== 'string' || kind === '') throw new TypeError('a state message needs a kind');
    const wire: Wire = { v: 1, node: this.nodeId, seq: ++this.#seq, time: Date.now(), kind, data };
    const sealed = this.#sealer.seal(Buffer.from(JSON.stringify(wire)), this.#ctx);
    await this.#pub.publish(this.channel, sealed);
  }

  subscribe(kind: string, listener: StateListener): () => void {
    let set = this.#listeners.get(kind);
    if (!set) this.#listeners.set(kind, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  }

  #reject(reason: 'stale' | 'replayed' | 'malformed' | 'not-sealed' | 'unknown-key' | 'forged', keyId?: string): void {
    this.onEvent?.({ type: 'cluster-rejected', channel: 'state', reason, keyId });
  }

  #receive(message: Buffer): void {
    const plain = this.#sealer.open(message, this.#ctx);
    if (plain === undefined) return this.#reject(this.#sealer.failure ?? 'forged', this.#sealer.failureKeyId);
    let wire: Wire;
    try {
      wire = JSON.parse(plain.toString('utf8')) as Wire;
    } catch {
      return this.#reject('malformed');
    }
    if (wire?.v !== 1 || typeof wire.node !== 'string' || typeof wire.seq !== 'number' || typeof wire.time !== 'number' || typeof wire.kind !== 'string') return this.#reject('malformed');
    if (wire.node === this.nodeId) return; // our own message, echoed by Redis
    const now = Date.now();
    if (Math.abs(now - wire.time) > MAX_AGE_MS) return this.#reject('stale');
    const last = this.#lastSeq.get(wire.node);
    if (last !== undefined && wire.seq <= last.seq) return this.#reject('replayed');
    this.#lastSeq.set(wire.node, { seq: wire.seq, at: now });
    if (this.#lastSeq.size > 1000) this.#forgetIdle(now);
    const set = this.#listeners.get(wire.kind);
    if (!set) return;
    const meta: StateMeta = { node: wire.node, time: wire.time };
    for (const l of set) {
      try {
        l(wire.data, meta);
      } catch (err) {
        this.onEvent?.({ type: 'state-listener-failed', kind: wire.kind, error: (err as Error)?.message ?? String(err) });
      }
    }
  }

  /** Nodes silent for longer than the replay window need no sequence memory: their old messages are stale anyway. */
  #forgetIdle(now: number): void {
    for (const [node, v] of this.#lastSeq) if (now - v.at > MAX_AGE_MS) this.#lastSeq.delete(node);
  }
}
