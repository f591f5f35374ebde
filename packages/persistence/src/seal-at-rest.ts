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
 * The bookkeeping is in the held buffer itself, in the bytes its envelope header will overwrite
 * (no Map, no object per record): a state byte (never an envelope's magic), this instance's tag,
 * how many queues still hold the record, and its place in the timer's list. A buffer released by
 * every queue leaves that list at once and is reused for a later record of the same length, so a
 * busy store whose records are acknowledged in time allocates no buffers either. Readers get a
 * copy of a held record's plaintext, never a view: the buffer is overwritten with the envelope
 * when it is sealed, or reused.
 */
import { randomBytes } from 'node:crypto';
import type { PacketCipher } from './records.js';
import { HEADER_BYTES, OVERHEAD } from './seal.js';

/** Most records waiting for their seal; beyond it the oldest are sealed at once. */
const MAX_PENDING = 10_000;
/** Most bytes of released buffers kept for reuse. */
const MAX_SPARE_BYTES = 1 << 20;

// header bytes of a held buffer (HEADER_BYTES of them are free until the envelope is written)
const HELD = 0; // state byte: held, waiting for its seal (an envelope starts with MAGIC)
const TAG_AT = 1; // 4 bytes: this instance's tag, so a stray buffer starting with 0 is not taken for one
const REFS_AT = 5; // 4 bytes: queues still holding the record
const SEQ_AT = 9; // 8 bytes: its sequence number in the timer's list

/** The plaintext inside a held buffer: where the envelope's ciphertext will be (a view). */
function heldPlaintext(buf: Buffer): Buffer {
  return buf.subarray(HEADER_BYTES, buf.length - (OVERHEAD - HEADER_BYTES));
}

export class SealAtRest {
  readonly after: number;
  readonly #cipher: PacketCipher;
  /** Told when every queue released a buffer (it may be reused from then on), with the broker counter it was held for. */
  readonly #onRetire: ((buf: Buffer, counter: number) => void) | undefined;
  readonly #tag = randomBytes(4).readUInt32LE(0);
  // the held records, oldest first, in parallel arrays (null: released); #bufs[i] has sequence number #base + i
  #bufs: Array<Buffer | null> = [];
  #base = 0;
  #topics: string[] = [];
  #counters: number[] = [];
  #head = 0;
  /** Queue length at the previous timer run: what lies before it has rested at least `after` ms. */
  #rested = 0;
  /** Released buffers by length, ready for reuse. */
  readonly #spare = new Map<number, Buffer[]>();
  #spareBytes = 0;
  #held = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Records sealed at rest, records released before they needed a seal, and buffers reused. */
  sealed = 0;
  skipped = 0;
  reused = 0;

  constructor(cipher: PacketCipher, after: number, onRetire?: (buf: Buffer, counter: number) => void) {
    this.#cipher = cipher;
    this.after = after;
    this.#onRetire = onRetire;
  }

  /** Records waiting for their seal. */
  get pending(): number {
    return this.#held;
  }

  /** The buffer to store for `payload` (message `counter`) queued under `topic` for `refs` subscribers: sealed in place later. */
  hold(payload: Buffer, topic: string, refs: number, counter: number): Buffer {
    const size = OVERHEAD + payload.length;
    let buf = this.#spare.get(size)?.pop();
    if (buf === undefined) buf = Buffer.allocUnsafe(size);
    else {
      this.#spareBytes -= size;
      this.reused++;
    }
    buf[0] = HELD;
    buf.writeUInt32LE(this.#tag, TAG_AT);
    buf.writeUInt32LE(refs, REFS_AT);
    buf.writeDoubleLE(this.#base + this.#bufs.length, SEQ_AT);
    buf.set(payload, HEADER_BYTES);
    this.#bufs.push(buf);
    this.#topics.push(topic);
    this.#counters.push(counter);
    if (++this.#held > MAX_PENDING) this.#seal(this.#bufs.length, this.#held - MAX_PENDING);
    this.#timer ??= setInterval(this.#tick, this.after).unref();
    return buf;
  }

  #isOurs(buf: unknown, state: number): buf is Buffer {
    return Buffer.isBuffer(buf) && buf.length >= OVERHEAD && buf[0] === state && buf.readUInt32LE(TAG_AT) === this.#tag;
  }

  /** A copy of the plaintext of a record still waiting for its seal, or undefined (sealed, or not one of ours). */
  plaintext(buf: unknown): Buffer | undefined {
    return this.#isOurs(buf, HELD) ? Buffer.from(heldPlaintext(buf)) : undefined;
  }

  /** A queue no longer holds the record stored with `buf` (acknowledged, or replaced). */
  released(buf: unknown): void {
    if (!this.#isOurs(buf, HELD)) return;
    const refs = buf.readUInt32LE(REFS_AT) - 1;
    if (refs > 0) {
      buf.writeUInt32LE(refs, REFS_AT);
      return;
    }
    const i = buf.readDoubleLE(SEQ_AT) - this.#base;
    if (this.#bufs[i] !== buf) return; // not in the list (cleared with the store)
    this.#bufs[i] = null;
    this.#held--;
    this.skipped++;
    this.#onRetire?.(buf, this.#counters[i] as number);
    buf.fill(0); // its plaintext does not linger in the heap
    if (this.#spareBytes + buf.length > MAX_SPARE_BYTES) return;
    let list = this.#spare.get(buf.length);
    if (list === undefined) this.#spare.set(buf.length, (list = []));
    list.push(buf);
    this.#spareBytes += buf.length;
  }

  /** Forget every pending record (the store is being destroyed with them). */
  clear(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#base += this.#bufs.length;
    this.#bufs = [];
    this.#topics = [];
    this.#counters = [];
    this.#head = 0;
    this.#rested = 0;
    this.#held = 0;
    this.#spare.clear();
    this.#spareBytes = 0;
  }

  readonly #tick = (): void => {
    this.#seal(this.#rested, Number.POSITIVE_INFINITY);
    this.#rested = this.#bufs.length;
    if (this.#head >= this.#bufs.length) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  };

  /** Seal, oldest first, the held records before index `until` — at most `limit` of them. */
  #seal(until: number, limit: number): void {
    const bufs = this.#bufs;
    let n = 0;
    while (this.#head < until && n < limit) {
      const i = this.#head++;
      const buf = bufs[i];
      if (buf === null || buf === undefined) continue; // released before it needed a seal
      bufs[i] = null;
      const envelope = this.#cipher.sealer.seal(heldPlaintext(buf), { kind: 'O', clientId: undefined, topic: this.#topics[i] as string });
      envelope.copy(buf, 0); // same length: the plaintext is overwritten by its envelope
      this.#held--;
      this.sealed++;
      n++;
    }
    if (this.#head > 1024 && this.#head * 2 > bufs.length) {
      this.#bufs = bufs.slice(this.#head);
      this.#topics = this.#topics.slice(this.#head);
      this.#counters = this.#counters.slice(this.#head);
      this.#base += this.#head;
      this.#rested = Math.max(0, this.#rested - this.#head);
      this.#head = 0;
    }
  }
}
