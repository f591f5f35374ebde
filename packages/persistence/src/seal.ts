/**
 * AES-256-GCM envelopes (PR.SS-6). One envelope:
 *
 *   magic 0xB5 | version 1 | flags | key id (4) | nonce (12) | ciphertext | tag (16)
 *
 * The header (first 19 bytes) and a context — what the sealed bytes belong to: a kind letter, a
 * client id and a topic — are authenticated as associated data, so an envelope cannot be moved to
 * another topic, another client's queue or another kind of record, nor have its key id swapped.
 * Every envelope gets a fresh random 96-bit nonce (drawn from a pooled CSPRNG buffer).
 */
import { createCipheriv, createDecipheriv, randomFillSync } from 'node:crypto';
import type { KeyPurpose, Keyring, PersistenceKey } from './keys.js';
import { KEY_ID_BYTES } from './keys.js';

export const MAGIC = 0xb5;
export const VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const HEADER_BYTES = 3 + KEY_ID_BYTES + NONCE_BYTES;
export const OVERHEAD = HEADER_BYTES + TAG_BYTES;

/** What an envelope is: R retained, O queued for delivery, I incoming QoS 2, W will, M cluster message, S state message, B backup chunk, K key check. */
export type SealKind = 'R' | 'O' | 'I' | 'W' | 'M' | 'S' | 'B' | 'K';

/** Why an envelope was refused. */
export type OpenFailure = 'not-sealed' | 'unknown-key' | 'forged';

export interface Context {
  kind: SealKind;
  clientId?: string | undefined;
  topic?: string | undefined;
  /** More bound numbers (cluster traffic: broker counter, QoS and flags), written without building strings. */
  counter?: number | undefined;
  bits?: number | undefined;
}

/** True when `data` looks like an envelope (it may still be refused when opened). */
export function isSealed(data: unknown): data is Buffer {
  return Buffer.isBuffer(data) && data.length >= OVERHEAD && data[0] === MAGIC && data[1] === VERSION;
}

/** The key id (hex) an envelope names, or undefined when it is not one. */
export function sealedKeyId(data: unknown): string | undefined {
  return isSealed(data) ? data.subarray(3, 3 + KEY_ID_BYTES).toString('hex') : undefined;
}

const NONCE_POOL_SIZE = NONCE_BYTES * 1024;

export class Sealer {
  readonly keyring: Keyring;
  readonly purpose: KeyPurpose;
  /** Why the last `open` returned undefined, and the key id it named. */
  failure: OpenFailure | undefined;
  failureKeyId: string | undefined;
  #pool = Buffer.alloc(0);
  #poolAt = 0;
  /** Header then context, contiguous: one setAAD call (scratch, reused; setAAD copies at once). */
  #aad = Buffer.allocUnsafe(512);
  readonly #iv = Buffer.allocUnsafe(NONCE_BYTES);

  constructor(keyring: Keyring, purpose: KeyPurpose) {
    this.keyring = keyring;
    this.purpose = purpose;
  }

  get currentKeyId(): string {
    return this.keyring.current.id;
  }

  /** A fresh nonce into #iv. */
  #nonce(): void {
    if (this.#poolAt + NONCE_BYTES > this.#pool.length) {
      if (this.#pool.length === 0) this.#pool = Buffer.allocUnsafe(NONCE_POOL_SIZE);
      randomFillSync(this.#pool);
      this.#poolAt = 0;
    }
    this.#pool.copy(this.#iv, 0, this.#poolAt, this.#poolAt + NONCE_BYTES);
    this.#poolAt += NONCE_BYTES;
  }

  /** Write the context after the header already in #aad; returns the associated data's length. */
  #context(ctx: Context): number {
    const client = ctx.clientId ?? '';
    const topic = ctx.topic ?? '';
    const need = HEADER_BYTES + 3 + Buffer.byteLength(client) + Buffer.byteLength(topic) + 9;
    if (need > this.#aad.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, this.#aad.length * 2));
      this.#aad.copy(bigger, 0, 0, HEADER_BYTES);
      this.#aad = bigger;
    }
    const b = this.#aad;
    const at = HEADER_BYTES;
    b[at] = ctx.kind.charCodeAt(0);
    const n = b.write(client, at + 3);
    b.writeUInt16BE(n, at + 1); // length-prefixed: "a" + "b/c" never equals "a/b" + "c"
    const m = b.write(topic, at + 3 + n);
    let end = at + 3 + n + m;
    if (ctx.counter !== undefined) {
      b.writeDoubleBE(ctx.counter, end);
      b[end + 8] = (ctx.bits ?? 0) & 0xff;
      end += 9;
    }
    return end;
  }

  /** Seal `plaintext` for `ctx` with the current key. */
  seal(plaintext: Buffer, ctx: Context, flags = 0, key: PersistenceKey = this.keyring.current): Buffer {
    this.#nonce();
    const h = this.#aad;
    h[0] = MAGIC;
    h[1] = VERSION;
    h[2] = flags;
    key.idBytes.copy(h, 3);
    this.#iv.copy(h, 3 + KEY_ID_BYTES);
    const aadLength = this.#context(ctx);
    const cipher = createCipheriv('aes-256-gcm', key.subkeys[this.purpose], this.#iv);
    cipher.setAAD(this.#aad.subarray(0, aadLength));
    const ct = cipher.update(plaintext);
    cipher.final(); // GCM produces no trailing bytes
    const tag = cipher.getAuthTag();
    const out = Buffer.allocUnsafe(HEADER_BYTES + ct.length + TAG_BYTES);
    this.#aad.copy(out, 0, 0, HEADER_BYTES);
    ct.copy(out, HEADER_BYTES);
    tag.copy(out, HEADER_BYTES + ct.length);
    return out;
  }

  /** The plaintext, or undefined (see `failure`) when the envelope is not one, names an unknown key, or does not authenticate for `ctx`. */
  open(envelope: unknown, ctx: Context): Buffer | undefined {
    this.failure = undefined;
    this.failureKeyId = undefined;
    if (!isSealed(envelope)) {
      this.failure = 'not-sealed';
      return undefined;
    }
    const key = this.keyring.byNumber(envelope.readUInt32BE(3));
    if (!key) {
      this.failure = 'unknown-key';
      this.failureKeyId = envelope.subarray(3, 3 + KEY_ID_BYTES).toString('hex');
      return undefined;
    }
    try {
      envelope.copy(this.#aad, 0, 0, HEADER_BYTES);
      envelope.copy(this.#iv, 0, 3 + KEY_ID_BYTES, HEADER_BYTES);
      const aadLength = this.#context(ctx);
      const decipher = createDecipheriv('aes-256-gcm', key.subkeys[this.purpose], this.#iv);
      decipher.setAAD(this.#aad.subarray(0, aadLength));
      decipher.setAuthTag(envelope.subarray(envelope.length - TAG_BYTES));
      const pt = decipher.update(envelope.subarray(HEADER_BYTES, envelope.length - TAG_BYTES));
      decipher.final(); // throws when the tag does not verify
      return pt;
    } catch {
      this.failure = 'forged';
      this.failureKeyId = key.id;
      return undefined;
    }
  }

  /** The flags byte of an envelope (valid only for one that opened). */
  static flags(envelope: Buffer): number {
    return envelope[2] ?? 0;
  }
}
