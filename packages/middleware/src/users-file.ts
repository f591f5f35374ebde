/**
 * The users file: one user per line, `username:hash[:group,group]`, '#' comments.
 * Two kinds of hash:
 * - a password: scrypt in PHC-like form, `$scrypt$ln=14,r=8,p=1$<salt b64>$<hash b64>`; the cost is
 *   stored per hash so it can be raised without invalidating existing users;
 * - a device token (a secret the broker generated: 32 random bytes, see generateDeviceToken):
 *   `$sha256$<salt b64>$<hash b64>`, SHA-256(salt ‖ token). A slow KDF protects guessable
 *   passwords from offline guessing; 256 random bits need no such protection, and a check costs a
 *   microsecond instead of ~40 ms of scrypt — what a fleet reconnecting to a restarted broker
 *   (nothing remembered yet) needs. Only generated tokens get this hash; a typed password never does.
 */
import { hash as sha, randomBytes, timingSafeEqual } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { BastionError } from '@bastion/core';
import { kdfPool, scryptHere } from './kdf-pool.js';

export interface UserRecord {
  readonly username: string;
  readonly hash: string;
  readonly groups: readonly string[];
}

export interface ScryptCost {
  /** log2 of N (CPU/memory cost). */
  readonly ln: number;
  readonly r: number;
  readonly p: number;
}

export const DEFAULT_COST: ScryptCost = { ln: 14, r: 8, p: 1 };
const KEY_LEN = 32;

export async function hashPassword(password: string | Buffer, cost: ScryptCost = DEFAULT_COST): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptHere(typeof password === 'string' ? Buffer.from(password) : password, salt, KEY_LEN, { N: 2 ** cost.ln, r: cost.r, p: cost.p });
  return `$scrypt$ln=${cost.ln},r=${cost.r},p=${cost.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Device tokens: 32 random bytes, base64url (43 characters). */
const TOKEN_BYTES = 32;
/** The shortest secret hashDeviceToken() takes: a token must not be something a person could guess. */
export const MIN_TOKEN_LENGTH = 32;

/** A new device token: 256 random bits, base64url. Shown once; only its hash is kept. */
export function generateDeviceToken(): string {
  return randomBytes(TOKEN_BYTES).toString('base64url');
}

/**
 * The users-file hash of a device token (`$sha256$…`). Refuses a secret shorter than 32
 * characters: this fast hash is only safe for secrets nobody can guess (use generateDeviceToken).
 */
export function hashDeviceToken(token: string): string {
  if (token.length < MIN_TOKEN_LENGTH) throw new RangeError(`a device token has at least ${MIN_TOKEN_LENGTH} characters (make one with generateDeviceToken()); a password gets hashPassword()`);
  const salt = randomBytes(16);
  return `$sha256$${salt.toString('base64')}$${sha('sha256', Buffer.concat([salt, Buffer.from(token)]), 'base64')}`;
}

type ParsedHash = { kind: 'scrypt'; cost: ScryptCost; salt: Buffer; key: Buffer } | { kind: 'token'; salt: Buffer; key: Buffer };

const HASH_RE = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;
const TOKEN_RE = /^\$sha256\$([A-Za-z0-9+/=]{16,})\$([A-Za-z0-9+/]{43}=)$/;

export function parseHash(hash: string): ParsedHash | undefined {
  const t = TOKEN_RE.exec(hash);
  if (t) return { kind: 'token', salt: Buffer.from(t[1] as string, 'base64'), key: Buffer.from(t[2] as string, 'base64') };
  const m = HASH_RE.exec(hash);
  if (!m) return undefined;
  const cost = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  if (cost.ln < 10 || cost.ln > 22) return undefined;
  return { kind: 'scrypt', cost, salt: Buffer.from(m[4] as string, 'base64'), key: Buffer.from(m[5] as string, 'base64') };
}

/** Is this a device-token hash (checked at once, without the KDF pool)? */
export function isDeviceTokenHash(hash: string): boolean {
  return hash.startsWith('$sha256$');
}

/** Constant-time, synchronous check of a device token against its `$sha256$` hash. */
export function verifyDeviceToken(hash: string, token: Buffer): boolean {
  const parsed = parseHash(hash);
  if (parsed?.kind !== 'token') return false;
  const key = sha('sha256', Buffer.concat([parsed.salt, token]), 'buffer');
  return timingSafeEqual(key, parsed.key);
}

/**
 * Constant-time check of a password against a stored hash: scrypt on the KDF pool's low-priority
 * threads (kdf-pool.ts), rejecting with KdfBusyError when too many checks are already waiting; a
 * device token at once.
 */
export async function verifyPassword(hash: string, password: Buffer | string): Promise<boolean> {
  const parsed = parseHash(hash);
  if (!parsed) return false;
  const secret = typeof password === 'string' ? Buffer.from(password) : password;
  if (parsed.kind === 'token') return verifyDeviceToken(hash, secret);
  const { ln, r, p } = parsed.cost;
  const key = await kdfPool().derive(secret, parsed.salt, KEY_LEN, { N: 2 ** ln, r, p });
  return key.length === parsed.key.length && timingSafeEqual(key, parsed.key);
}

const USERNAME_RE = /^[^\s:#][^\s:]*$/;

export function validateUsername(username: string): string | undefined {
  if (!USERNAME_RE.test(username)) return 'a username is one word without spaces or ":" and does not start with "#"';
  if (username.length > 256) return 'a username is at most 256 characters';
  return undefined;
}

export function parseUsersFile(text: string, file: string): Map<string, UserRecord> {
  const users = new Map<string, UserRecord>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '' || line.startsWith('#')) continue;
    const [username = '', hash = '', groups = ''] = line.split(':');
    const where = `${file}:${i + 1}`;
    if (validateUsername(username)) throw new BastionError('BASTION_ERR_USERS_FILE', `${where}: bad username "${username}"`);
    if (!parseHash(hash)) throw new BastionError('BASTION_ERR_USERS_FILE', `${where}: user "${username}" has no valid scrypt or device-token hash (use \`bastion passwd\` to set one)`);
    if (users.has(username)) throw new BastionError('BASTION_ERR_USERS_FILE', `${where}: user "${username}" appears twice`);
    users.set(username, { username, hash, groups: groups ? groups.split(',').filter(Boolean) : [] });
  }
  return users;
}

export function serializeUsers(users: Iterable<UserRecord>): string {
  const out = ['# Bastion users file: username:hash[:group,group] (scrypt for passwords, sha256 for generated device tokens). Edit with `bastion passwd`.'];
  for (const u of users) out.push(u.groups.length ? `${u.username}:${u.hash}:${u.groups.join(',')}` : `${u.username}:${u.hash}`);
  return out.join('\n') + '\n';
}

export async function readUsersFile(file: string): Promise<Map<string, UserRecord>> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new BastionError('BASTION_ERR_USERS_FILE', code === 'ENOENT' ? `users file not found: ${file}` : `cannot read users file ${file}: ${code}`, { cause: err });
  }
  return parseUsersFile(text, file);
}

/** Write atomically (temp file + rename) with mode 0600: the file holds password hashes. */
export async function writeUsersFile(file: string, users: Iterable<UserRecord>): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await fs.writeFile(tmp, serializeUsers(users), { mode: 0o600 });
  await fs.rename(tmp, file);
  await fs.chmod(file, 0o600);
}

/**
 * Add or change one user in a users file (creating it if needed). `token: true`: `password` is a
 * device token (generateDeviceToken) and gets the fast token hash instead of scrypt.
 */
export async function setUserPassword(file: string, username: string, password: string, opts: { groups?: string[]; cost?: ScryptCost; token?: boolean } = {}): Promise<{ created: boolean }> {
  const bad = validateUsername(username);
  if (bad) throw new BastionError('BASTION_ERR_USERS_FILE', bad);
  let users: Map<string, UserRecord>;
  try {
    users = await readUsersFile(file);
  } catch (err) {
    if ((err as { cause?: NodeJS.ErrnoException }).cause?.code !== 'ENOENT') throw err;
    users = new Map();
  }
  const existing = users.get(username);
  const hash = opts.token ? hashDeviceToken(password) : await hashPassword(password, opts.cost);
  users.set(username, { username, hash, groups: opts.groups ?? existing?.groups ?? [] });
  await writeUsersFile(file, users.values());
  return { created: existing === undefined };
}
