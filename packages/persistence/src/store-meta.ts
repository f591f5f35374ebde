/**
 * What a Redis store says about itself, checked at every start so a wrong or missing key fails
 * closed with a clear error instead of serving records that do not open (PR.SS-6, RC.RP-7):
 *
 *   bastion-meta      hash  { format: 1, encrypted: 1 | 0 }
 *   bastion-keyids    set   ids of the keys that may have sealed records in this store
 *   bastion-keycheck  hash  key id → a known text sealed with that key
 */
import type { Redis } from 'ioredis';
import { BastionError } from '@bastion/core';
import type { Keyring } from './keys.js';
import { scanKeys } from './redis.js';
import { Sealer } from './seal.js';
import type { Context } from './seal.js';

export const META_KEY = 'bastion-meta';
export const KEYIDS_KEY = 'bastion-keyids';
export const KEYCHECK_KEY = 'bastion-keycheck';
export const META_KEYS: readonly string[] = [META_KEY, KEYIDS_KEY, KEYCHECK_KEY];

const CHECK_TEXT = Buffer.from('bastion persistence key check v1');
const CHECK_CTX: Context = { kind: 'K', topic: 'key-check' };

/** True when the store holds anything besides Bastion's own metadata. */
export async function hasRecords(db: Redis, prefix: string): Promise<boolean> {
  for await (const key of scanKeys(db, prefix)) if (!META_KEYS.includes(key)) return true;
  return false;
}

function keyError(message: string): BastionError {
  return new BastionError('BASTION_ERR_PERSISTENCE_KEY', message);
}

function plaintextError(): BastionError {
  return new BastionError(
    'BASTION_ERR_PERSISTENCE_PLAINTEXT',
    'the Redis store holds unencrypted records while persistence.encryption is set: encrypt them first with `bastion keys rotate --profile <file>` (with the broker stopped)',
  );
}

/**
 * Check the store against the keyring (undefined = encryption off) and record the current key.
 * Throws BASTION_ERR_PERSISTENCE_KEY or BASTION_ERR_PERSISTENCE_PLAINTEXT.
 */
export async function checkStore(db: Redis, prefix: string, keyring: Keyring | undefined): Promise<void> {
  let encrypted = await db.hget(META_KEY, 'encrypted');
  if (encrypted === null) {
    // a fresh store, or one written before Bastion kept metadata
    const claim = keyring ? '1' : '0';
    if (keyring && (await hasRecords(db, prefix))) throw plaintextError();
    await db.hsetnx(META_KEY, 'format', '1');
    await db.hsetnx(META_KEY, 'encrypted', claim);
    encrypted = await db.hget(META_KEY, 'encrypted'); // another node may have claimed it first
  }
  if (encrypted === '0') {
    if (keyring) throw plaintextError();
    return;
  }
  if (!keyring) {
    throw keyError('the Redis store is encrypted but persistence.encryption is not set: configure the keys it was sealed with');
  }
  const sealer = new Sealer(keyring, 'records');
  const used = await db.smembers(KEYIDS_KEY);
  const missing = used.filter((id) => !keyring.byId(id));
  if (missing.length > 0) {
    throw keyError(
      `the Redis store holds records sealed with key${missing.length > 1 ? 's' : ''} ${missing.join(', ')}, which ${missing.length > 1 ? 'are' : 'is'} not among the configured keys (${keyring.ids.join(', ')}): add the missing key to persistence.encryption.keys`,
    );
  }
  const checks = await db.hgetallBuffer(KEYCHECK_KEY);
  for (const id of used) {
    const sealed = checks[id];
    if (sealed === undefined) continue;
    const plain = sealer.open(sealed, CHECK_CTX);
    if (!plain?.equals(CHECK_TEXT)) throw keyError(`the configured key ${id} is not the key this store was sealed with (its key check does not open)`);
  }
  const current = keyring.current;
  if (!used.includes(current.id)) {
    await db.hset(KEYCHECK_KEY, current.id, sealer.seal(CHECK_TEXT, CHECK_CTX));
    await db.sadd(KEYIDS_KEY, current.id);
  }
}

/** After a rotation that left no record on another key: only the current key is in use. */
export async function pruneKeyIds(db: Redis, keyring: Keyring): Promise<string[]> {
  const used = await db.smembers(KEYIDS_KEY);
  const old = used.filter((id) => id !== keyring.current.id);
  if (old.length > 0) {
    await db.srem(KEYIDS_KEY, ...old);
    await db.hdel(KEYCHECK_KEY, ...old);
  }
  return old;
}

/** Mark a store as encrypted with the current key (after `keys rotate` sealed a plaintext store). */
export async function markEncrypted(db: Redis, keyring: Keyring): Promise<void> {
  const sealer = new Sealer(keyring, 'records');
  await db.hset(META_KEY, 'format', '1', 'encrypted', '1');
  await db.hset(KEYCHECK_KEY, keyring.current.id, sealer.seal(CHECK_TEXT, CHECK_CTX));
  await db.sadd(KEYIDS_KEY, keyring.current.id);
}
