/**
 * Users through the admin API (PR.AC-3, RS.RP-2): every change is written to the users file (so it
 * survives a restart) and then applied to the live password table, which disconnects the sessions
 * of a removed user or of a user whose password changed. Changes are serialized: each one reads the
 * file afresh, so an edit made meanwhile with `bastion passwd` is kept.
 */
import { generateDeviceToken, hashDeviceToken, hashPassword, readUsersFile, writeUsersFile } from '@bastion/middleware';
import type { UserRecord } from '@bastion/middleware';
import { HttpError } from './http.js';
import type { PasswordsControl } from './host.js';

/** What a user authenticates with: a password, or a device token the broker generates. */
export type Secret = { readonly password: string } | { readonly token: true };

/** The hash to store, and the generated token (to hand out once) when there is one. */
async function hashOf(secret: Secret): Promise<{ hash: string; token?: string }> {
  if ('password' in secret) return { hash: await hashPassword(secret.password) };
  const token = generateDeviceToken();
  return { hash: hashDeviceToken(token), token };
}

export class UsersStore {
  readonly file: string;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(file: string) {
    this.file = file;
  }

  /** The users in the file (hashes stay inside: callers get names and groups). */
  async list(): Promise<UserRecord[]> {
    return [...(await this.#read()).values()];
  }

  /** Resolves with the generated token when `secret` asked for one. */
  add(username: string, secret: Secret, groups: readonly string[], live: PasswordsControl | undefined): Promise<string | undefined> {
    let token: string | undefined;
    return this.#change(live, async (users) => {
      if (users.has(username)) throw new HttpError(409, 'conflict', `user "${username}" exists; change its password with POST /v1/users/${encodeURIComponent(username)}/password`);
      const h = await hashOf(secret);
      token = h.token;
      users.set(username, { username, hash: h.hash, groups: [...groups] });
    }).then(() => token);
  }

  remove(username: string, live: PasswordsControl | undefined): Promise<void> {
    return this.#change(live, (users) => {
      if (!users.delete(username)) throw new HttpError(404, 'not-found', `no user "${username}"`);
    });
  }

  /** Resolves with the generated token when `secret` asked for one. */
  setPassword(username: string, secret: Secret, live: PasswordsControl | undefined): Promise<string | undefined> {
    let token: string | undefined;
    return this.#change(live, async (users) => {
      const u = users.get(username);
      if (!u) throw new HttpError(404, 'not-found', `no user "${username}"`);
      const h = await hashOf(secret);
      token = h.token;
      users.set(username, { ...u, hash: h.hash });
    }).then(() => token);
  }

  async #read(): Promise<Map<string, UserRecord>> {
    try {
      return await readUsersFile(this.file);
    } catch (err) {
      if ((err as { cause?: NodeJS.ErrnoException }).cause?.code === 'ENOENT') return new Map();
      throw err;
    }
  }

  #change(live: PasswordsControl | undefined, edit: (users: Map<string, UserRecord>) => void | Promise<void>): Promise<void> {
    const run = async () => {
      const users = await this.#read();
      await edit(users);
      await writeUsersFile(this.file, users.values());
      // the file first: a change that is live but not on disk would be undone by the next reload
      live?.setUsers(users.values());
    };
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => undefined);
    return p;
  }
}
