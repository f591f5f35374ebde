/**
 * Users through the admin API (PR.AC-3, RS.RP-2): every change is written to the users file (so it
 * survives a restart) and then applied to the live password table, which disconnects the sessions
 * of a removed user or of a user whose password changed. Changes are serialized: each one reads the
 * file afresh, so an edit made meanwhile with `bastion passwd` is kept.
 */
import { hashPassword, readUsersFile, writeUsersFile } from '@bastion/middleware';
import type { UserRecord } from '@bastion/middleware';
import { HttpError } from './http.js';
import type { PasswordsControl } from './host.js';

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

  add(username: string, password: string, groups: readonly string[], live: PasswordsControl | undefined): Promise<void> {
    return this.#change(live, async (users) => {
      if (users.has(username)) throw new HttpError(409, 'conflict', `user "${username}" exists; change its password with POST /v1/users/${encodeURIComponent(username)}/password`);
      users.set(username, { username, hash: await hashPassword(password), groups: [...groups] });
    });
  }

  remove(username: string, live: PasswordsControl | undefined): Promise<void> {
    return this.#change(live, (users) => {
      if (!users.delete(username)) throw new HttpError(404, 'not-found', `no user "${username}"`);
    });
  }

  setPassword(username: string, password: string, live: PasswordsControl | undefined): Promise<void> {
    return this.#change(live, async (users) => {
      const u = users.get(username);
      if (!u) throw new HttpError(404, 'not-found', `no user "${username}"`);
      users.set(username, { ...u, hash: await hashPassword(password) });
    });
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
