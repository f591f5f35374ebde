/**
 * `bastion keys rotate` (RC.RP-7): re-seal every stored payload of a Redis store with the current
 * (first) key, so older keys can be retired. Also encrypts a store that was written unencrypted.
 *
 * Each record is replaced only if it is still what was read (compare-and-set in one Lua call), so
 * running it beside live brokers never resurrects a record they deleted meanwhile. A record sealed
 * with a key that is not configured, or that does not open, is left as it is and reported. Old key
 * ids are forgotten only when a final pass finds no record left on them.
 */
import type { Redis } from 'ioredis';
import { BastionError } from '@bastion/core';
import type { Keyring } from './keys.js';
import { PacketCipher } from './records.js';
import type { StoredPacket } from './records.js';
import { decodeRecord, encodeRecord, payloadLocation } from './redis-layout.js';
import type { PayloadLocation } from './redis-layout.js';
import { scanKeys } from './redis.js';
import { Sealer, isSealed, sealedKeyId } from './seal.js';
import { META_KEY, markEncrypted, pruneKeyIds } from './store-meta.js';

export interface RotateProblem {
  key: string;
  field?: string;
  reason: string;
}

export interface RotateResult {
  /** Records looked at. */
  records: number;
  /** Re-sealed with the current key (or sealed for the first time). */
  resealed: number;
  /** Changed by a broker while being rotated: left to the broker (it writes with its own current key). */
  skippedChanged: number;
  problems: RotateProblem[];
  /** Key ids no longer in use after the rotation. */
  retiredKeyIds: string[];
  /** The store was unencrypted and now is. */
  encryptedNow: boolean;
}

const CAS_STRING = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1`;
const CAS_HASH = `
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1`;

type Visit = (key: string, field: string | undefined, loc: PayloadLocation, buf: Buffer, record: StoredPacket) => Promise<void>;

/** Every stored payload record of the store. */
async function eachRecord(db: Redis, prefix: string, visit: Visit): Promise<void> {
  for await (const key of scanKeys(db, prefix)) {
    const loc = payloadLocation(key);
    if (!loc) continue;
    const type = await db.type(key);
    if (type !== loc.type) continue;
    if (type === 'string') {
      const buf = await db.getBuffer(key);
      const record = buf ? decodeRecord(buf) : undefined;
      if (buf && record) await visit(key, undefined, loc, buf, record);
    } else {
      const all = await db.hgetallBuffer(key);
      for (const [field, buf] of Object.entries(all)) {
        const record = decodeRecord(buf);
        if (record) await visit(key, field, loc, buf, record);
      }
    }
  }
}

function hasPayload(r: StoredPacket): boolean {
  return (r.cmd === undefined || r.cmd === 'publish') && r.payload !== undefined && r.payload !== null && r.payload.length > 0;
}

export async function rotateStore(db: Redis, prefix: string, keyring: Keyring): Promise<RotateResult> {
  const mode = await db.hget(META_KEY, 'encrypted');
  const migrating = mode !== '1';
  const cipher = new PacketCipher(new Sealer(keyring, 'records'));
  const current = keyring.current.id;
  const result: RotateResult = { records: 0, resealed: 0, skippedChanged: 0, problems: [], retiredKeyIds: [], encryptedNow: false };

  await eachRecord(db, prefix, async (key, field, loc, buf, record) => {
    if (!hasPayload(record)) return;
    result.records++;
    let plain: StoredPacket | undefined;
    if (migrating) {
      if (isSealed(record.payload) && keyring.byId(sealedKeyId(record.payload) ?? '')) {
        // sealed already (a rotation that was interrupted): open it like any other
        plain = cipher.open(record, loc.kind, loc.clientId ?? record.clientId);
      } else plain = record;
    } else {
      if (!isSealed(record.payload)) {
        result.problems.push({ key, ...(field === undefined ? {} : { field }), reason: 'not sealed in an encrypted store' });
        return;
      }
      if (sealedKeyId(record.payload) === current) return;
      plain = cipher.open(record, loc.kind, loc.clientId ?? record.clientId);
    }
    if (plain === undefined) {
      const s = cipher.sealer;
      result.problems.push({ key, ...(field === undefined ? {} : { field }), reason: s.failure === 'unknown-key' ? `sealed with key ${s.failureKeyId}, which is not configured` : 'does not open (altered or moved)' });
      return;
    }
    const next = encodeRecord(cipher.seal(plain, loc.kind, loc.clientId ?? record.clientId));
    const done = field === undefined ? await db.eval(CAS_STRING, 1, key, buf, next) : await db.eval(CAS_HASH, 1, key, field, buf, next);
    if (Number(done) === 1) result.resealed++;
    else result.skippedChanged++;
  });

  if (migrating) {
    if (result.problems.length > 0) throw new BastionError('BASTION_ERR_PERSISTENCE_KEY', `could not seal ${result.problems.length} record(s); the store stays marked unencrypted`);
    await markEncrypted(db, keyring);
    result.encryptedNow = true;
  }

  // retire old key ids only when nothing is left on them
  let left = 0;
  await eachRecord(db, prefix, async (_key, _field, _loc, _buf, record) => {
    if (hasPayload(record) && sealedKeyId(record.payload) !== current) left++;
  });
  if (left === 0) result.retiredKeyIds = await pruneKeyIds(db, keyring);
  return result;
}
