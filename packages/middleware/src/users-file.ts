/**
 * The users file: one user per line, `username:hash[:group,group]`, '#' comments.
 * Hashes are scrypt in PHC-like form: `$scrypt$ln=14,r=8,p=1$<salt b64>$<hash b64>`; the cost is
 * stored per hash so it can be raised without invalidating existing users.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
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

interface ParsedHash {
  cost: ScryptCost;
  salt: Buffer;
  key: Buffer;
}

const HASH_RE = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;

export function parseHash(hash: string): ParsedHash | undefined {
  const m = HASH_RE.exec(hash);
  if (!m) return undefined;
  const cost = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  if (cost.ln < 10 || cost.ln > 22) return undefined;
  return { cost, salt: Buffer.from(m[4] as string, 'base64'), key: Buffer.from(m[5] as string, 'base64') };
}

/**
 * Constant-time check of a password against a stored hash, on the KDF pool's low-priority threads
 * (kdf-pool.ts). Rejects with KdfBusyError when too many checks are already waiting.
 */
export async function verifyPassword(hash: string, password: Buffer | string): Promise<boolean> {
  const parsed = parseHash(hash);
  if (!parsed) return false;
  const { ln, r, p } = parsed.cost;
  const key = await kdfPool().derive(typeof password === 'string' ? Buffer.from(password) : password, parsed.salt, KEY_LEN, { N: 2 ** ln, r, p });
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
    if (!parseHash(hash)) throw new BastionError('BASTION_ERR_USERS_FILE', `${where}: user "${username}" has no valid scrypt hash (use \`bastion passwd\` to set one)`);
    if (users.has(username)) throw new BastionError('BASTION_ERR_USERS_FILE', `${where}: user "${username}" appears twice`);
    users.set(username, { username, hash, groups: groups ? groups.split(',').filter(Boolean) : [] });
  }
  return users;
}

export function serializeUsers(users: Iterable<UserRecord>): string {
  const out = ['# Bastion users file: username:scrypt-hash[:group,group]. Edit with `bastion passwd`.'];
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

/** Add or change one user in a users file (creating it if needed). */
export async function setUserPassword(file: string, username: string, password: string, opts: { groups?: string[]; cost?: ScryptCost } = {}): Promise<{ created: boolean }> {
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
  users.set(username, { username, hash: await hashPassword(password, opts.cost), groups: opts.groups ?? existing?.groups ?? [] });
  await writeUsersFile(file, users.values());
  return { created: existing === undefined };
}
