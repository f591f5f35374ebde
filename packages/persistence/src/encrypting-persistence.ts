/**
 * The encrypting persistence (PR.SS-6): a decorator over any Aedes 1.x persistence (the promise
 * API: aedes-persistence's memory store, aedes-persistence-redis, …) that seals every stored
 * payload — retained messages, offline QoS 1/2 queues (also the packet re-stored on
 * `outgoingUpdate`), incoming QoS 2 packets and wills — and opens them on the way out.
 *
 * What a record is bound to (associated data, see seal.ts):
 *   retained  R + topic
 *   queued    O + topic   (one stored record serves every subscriber it was queued for, so it
 *                          cannot name one client: aedes-persistence-redis stores it once)
 *   incoming  I + client id + topic
 *   will      W + client id + topic
 *
 * A record that does not open is never served: it is reported (`record-rejected`) and skipped
 * (streams), treated as absent (incoming, wills), or returned still sealed where Aedes only counts
 * it (see outgoingClearMessageId).
 *
 * Over a store in the broker's own heap (`inProcess`: the memory store) with `sealQueuedAfter`,
 * queued records are sealed once they have been at rest that long, and records removed sooner are
 * never sealed (see seal-at-rest.ts).
 *
 * Without a cipher it seals nothing but still runs the store checks at setup and lets writes in
 * flight land before destroy (the Redis store uses it either way).
 */
import { Readable } from 'node:stream';
import type { StoreEventSink } from './events.js';
import { copyPacket } from './records.js';
import type { PacketCipher, StoredPacket } from './records.js';
import type { SealKind } from './seal.js';
import { SealAtRest } from './seal-at-rest.js';

/** The Aedes 1.x persistence interface (promise style), as far as the decorator needs it. */
export interface AedesPersistence {
  setup(broker: unknown): Promise<void>;
  storeRetained(packet: StoredPacket): Promise<void>;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
  addSubscriptions(client: unknown, subs: unknown[]): Promise<unknown>;
  removeSubscriptions(client: unknown, subs: string[]): Promise<unknown>;
  subscriptionsByClient(client: unknown): Promise<unknown[]>;
  countOffline(): Promise<{ subsCount: number; clientsCount: number }>;
  subscriptionsByTopic(topic: string): Promise<unknown[]>;
  cleanSubscriptions(client: unknown): Promise<unknown>;
  outgoingEnqueue(sub: { clientId: string }, packet: StoredPacket): Promise<unknown>;
  outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: StoredPacket): Promise<unknown>;
  outgoingUpdate(client: { id: string }, packet: StoredPacket): Promise<unknown>;
  outgoingClearMessageId(client: { id: string }, packet: { messageId?: number }): Promise<StoredPacket | undefined>;
  outgoingStream(client: { id: string }): Readable;
  /** Bastion's Aedes patch: whether anything is queued, answered synchronously (memory store). */
  hasOutgoing?: ((client: { id: string }) => boolean | undefined) | undefined;
  incomingStorePacket(client: { id: string }, packet: StoredPacket): Promise<unknown>;
  incomingGetPacket(client: { id: string }, packet: { messageId?: number }): Promise<StoredPacket>;
  incomingDelPacket(client: { id: string }, packet: { messageId?: number }): Promise<unknown>;
  cleanIncoming?: ((client: { id: string }) => Promise<unknown>) | undefined;
  putWill(client: { id: string }, packet: StoredPacket): Promise<unknown>;
  getWill(client: { id: string }): Promise<StoredPacket | null | undefined>;
  delWill(client: { id: string; brokerId?: string }): Promise<StoredPacket | null | undefined>;
  streamWill(brokers?: Record<string, number>): Readable;
  getClientList(topic: string): Readable;
  destroy(): Promise<unknown>;
}

export interface EncryptingPersistenceOptions {
  /** Runs before the wrapped store's setup (key checks); a rejection fails the broker start. */
  beforeSetup?: () => Promise<void>;
  /** Runs after the wrapped store's destroy (closing connections it does not own). */
  afterDestroy?: () => Promise<void>;
  onEvent?: StoreEventSink;
  /**
   * The wrapped store lives in the broker's heap (the memory store): its writes are done when its
   * calls return, so destroy has none to wait for, and `sealQueuedAfter` may apply.
   */
  inProcess?: boolean;
  /**
   * With `inProcess` only (records never leave the process): seal queued records once they have
   * been stored this many ms; a record removed sooner is never sealed.
   */
  sealQueuedAfter?: number;
}

/**
 * Recently sealed queue payloads, in slots indexed by the message's broker counter (Aedes numbers
 * its messages in sequence, so the last RECENT messages land in distinct slots): no allocation, no
 * eviction. Strong references, so bounded: RECENT slots of at most RECENT_MAX_PAYLOAD bytes (a
 * larger payload is sealed again on its re-store).
 */
const RECENT = 2048;
const RECENT_MAX_PAYLOAD = 4 * 1024;

const noop = (): void => undefined;

export class EncryptingPersistence implements AedesPersistence {
  readonly inner: AedesPersistence;
  readonly #cipher: PacketCipher | undefined;
  readonly #opts: EncryptingPersistenceOptions;
  #broker: { listenerCount?: (event: string) => number } | undefined;
  /**
   * Queued messages' sealed payloads, by Aedes' per-message broker counter. Aedes re-stores the same
   * message on every `outgoingUpdate` (each live delivery to a persistent session), shortly after
   * queueing it; its plaintext and associated data are unchanged, so the envelope sealed at enqueue
   * time is the record again — reused rather than sealing the same bytes once per delivery. Checked
   * by payload identity, topic, broker and key; a miss just seals. Indexed, not scanned: with many
   * messages in flight the re-store can come thousands of messages after the enqueue. It holds
   * Aedes' own payload buffers of the last RECENT messages (with their envelopes: at most 16 MiB).
   */
  readonly #recentCounter = new Float64Array(RECENT).fill(-1);
  readonly #recentKey = new Uint32Array(RECENT);
  readonly #recentPayload: Array<Buffer | undefined> = new Array<Buffer | undefined>(RECENT).fill(undefined);
  readonly #recentBroker: unknown[] = new Array<unknown>(RECENT).fill(undefined);
  readonly #recentTopic: Array<string | undefined> = new Array<string | undefined>(RECENT).fill(undefined);
  readonly #recentSealed: Array<Buffer | undefined> = new Array<Buffer | undefined>(RECENT).fill(undefined);
  /** Queued records sealed at rest (sealQueuedAfter), or undefined: every record sealed when stored. */
  readonly atRest: SealAtRest | undefined;
  declare cleanIncoming: ((client: { id: string }) => Promise<unknown>) | undefined;

  readonly #inProcess: boolean;
  /** The record a PUBACK removed no longer needs its seal at rest (bound once: no closure per PUBACK). */
  readonly #release = (record: StoredPacket | undefined): StoredPacket | undefined => {
    if (record) this.atRest?.released(record.payload);
    return record;
  };
  /** A held buffer every queue released may be reused for another record: never offer it again for a re-store. */
  readonly #forget = (buf: Buffer, counter: number): void => {
    const slot = counter % RECENT;
    if (this.#recentSealed[slot] === buf) {
      this.#recentCounter[slot] = -1;
      this.#recentPayload[slot] = undefined;
      this.#recentSealed[slot] = undefined;
    }
  };
  /** Writes in flight, so `destroy` can let them land (see there). */
  #pending = 0;
  readonly #settled = (): void => {
    this.#pending--;
  };

  /** `cipher` undefined: nothing is sealed, but setup checks and a clean destroy still apply. */
  constructor(inner: AedesPersistence, cipher: PacketCipher | undefined, opts: EncryptingPersistenceOptions = {}) {
    this.inner = inner;
    this.#cipher = cipher;
    this.#opts = opts;
    this.atRest = cipher && opts.inProcess === true && opts.sealQueuedAfter !== undefined ? new SealAtRest(cipher, opts.sealQueuedAfter, this.#forget) : undefined;
    this.#inProcess = opts.inProcess === true;
    // Aedes feature-detects cleanIncoming: offer it only when the wrapped store has it.
    this.cleanIncoming = typeof inner.cleanIncoming === 'function' ? (client) => this.#track((inner.cleanIncoming as (c: { id: string }) => Promise<unknown>)(client)) : undefined;
  }

  get encrypted(): boolean {
    return this.#cipher !== undefined;
  }

  /** A write that destroy() must let land (not for an in-process store: nothing is in flight). */
  #track<T>(p: Promise<T>): Promise<T> {
    if (this.#inProcess) return p;
    this.#pending++;
    p.then(this.#settled, this.#settled);
    return p;
  }

  #seal(packet: StoredPacket, kind: SealKind, clientId: string | undefined): StoredPacket {
    return this.#cipher ? this.#cipher.seal(packet, kind, clientId) : packet;
  }

  #reject(kind: SealKind, topic: string | undefined, clientId: string | undefined): void {
    const s = (this.#cipher as PacketCipher).sealer;
    this.#opts.onEvent?.({ type: 'record-rejected', kind, reason: s.failure ?? 'forged', keyId: s.failureKeyId, topic, clientId });
  }

  #open(record: StoredPacket, kind: SealKind, clientId: string | undefined): StoredPacket | undefined {
    if (!this.#cipher) return record;
    const out = this.#cipher.open(record, kind, clientId);
    if (out === undefined) this.#reject(kind, record.topic, clientId);
    return out;
  }

  /** Open a record that may be a publish (sealed) or a pubrel/other control record (no payload). */
  #openQueued(record: StoredPacket | null | undefined): StoredPacket | undefined {
    if (record === null || record === undefined) return undefined;
    if (record.cmd !== undefined && record.cmd !== 'publish') return record;
    const plain = this.atRest?.plaintext(record.payload);
    if (plain !== undefined) {
      const out = copyPacket(record);
      out.payload = plain;
      return out;
    }
    return this.#open(record, 'O', undefined);
  }

  #mapStream(source: Readable, map: (record: StoredPacket) => StoredPacket | undefined): Readable {
    if (!this.#cipher) return source;
    async function* opened(): AsyncGenerator<StoredPacket> {
      for await (const record of source as AsyncIterable<StoredPacket>) {
        const out = map(record);
        if (out !== undefined) yield out;
      }
    }
    return Readable.from(opened());
  }

  /** `restore`: an outgoingUpdate of a message most likely sealed moments ago at enqueue. */
  #sealQueued(packet: StoredPacket, restore: boolean, refs = 1): StoredPacket {
    const cipher = this.#cipher;
    if (!cipher) return packet;
    const payload = packet.payload;
    const counter = packet['brokerCounter'] as number;
    if (!Buffer.isBuffer(payload) || payload.length > RECENT_MAX_PAYLOAD || packet.properties !== undefined || !Number.isSafeInteger(counter) || counter < 0) return cipher.seal(packet, 'O', undefined);
    const keyId = cipher.sealer.keyring.current.idNumber;
    const slot = counter % RECENT;
    if (
      restore &&
      this.#recentCounter[slot] === counter &&
      this.#recentPayload[slot] === payload &&
      this.#recentTopic[slot] === packet.topic &&
      this.#recentKey[slot] === keyId &&
      this.#recentBroker[slot] === packet['brokerId']
    ) {
      return cipher.seal(packet, 'O', undefined, this.#recentSealed[slot]);
    }
    // at rest: a buffer holding the plaintext now and its envelope later; else sealed now
    const sealed = this.atRest !== undefined && !restore ? this.atRest.hold(payload, packet.topic, refs, counter) : cipher.sealPayload(packet, 'O', undefined);
    this.#recentCounter[slot] = counter;
    this.#recentKey[slot] = keyId;
    this.#recentPayload[slot] = payload;
    this.#recentBroker[slot] = packet['brokerId'];
    this.#recentTopic[slot] = packet.topic;
    this.#recentSealed[slot] = sealed;
    return cipher.seal(packet, 'O', undefined, sealed);
  }

  // Aedes checks that setup is an AsyncFunction.
  async setup(broker: unknown): Promise<void> {
    this.#broker = broker as { listenerCount?: (event: string) => number };
    await this.#opts.beforeSetup?.();
    await this.inner.setup(broker);
  }

  // ---- retained ----------------------------------------------------------------------------

  storeRetained(packet: StoredPacket): Promise<void> {
    const p = packet.payload;
    if (p === undefined || p.length === 0) return this.#track(this.inner.storeRetained(packet)); // a delete
    return this.#track(this.inner.storeRetained(this.#seal(packet, 'R', undefined)));
  }

  createRetainedStream(pattern: string): Readable {
    return this.#mapStream(this.inner.createRetainedStream(pattern), (r) => this.#open(r, 'R', undefined));
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    return this.#mapStream(this.inner.createRetainedStreamCombi(patterns), (r) => this.#open(r, 'R', undefined));
  }

  // ---- subscriptions: topics and QoS stay readable (Aedes matches on them) -----------------

  addSubscriptions(client: unknown, subs: unknown[]): Promise<unknown> {
    return this.#track(this.inner.addSubscriptions(client, subs));
  }

  removeSubscriptions(client: unknown, subs: string[]): Promise<unknown> {
    return this.#track(this.inner.removeSubscriptions(client, subs));
  }

  subscriptionsByClient(client: unknown): Promise<unknown[]> {
    return this.inner.subscriptionsByClient(client);
  }

  countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return this.inner.countOffline();
  }

  subscriptionsByTopic(topic: string): Promise<unknown[]> {
    return this.inner.subscriptionsByTopic(topic);
  }

  cleanSubscriptions(client: unknown): Promise<unknown> {
    return this.#track(this.inner.cleanSubscriptions(client));
  }

  getClientList(topic: string): Readable {
    return this.inner.getClientList(topic);
  }

  // ---- outgoing queues ---------------------------------------------------------------------

  outgoingEnqueue(sub: { clientId: string }, packet: StoredPacket): Promise<unknown> {
    return this.#track(this.inner.outgoingEnqueue(sub, this.#sealQueued(packet, false)));
  }

  outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: StoredPacket): Promise<unknown> {
    if (subs.length === 0) return this.inner.outgoingEnqueueCombi(subs, packet); // nothing is stored
    return this.#track(this.inner.outgoingEnqueueCombi(subs, this.#sealQueued(packet, false, subs.length)));
  }

  outgoingUpdate(client: { id: string }, packet: StoredPacket): Promise<unknown> {
    // a PUBREL (QoS 2 second phase) replaces the publish and has no payload
    if (packet.cmd !== undefined && packet.cmd !== 'publish') return this.#track(this.inner.outgoingUpdate(client, packet));
    return this.#track(this.inner.outgoingUpdate(client, this.#sealQueued(packet, true)));
  }

  outgoingClearMessageId(client: { id: string }, packet: { messageId?: number }): Promise<StoredPacket | undefined> {
    const cleared = this.#track(this.inner.outgoingClearMessageId(client, packet));
    const atRest = this.atRest;
    // Aedes only hands this packet to 'ack' listeners (its queue drain discards it): open it when
    // someone listens, instead of paying a decryption for every PUBACK.
    if (!this.#cipher || (this.#broker?.listenerCount?.('ack') ?? 1) === 0) {
      return atRest === undefined ? cleared : cleared.then(this.#release);
    }
    return cleared.then((record) => {
      const out = this.#openQueued(record);
      if (record) atRest?.released(record.payload);
      return out;
    });
  }

  /**
   * Passed through (sealing changes no queue's length): with the memory store, a client with nothing
   * queued is answered without a decrypting stream per CONNECT (an async generator and a Readable).
   */
  hasOutgoing(client: { id: string }): boolean | undefined {
    return typeof this.inner.hasOutgoing === 'function' ? this.inner.hasOutgoing(client) : undefined;
  }

  outgoingStream(client: { id: string }): Readable {
    return this.#mapStream(this.inner.outgoingStream(client), (r) => this.#openQueued(r));
  }

  // ---- incoming QoS 2 ----------------------------------------------------------------------

  incomingStorePacket(client: { id: string }, packet: StoredPacket): Promise<unknown> {
    return this.#track(this.inner.incomingStorePacket(client, this.#seal(packet, 'I', client.id)));
  }

  async incomingGetPacket(client: { id: string }, packet: { messageId?: number }): Promise<StoredPacket> {
    const record = await this.inner.incomingGetPacket(client, packet);
    const out = this.#open(record, 'I', client.id);
    if (out === undefined) throw new Error('no such packet'); // what Aedes expects for "not stored"
    return out;
  }

  incomingDelPacket(client: { id: string }, packet: { messageId?: number }): Promise<unknown> {
    return this.#track(this.inner.incomingDelPacket(client, packet));
  }

  // ---- wills -------------------------------------------------------------------------------

  putWill(client: { id: string }, packet: StoredPacket): Promise<unknown> {
    return this.#track(this.inner.putWill(client, this.#seal(packet, 'W', client.id)));
  }

  async getWill(client: { id: string }): Promise<StoredPacket | null | undefined> {
    const record = await this.inner.getWill(client);
    if (record === null || record === undefined) return record;
    return this.#open(record, 'W', client.id) ?? null;
  }

  async delWill(client: { id: string; brokerId?: string }): Promise<StoredPacket | null | undefined> {
    const record = await this.#track(this.inner.delWill(client));
    if (record === null || record === undefined) return record;
    return this.#open(record, 'W', client.id) ?? null;
  }

  streamWill(brokers?: Record<string, number>): Readable {
    return this.#mapStream(this.inner.streamWill(brokers), (r) => this.#open(r, 'W', r.clientId));
  }

  /**
   * Let writes in flight land first: Aedes acknowledges a QoS 1 PUBLISH before storing it, and
   * aedes-persistence-redis drops its connection at once on destroy, so a message acknowledged just
   * before a clean shutdown would otherwise be lost. A write can start another (retained, then the
   * offline queues): wait until nothing has been pending for two turns of the event loop, 5 s at most.
   */
  async destroy(): Promise<void> {
    this.atRest?.clear(); // in-heap records go with the store
    const deadline = Date.now() + 5000;
    for (let quiet = 0; quiet < 2 && Date.now() < deadline; ) {
      if (this.#pending > 0) {
        quiet = 0;
        await new Promise((r) => setTimeout(r, 5));
      } else {
        quiet++;
        await new Promise((r) => setImmediate(r));
      }
    }
    try {
      await this.inner.destroy();
    } finally {
      await this.#opts.afterDestroy?.().catch(noop);
    }
  }
}
