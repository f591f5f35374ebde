/**
 * Persistence keys (PR.SS-6, RC.RP-7): 32-byte master keys from files or from the environment,
 * each known by a key id derived from the key itself, so a record names the key that sealed it and
 * a wrong key can never be mistaken for the right one.
 *
 * A master key is never used directly: HKDF-SHA256 derives one subkey per purpose (stored records,
 * cluster traffic, the cluster-state channel, backup files), so a message sealed for one purpose
 * cannot be replayed as another.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BastionError } from '@bastion/core';

export const KEY_BYTES = 32;
/** Bytes of a key id in every record. */
export const KEY_ID_BYTES = 4;

/** Where a key comes from: a file (32 raw bytes, or 64 hex characters, or base64), or the value itself (from `${env:NAME}`). */
export type KeySource = { readonly file: string } | { readonly value: string };

export type KeyPurpose = 'records' | 'cluster' | 'state' | 'backup';

export interface PersistenceKey {
  /** 8 lower-case hex characters: the first 4 bytes of HKDF(key, "bastion/v1/key-id"). */
  readonly id: string;
  /** The id as a number (the 4 bytes big-endian), for lookups without allocation. */
  readonly idNumber: number;
  /** The 4 id bytes written into every record. */
  readonly idBytes: Buffer;
  /** A subkey per purpose. */
  readonly subkeys: Readonly<Record<KeyPurpose, Buffer>>;
}

function derive(master: Buffer, info: string, length = KEY_BYTES): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), `bastion/v1/${info}`, length));
}

/** A key from its 32 bytes. */
export function keyFromBytes(master: Buffer): PersistenceKey {
  if (master.length !== KEY_BYTES) throw new BastionError('BASTION_ERR_PERSISTENCE_KEY', `a persistence key must be ${KEY_BYTES} bytes, got ${master.length}`);
  const idBytes = derive(master, 'key-id', KEY_ID_BYTES);
  return {
    id: idBytes.toString('hex'),
    idNumber: idBytes.readUInt32BE(0),
    idBytes,
    subkeys: {
      records: derive(master, 'records'),
      cluster: derive(master, 'cluster'),
      state: derive(master, 'state'),
      backup: derive(master, 'backup'),
    },
  };
}

/** 32 bytes from text: 64 hex characters or base64 (standard or url-safe). Undefined when it is neither. */
export function parseKeyText(text: string): Buffer | undefined {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(t)) {
    const b = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (b.length === KEY_BYTES) return b;
  }
  return undefined;
}

const FORMAT_HINT = `expected ${KEY_BYTES} raw bytes, or ${KEY_BYTES} bytes written as 64 hex characters or base64 (make one with \`bastion keys generate FILE\`)`;

async function loadKey(source: KeySource, index: number): Promise<PersistenceKey> {
  const where = `persistence.encryption.keys[${index}]`;
  if ('file' in source) {
    let data: Buffer;
    try {
      data = await readFile(source.file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new BastionError('BASTION_ERR_PERSISTENCE_KEY', `${where}: cannot read key file ${source.file} (${code})`, { cause: err });
    }
    const bytes = data.length === KEY_BYTES ? data : parseKeyText(data.toString('utf8'));
    if (!bytes) throw new BastionError('BASTION_ERR_PERSISTENCE_KEY', `${where}: key file ${source.file} is not a key: ${FORMAT_HINT}`);
    return keyFromBytes(bytes);
  }
  const bytes = parseKeyText(source.value);
  if (!bytes) throw new BastionError('BASTION_ERR_PERSISTENCE_KEY', `${where}: the value is not a key: ${FORMAT_HINT}`);
  return keyFromBytes(bytes);
}

/**
 * The keys in force: the first writes, all of them read. Rotation = put a new key first, keep the
 * old ones until `bastion keys rotate` has re-sealed everything with the new one.
 */
export class Keyring {
  readonly current: PersistenceKey;
  readonly keys: readonly PersistenceKey[];
  readonly #byNumber = new Map<number, PersistenceKey>();

  constructor(keys: readonly PersistenceKey[]) {
    const first = keys[0];
    if (!first) throw new BastionError('BASTION_ERR_PERSISTENCE_KEY', 'persistence encryption needs at least one key');
    this.current = first;
    this.keys = keys;
    for (const k of keys) {
      if (this.#byNumber.has(k.idNumber)) throw new BastionError('BASTION_ERR_PERSISTENCE_KEY', `the key ${k.id} is listed twice in persistence.encryption.keys`);
      this.#byNumber.set(k.idNumber, k);
    }
  }

  /** The key with this id number, if configured. */
  byNumber(idNumber: number): PersistenceKey | undefined {
    return this.#byNumber.get(idNumber);
  }

  byId(id: string): PersistenceKey | undefined {
    return /^[0-9a-f]{8}$/.test(id) ? this.#byNumber.get(Number.parseInt(id, 16)) : undefined;
  }

  get ids(): string[] {
    return this.keys.map((k) => k.id);
  }

  static async load(sources: readonly KeySource[]): Promise<Keyring> {
    if (sources.length === 0) throw new BastionError('BASTION_ERR_PERSISTENCE_KEY', 'persistence.encryption.keys is empty: give at least one key');
    const keys: PersistenceKey[] = [];
    for (const [i, s] of sources.entries()) keys.push(await loadKey(s, i));
    return new Keyring(keys);
  }

  static fromBytes(...masters: Buffer[]): Keyring {
    return new Keyring(masters.map(keyFromBytes));
  }
}

/**
 * Write a new random key file (32 raw bytes, mode 0600, never over an existing file) and return its id.
 * The file is written next to its target, then hard-linked into place, so a reader never sees half a key.
 */
export async function generateKeyFile(path: string): Promise<{ id: string }> {
  const bytes = randomBytes(KEY_BYTES);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.chmod(0o600); // the umask filters the create mode; make it exact
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    // link() fails if the target exists: a key is never replaced (losing it loses every record it sealed)
    await link(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new BastionError('BASTION_ERR_PERSISTENCE_KEY', `${path} already exists; a key file is never overwritten (losing a key loses what it sealed)`);
    }
    throw err;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  return { id: keyFromBytes(bytes).id };
}
