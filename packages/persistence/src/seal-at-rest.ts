/**
 * Sealing at rest, for a store that lives in the broker's own heap (the memory store). A queued
 * record is stored with a buffer the size of its envelope that holds the plaintext for now, and is
 * sealed in place once it has been at rest `after` to 2 × `after` ms (a timer every `after` ms
 * seals what was stored before its previous run: no clock read per record). A record removed
 * sooner — with subscribers online, nearly every QoS 1/2 message is queued, delivered and
 * acknowledged within milliseconds — is never sealed: its plaintext was in the same heap anyway,
 * in the packet being delivered.
 *
 * Why: one AES-256-GCM seal through Node's `createCipheriv` costs 10–15 µs of broker CPU plus its
 * garbage (a native cipher object and two buffers per call), which is most of the memory store's
 * whole path per message (~16 µs). A store outside the process (Redis) gets every record sealed
 * before it is written: this is only for stores whose records never leave the process.
 *
 * Readers get a copy of a pending record's plaintext, never a view: the buffer is overwritten with
 * the envelope when it is sealed.
 */
import type { PacketCipher } from './records.js';
import { HEADER_BYTES, OVERHEAD } from './seal.js';

/** Most records waiting for their seal; beyond it the oldest are sealed at once. */
const MAX_PENDING = 10_000;

interface Pending {
  readonly buf: Buffer;
  readonly topic: string;
  readonly length: number;
  /** The timer run after which it was stored. */
  readonly gen: number;
  /** Queues still holding the record (one record serves every subscriber it was queued for). */
  refs: number;
}

export class SealAtRest {
  readonly after: number;
  readonly #cipher: PacketCipher;
  readonly #byBuffer = new Map<Buffer, Pending>();
  #queue: Pending[] = [];
  #head = 0;
  #timer: NodeJS.Timeout | undefined;
  #gen = 0;
  /** Records sealed at rest, and records removed before they needed a seal. */
  sealed = 0;
  skipped = 0;

  constructor(cipher: PacketCipher, after: number) {
    this.#cipher = cipher;
    this.after = after;
  }

  /** Records waiting for their seal. */
  get pending(): number {
    return this.#byBuffer.size;
  }

  /** The buffer to store for `payload` queued under `topic` for `refs` subscribers: sealed in place later. */
  hold(payload: Buffer, topic: string, refs: number): Buffer {
    const buf = Buffer.allocUnsafe(OVERHEAD + payload.length);
    buf[0] = 0; // not an envelope's magic: isSealed() is false until it is sealed
    payload.copy(buf, HEADER_BYTES);
    const p: Pending = { buf, topic, length: payload.length, gen: this.#gen, refs };
    this.#byBuffer.set(buf, p);
    this.#queue.push(p);
    if (this.#byBuffer.size > MAX_PENDING) this.#seal(Number.POSITIVE_INFINITY, this.#byBuffer.size - MAX_PENDING);
    this.#timer ??= setInterval(this.#tick, this.after).unref();
    return buf;
  }

  /** A copy of the plaintext of a record still waiting for its seal, or undefined (sealed, or not one of ours). */
  plaintext(buf: unknown): Buffer | undefined {
    const p = Buffer.isBuffer(buf) ? this.#byBuffer.get(buf) : undefined;
    return p === undefined ? undefined : Buffer.from((buf as Buffer).subarray(HEADER_BYTES, HEADER_BYTES + p.length));
  }

  /** A queue no longer holds the record stored with `buf` (acknowledged, or replaced). */
  released(buf: unknown): void {
    const p = Buffer.isBuffer(buf) ? this.#byBuffer.get(buf) : undefined;
    if (p !== undefined && --p.refs <= 0) {
      this.#byBuffer.delete(buf as Buffer);
      this.skipped++;
    }
  }

  /** Forget every pending record (the store is being destroyed with them). */
  clear(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#byBuffer.clear();
    this.#queue = [];
    this.#head = 0;
  }

  readonly #tick = (): void => {
    // what was stored before the previous run has rested at least `after` ms
    this.#seal(this.#gen - 1, Number.POSITIVE_INFINITY);
    this.#gen++;
    if (this.#head >= this.#queue.length) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  };

  /** Seal, oldest first, the records stored up to timer run `until` — at most `limit` of them. */
  #seal(until: number, limit: number): void {
    const q = this.#queue;
    let n = 0;
    while (this.#head < q.length && n < limit) {
      const p = q[this.#head] as Pending;
      if (p.gen > until) break;
      this.#head++;
      if (this.#byBuffer.get(p.buf) !== p) continue; // removed before it needed a seal
      this.#byBuffer.delete(p.buf);
      const envelope = this.#cipher.sealer.seal(p.buf.subarray(HEADER_BYTES, HEADER_BYTES + p.length), { kind: 'O', clientId: undefined, topic: p.topic });
      envelope.copy(p.buf, 0); // same length: the plaintext is overwritten by its envelope
      this.sealed++;
      n++;
    }
    if (this.#head > 1024 && this.#head * 2 > q.length) {
      this.#queue = q.slice(this.#head);
      this.#head = 0;
    }
  }
}
