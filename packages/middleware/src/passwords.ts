/**
 * Password authentication (PR.AC-3) from a users file of scrypt hashes.
 *
 * A KDF per CONNECT would cap a field broker at a few hundred reconnects per second, so a
 * successful check is remembered as HMAC(processKey, hash ‖ password): a reconnect with the same
 * password costs one HMAC and a constant-time compare, and any password change (new hash) or
 * removal invalidates it. The key lives only in memory.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import type { AuthVerdict, BrokerContext, ClientInfo, Credentials, Middleware } from '@bastion/core';
import { accept, deny } from '@bastion/core';
import { DEFAULT_COST, hashPassword, readUsersFile, verifyPassword } from './users-file.js';
import type { UserRecord } from './users-file.js';

export interface PasswordAuthOptions {
  /** Path of the users file. */
  file?: string;
  /** Users given in code (instead of, or before, a file). */
  users?: Iterable<UserRecord>;
  /** Reload the file when it changes on disk (default true when a file is given). */
  watch?: boolean;
}

export interface PasswordAuth extends Middleware {
  /** Re-read the users file; users no longer present (or with a new password) are disconnected. */
  reload(): Promise<void>;
  /** Replace the whole user table (validated first by the caller). */
  setUsers(users: Iterable<UserRecord>): void;
  hasUser(username: string): boolean;
  userCount(): number;
  /**
   * Revoke a user's credential now (RS.RP-2): the user is refused and its sessions are closed. It
   * stays refused across reloads until the users file gives it a new password. False if unknown.
   */
  revoke(username: string): boolean;
}

const BAD = deny('bad-credentials', 'wrong username or password');
const NO_PASSWORD = deny('bad-credentials', 'a password is required');

export function passwordAuth(opts: PasswordAuthOptions): PasswordAuth {
  let users = new Map<string, UserRecord>();
  for (const u of opts.users ?? []) users.set(u.username, u);
  const processKey = randomBytes(32);
  const verified = new Map<string, Buffer>();
  /** Revoked credentials: username → the hash that was revoked (a new password lifts it). */
  const revoked = new Map<string, string>();
  let ctx: BrokerContext | undefined;
  let watcher: FSWatcher | undefined;
  let dummyHash = '';

  const proof = (hash: string, password: Buffer) => createHmac('sha256', processKey).update(hash).update('\u0000').update(password).digest();

  const apply = (next: Map<string, UserRecord>) => {
    for (const [name, hash] of revoked) if (next.get(name)?.hash === hash) next.delete(name);
    const before = users;
    users = next;
    if (!ctx) return;
    // Removed users and changed passwords end their sessions (RS.RP-2).
    const gone = new Set<string>();
    for (const [name, u] of before) {
      const now = next.get(name);
      if (!now || now.hash !== u.hash) gone.add(name);
    }
    if (gone.size > 0) {
      for (const name of gone) verified.delete(name);
      ctx.disconnectWhere((c) => c.username !== undefined && gone.has(c.username), 'kicked', 'credential revoked or changed');
    }
  };

  const mw: PasswordAuth = {
    name: 'passwords',
    controls: ['PR.AC-3', 'RS.RP-2'],
    async setup(context) {
      ctx = context;
      dummyHash = await hashPassword(randomBytes(16), DEFAULT_COST);
      if (opts.file) {
        users = await readUsersFile(opts.file);
        if (opts.watch !== false) {
          let timer: NodeJS.Timeout | undefined;
          watcher = watch(opts.file, { persistent: false }, () => {
            clearTimeout(timer);
            timer = setTimeout(() => {
              mw.reload().catch((err: unknown) => context.logger.error({ err, file: opts.file }, 'users file reload failed; keeping the previous users'));
            }, 100);
          });
          watcher.on('error', () => {});
        }
      }
    },
    async reload() {
      if (!opts.file) return;
      apply(await readUsersFile(opts.file));
      ctx?.logger.info({ file: opts.file, users: users.size }, 'users reloaded');
    },
    setUsers(list) {
      apply(new Map([...list].map((u) => [u.username, u])));
    },
    hasUser: (u) => users.has(u),
    userCount: () => users.size,
    revoke(username) {
      const u = users.get(username);
      if (!u) return false;
      revoked.set(username, u.hash);
      const next = new Map(users);
      next.delete(username);
      apply(next);
      ctx?.logger.warn({ username }, 'credential revoked');
      return true;
    },
    async authenticate(_client: ClientInfo, creds: Credentials): Promise<AuthVerdict> {
      if (creds.username === undefined) return undefined; // this factor was not presented
      if (creds.password === undefined) return NO_PASSWORD;
      const user = users.get(creds.username);
      if (!user) {
        await verifyPassword(dummyHash, creds.password); // same cost as a real check: no user enumeration by timing
        return BAD;
      }
      const p = proof(user.hash, creds.password);
      const known = verified.get(user.username);
      if (known !== undefined && timingSafeEqual(known, p)) return accept('password', user.username, user.groups);
      if (!(await verifyPassword(user.hash, creds.password))) return BAD;
      // the table may have changed while scrypt ran: a new password (or removal) refuses; a reload of
      // the same file (new record objects, same hash) must not
      const now = users.get(user.username);
      if (now === undefined || now.hash !== user.hash) return BAD;
      verified.set(user.username, p);
      return accept('password', now.username, now.groups);
    },
    close() {
      watcher?.close();
    },
  };
  return mw;
}
