/**
 * Backup and restore of a Redis store (RC.RP-8): a logical snapshot of every key under the store's
 * prefix — sessions, subscriptions, queues, retained messages, wills, Bastion's key metadata —
 * written as an encrypted file, and loaded back into an empty store (any prefix, any Redis).
 *
 * File: one JSON header line (format, version, key id, entry count — nothing secret), then frames
 * of [u32 length][envelope]. Each envelope seals up to ~1 MiB of entries with the backup subkey of
 * the current key; its associated data binds the header (by hash), the frame's index and whether
 * it is the last one, so frames cannot be reordered, dropped, spliced from another backup or the
 * file cut short without the restore noticing. Restore reads the whole file once to verify it
 * before writing anything, so a damaged file never leaves a half-restored store.
 *
 * Payloads inside stay sealed with the store keys as they were: the restoring profile needs those
 * keys (as the broker start checks) and the backup key.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import { BastionError } from '@bastion/core';
import type { Keyring } from './keys.js';
import { scanKeys } from './redis.js';
import { Sealer } from './seal.js';
import type { Context } from './seal.js';

const require = createRequire(import.meta.url);
const msgpack = require('msgpack-lite') as { encode(value: unknown): Buffer; decode(buf: Buffer): unknown };

export const BACKUP_FORMAT = 'bastion-backup';
const CHUNK_BYTES = 1024 * 1024;
const MAX_FRAME = 64 * 1024 * 1024;

export interface BackupHeader {
  format: typeof BACKUP_FORMAT;
  version: 1;
  created: string;
  /** The key whose backup subkey sealed the file. */
  keyId: string;
  /** Random per file (frames of another file do not open here). */
  fileId: string;
  entries: number;
}

type RedisType = 'string' | 'hash' | 'list' | 'set' | 'zset';
/** One key: name (without prefix), type, remaining ms to live (-1: none), value. */
type Entry = [string, RedisType, number, unknown];

export type Progress = (done: number, total: number) => void;

/** What a frame is bound to: this file (id and key), its place, and whether it is the last. */
function frameContext(header: Pick<BackupHeader, 'fileId' | 'keyId'>, index: number, final: boolean): Context {
  return { kind: 'B', clientId: `${header.fileId}:${header.keyId}`, topic: `${index}:${final ? 1 : 0}` };
}

const HEADER_BYTES = 256;

/** The header line, padded to a fixed width so it can be rewritten with the final count. */
function headerLine(h: BackupHeader): Buffer {
  const text = JSON.stringify(h);
  if (text.length > HEADER_BYTES - 1) throw new BastionError('BASTION_ERR_BACKUP', 'backup header too long');
  return Buffer.from(text.padEnd(HEADER_BYTES - 1, ' ') + '\n');
}

async function readEntry(db: Redis, key: string): Promise<Entry | undefined> {
  const type = (await db.type(key)) as RedisType | 'none';
  if (type === 'none') return undefined; // gone since the scan
  const ttl = await db.pttl(key);
  let value: unknown;
  if (type === 'string') value = await db.getBuffer(key);
  else if (type === 'hash') value = Object.entries(await db.hgetallBuffer(key));
  else if (type === 'list') value = await db.lrangeBuffer(key, 0, -1);
  else if (type === 'set') value = await db.smembersBuffer(key);
  else if (type === 'zset') {
    const flat = await db.zrangeBuffer(key, 0, -1, 'WITHSCORES');
    const pairs: Array<[Buffer, string]> = [];
    for (let i = 0; i + 1 < flat.length; i += 2) pairs.push([flat[i] as Buffer, (flat[i + 1] as Buffer).toString()]);
    value = pairs;
  } else throw new BastionError('BASTION_ERR_BACKUP', `cannot back up ${key}: Redis type ${type} is not supported`);
  if (value === null) return undefined;
  return [key, type, ttl > 0 ? ttl : -1, value];
}

/**
 * Write an encrypted snapshot of the store under `prefix` to `file` (mode 0600, atomically).
 * Taken while brokers run, it is a consistent copy of each key, not of the whole store at one instant.
 */
export async function writeBackup(db: Redis, prefix: string, keyring: Keyring, file: string, onProgress?: Progress): Promise<{ entries: number; bytes: number }> {
  const keys: string[] = [];
  for await (const k of scanKeys(db, prefix)) keys.push(k);
  const sealer = new Sealer(keyring, 'backup');
  const header: BackupHeader = { format: BACKUP_FORMAT, version: 1, created: new Date().toISOString(), keyId: keyring.current.id, fileId: randomBytes(16).toString('hex'), entries: keys.length };
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  let at = HEADER_BYTES;
  let entries = 0;
  try {
    await fh.chmod(0o600); // the umask filters the create mode; make it exact
    let index = 0;
    let parts: Buffer[] = [];
    let size = 0;
    const flush = async (final: boolean) => {
      // every frame starts with the running entry count (this frame's included): a restore checks it frame by frame
      const count = Buffer.allocUnsafe(4);
      count.writeUInt32BE(entries, 0);
      const env = sealer.seal(Buffer.concat([count, ...parts]), frameContext(header, index++, final));
      parts = [];
      size = 0;
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32BE(env.length, 0);
      await fh.write(len, 0, 4, at);
      await fh.write(env, 0, env.length, at + 4);
      at += 4 + env.length;
    };
    let done = 0;
    for (const key of keys) {
      const entry = await readEntry(db, key);
      done++;
      if (entry) {
        const enc = msgpack.encode(entry);
        const len = Buffer.allocUnsafe(4);
        len.writeUInt32BE(enc.length, 0);
        parts.push(len, enc);
        size += 4 + enc.length;
        entries++;
        if (size >= CHUNK_BYTES) await flush(false);
      }
      onProgress?.(done, keys.length);
    }
    await flush(true);
    header.entries = entries; // keys that vanished since the scan (a running broker) are not counted
    const line = headerLine(header);
    await fh.write(line, 0, line.length, 0);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  await rename(tmp, file);
  return { entries, bytes: at };
}

interface Frames {
  header: BackupHeader;
  /** Each frame's entries, verified, in order. */
  frames(): AsyncGenerator<Entry[]>;
  close(): Promise<void>;
}

async function openBackup(file: string, keyring: Keyring): Promise<Frames> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    throw new BastionError('BASTION_ERR_BACKUP', `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  const damaged = (why: string) => new BastionError('BASTION_ERR_BACKUP', `${file} is not an intact Bastion backup: ${why}`);
  try {
    const first = Buffer.alloc(HEADER_BYTES);
    const { bytesRead } = await fh.read(first, 0, HEADER_BYTES, 0);
    if (bytesRead < HEADER_BYTES || first[HEADER_BYTES - 1] !== 0x0a) throw damaged('no header');
    let header: BackupHeader;
    try {
      header = JSON.parse(first.subarray(0, HEADER_BYTES - 1).toString('utf8')) as BackupHeader;
    } catch {
      throw damaged('unreadable header');
    }
    if (header.format !== BACKUP_FORMAT || header.version !== 1) throw damaged(`unknown format ${String(header.format)} v${String(header.version)}`);
    if (typeof header.fileId !== 'string' || typeof header.keyId !== 'string' || typeof header.entries !== 'number') throw damaged('incomplete header');
    const key = keyring.byId(header.keyId);
    if (!key) throw new BastionError('BASTION_ERR_PERSISTENCE_KEY', `${file} is sealed with key ${header.keyId}, which is not among the configured keys (${keyring.ids.join(', ')})`);
    const sealer = new Sealer(keyring, 'backup');
    const handle = fh;
    async function* frames(): AsyncGenerator<Entry[]> {
      let at = HEADER_BYTES;
      let index = 0;
      let final = false;
      let total = 0;
      const len = Buffer.alloc(4);
      while (!final) {
        const r = await handle.read(len, 0, 4, at);
        if (r.bytesRead === 0) throw damaged('it ends before its last frame (cut short?)');
        if (r.bytesRead < 4) throw damaged('a truncated frame');
        const n = len.readUInt32BE(0);
        if (n > MAX_FRAME) throw damaged('an impossible frame length');
        const env = Buffer.alloc(n);
        const got = await handle.read(env, 0, n, at + 4);
        if (got.bytesRead < n) throw damaged('a truncated frame');
        at += 4 + n;
        // the last frame says so in its associated data: try "not last", then "last"
        let plain = sealer.open(env, frameContext(header, index, false));
        if (plain === undefined) {
          plain = sealer.open(env, frameContext(header, index, true));
          if (plain === undefined) throw damaged(`frame ${index} does not open (altered, reordered or from another file)`);
          final = true;
        }
        index++;
        if (plain.length < 4) throw damaged(`frame ${index - 1} is empty`);
        const entries: Entry[] = [];
        for (let i = 4; i < plain.length; ) {
          const m = plain.readUInt32BE(i);
          entries.push(msgpack.decode(plain.subarray(i + 4, i + 4 + m)) as Entry);
          i += 4 + m;
        }
        total += entries.length;
        if (plain.readUInt32BE(0) !== total) throw damaged(`frame ${index - 1} is out of sequence`);
        if (final && total !== header.entries) throw damaged(`it holds ${total} entries where its header says ${header.entries}`);
        yield entries;
      }
      const extra = await handle.read(len, 0, 1, at);
      if (extra.bytesRead > 0) throw damaged('bytes after its last frame');
    }
    return { header, frames, close: () => fh.close() };
  } catch (err) {
    await fh.close().catch(() => undefined);
    throw err;
  }
}

/** Read and verify a whole backup file without writing anything; returns its header. */
export async function verifyBackup(file: string, keyring: Keyring): Promise<BackupHeader> {
  const b = await openBackup(file, keyring);
  try {
    for await (const _ of b.frames()) {
      /* reading verifies */
    }
    return b.header;
  } finally {
    await b.close();
  }
}

/** Load a verified backup into an empty store under `prefix`. */
export async function restoreBackup(db: Redis, prefix: string, keyring: Keyring, file: string, onProgress?: Progress): Promise<{ entries: number }> {
  const header = await verifyBackup(file, keyring);
  for await (const _ of scanKeys(db, prefix)) {
    throw new BastionError('BASTION_ERR_RESTORE_NOT_EMPTY', `the target store (prefix "${prefix}") is not empty: restore loads into an empty store only`);
  }
  const b = await openBackup(file, keyring);
  let done = 0;
  try {
    for await (const entries of b.frames()) {
      const pipe = db.pipeline();
      for (const [key, type, ttl, value] of entries) {
        if (type === 'string') pipe.set(key, value as Buffer);
        else if (type === 'hash') {
          const pairs = value as Array<[string, Buffer]>;
          if (pairs.length > 0) pipe.hset(key, ...pairs.flat());
        } else if (type === 'list') {
          const items = value as Buffer[];
          if (items.length > 0) pipe.rpush(key, ...items);
        } else if (type === 'set') {
          const items = value as Buffer[];
          if (items.length > 0) pipe.sadd(key, ...items);
        } else if (type === 'zset') {
          const pairs = value as Array<[Buffer, string]>;
          if (pairs.length > 0) pipe.zadd(key, ...pairs.flatMap(([m, s]) => [s, m] as [string, Buffer]));
        }
        if (ttl > 0) pipe.pexpire(key, ttl);
      }
      const results = (await pipe.exec()) ?? [];
      const failed = results.find(([err]) => err);
      if (failed) throw new BastionError('BASTION_ERR_BACKUP', `restore failed writing to Redis: ${(failed[0] as Error).message}`);
      done += entries.length;
      onProgress?.(done, header.entries);
    }
  } finally {
    await b.close();
  }
  return { entries: done };
}
