/**
 * Password authentication (PR.AC-3) from a users file of scrypt hashes.
 *
 * A KDF per CONNECT would cap a field broker at a few hundred reconnects per second, so a
 * successful check is remembered as SHA-256(K ‖ password) with K = SHA-256(processKey ‖ hash), a
 * keyed hash under a random 32-byte key that lives only in memory and whose outputs never leave the
 * process (so length extension does not apply); K is 32 bytes so that a password of up to 23 bytes
 * is one SHA-256 block: a reconnect with the same password costs one one-shot hash and a
 * constant-time compare, answered synchronously (no promise on the reconnect path), and any password
 * change (new hash) or removal invalidates it.
 */
import { hash as sha, randomBytes, timingSafeEqual } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import type { Accepted, AuthVerdict, BrokerContext, ClientInfo, Credentials, Middleware } from '@bastion/core';
import { accept, deny } from '@bastion/core';
import { KdfBusyError } from './kdf-pool.js';
import { DEFAULT_COST, generateDeviceToken, hashDeviceToken, hashPassword, isDeviceTokenHash, readUsersFile, verifyDeviceToken, verifyPassword } from './users-file.js';
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
const KDF_BUSY = deny('server-busy', 'too many password checks waiting');

export function passwordAuth(opts: PasswordAuthOptions): PasswordAuth {
  let users = new Map<string, UserRecord>();
  for (const u of opts.users ?? []) users.set(u.username, u);
  const processKey = randomBytes(32);
  /** username → what a reconnect is checked against: the key K of its current hash, the proof, the verdict. */
  const verified = new Map<string, { hash: string; prefix: Buffer; proof: Buffer; verdict: Accepted }>();
  /** Revoked credentials: username → the hash that was revoked (a new password lifts it). */
  const revoked = new Map<string, string>();
  let ctx: BrokerContext | undefined;
  let watcher: FSWatcher | undefined;
  let dummyHash = '';
  /** For an unknown username: a token hash to check against when no user has a password (scrypt). */
  const dummyToken = hashDeviceToken(generateDeviceToken());
  /** Does any user have a scrypt password? If not, an unknown user is checked like a token. */
  let anyPassword = false;
  const scanKinds = () => {
    anyPassword = false;
    for (const u of users.values()) if (!isDeviceTokenHash(u.hash)) return void (anyPassword = true);
  };
  scanKinds();

  const prefixOf = (hash: string) => sha('sha256', Buffer.concat([processKey, Buffer.from(hash, 'utf8')]), 'buffer');
  const proof = (prefix: Buffer, password: Buffer) => sha('sha256', Buffer.concat([prefix, password]), 'buffer');

  /** The scrypt path: first login of a user with this password, a wrong password, an unknown user. */
  const verifySlow = async (user: UserRecord | undefined, password: Buffer): Promise<AuthVerdict> => {
    try {
      if (!user) {
        await verifyPassword(dummyHash, password); // same cost as a real check: no user enumeration by timing
        return BAD;
      }
      if (!(await verifyPassword(user.hash, password))) return BAD;
    } catch (err) {
      if (err instanceof KdfBusyError) return KDF_BUSY; // CONNACK "server unavailable": try again later
      throw err;
    }
    // the table may have changed while scrypt ran: a new password (or removal) refuses; a reload of
    // the same file (new record objects, same hash) must not
    const now = users.get(user.username);
    if (now === undefined || now.hash !== user.hash) return BAD;
    const prefix = prefixOf(now.hash);
    const verdict = accept('password', now.username, now.groups);
    verified.set(now.username, { hash: now.hash, prefix, proof: proof(prefix, password), verdict });
    return verdict;
  };

  const apply = (next: Map<string, UserRecord>) => {
    for (const [name, hash] of revoked) if (next.get(name)?.hash === hash) next.delete(name);
    const before = users;
    users = next;
    scanKinds();
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
        scanKinds();
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
    // Not async: a reconnect with a remembered password is answered synchronously.
    authenticate(_client: ClientInfo, creds: Credentials): AuthVerdict | Promise<AuthVerdict> {
      if (creds.username === undefined) return undefined; // this factor was not presented
      if (creds.password === undefined) return NO_PASSWORD;
      const user = users.get(creds.username);
      // A device token is checked at once (one SHA-256): nothing to remember, no thread to wait for.
      // An unknown user costs what a known one would: a token check when every user has a token,
      // else a scrypt (a file mixing both tells, by timing, which names hold tokens).
      if (user === undefined ? !anyPassword : isDeviceTokenHash(user.hash)) {
        if (user === undefined) {
          verifyDeviceToken(dummyToken, creds.password);
          return BAD;
        }
        return verifyDeviceToken(user.hash, creds.password) ? accept('password', user.username, user.groups) : BAD;
      }
      if (user !== undefined) {
        const known = verified.get(user.username);
        // same hash: the cache entry belongs to the current password, and the user record to it
        if (known !== undefined && known.hash === user.hash && timingSafeEqual(known.proof, proof(known.prefix, creds.password))) {
          return known.verdict.groups === user.groups ? known.verdict : (known.verdict = accept('password', user.username, user.groups));
        }
      }
      return verifySlow(user, creds.password);
    },
    close() {
      watcher?.close();
    },
  };
  return mw;
}
