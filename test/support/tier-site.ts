/**
 * A copy of one of examples/profiles/tier-*.yaml laid out as in the repository, in a temp dir:
 *   <dir>/examples/profiles/<name>.yaml   the example, ports 0, Redis and the admin token the test's
 *   <dir>/certs-dev/                      a dev PKI made by @bastion/pki (CA, server, device-1/2, CRL)
 *   <dir>/certs-dev/users.txt             device-1, device-2 and admin, known passwords
 *   <dir>/.bastion/keys/                  persistence and audit keys
 * so the example's relative paths resolve to real files.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hashToken, newToken } from '@bastion/admin';
import { hashPassword, writeUsersFile } from '@bastion/middleware';
import { generateKeyFile } from '@bastion/persistence';
import { initDevPki, pkiPaths } from '@bastion/pki';
import type { PkiPaths } from '@bastion/pki';

export const EXAMPLES = fileURLToPath(new URL('../../examples/profiles/', import.meta.url));
export const PASSWORDS: Readonly<Record<string, string>> = { 'device-1': 'pw-device-1', 'device-2': 'pw-device-2', admin: 'pw-admin-123' };

export interface Site {
  dir: string;
  /** The profile copy. */
  profile: string;
  pki: PkiPaths;
  /** The admin token whose hash the copy holds. */
  token: string;
  /** Redis key prefix of this copy. */
  prefix: string;
  /** Rewrite the copy (a reload test changes it). */
  write(text: string): Promise<void>;
  read(): Promise<string>;
  cleanup(): Promise<void>;
}

/** Lay out `examples/profiles/<name>.yaml` in a temp dir; `redisUrl` replaces the example's Redis. */
export async function exampleSite(name: string, redisUrl?: string): Promise<Site> {
  const dir = await mkdtemp(path.join(tmpdir(), `bastion-${name}-`));
  const certs = path.join(dir, 'certs-dev');
  await initDevPki(certs);
  // a low scrypt cost keeps the test fast; the broker reads the cost from each hash
  const cost = { ln: 10, r: 8, p: 1 };
  await writeUsersFile(
    path.join(certs, 'users.txt'),
    await Promise.all(Object.entries(PASSWORDS).map(async ([username, pw]) => ({ username, hash: await hashPassword(pw, cost), groups: [] }))),
  );
  await mkdir(path.join(dir, '.bastion', 'keys'), { recursive: true, mode: 0o700 });
  await generateKeyFile(path.join(dir, '.bastion', 'keys', 'persistence.key'));
  await writeFile(path.join(dir, '.bastion', 'keys', 'audit.key'), randomBytes(32).toString('hex'), { mode: 0o600 });
  const token = newToken();
  const prefix = `bastion-test-${randomBytes(4).toString('hex')}:`;
  let text = await readFile(path.join(EXAMPLES, `${name}.yaml`), 'utf8');
  text = text
    .replace(/port: \d+/g, 'port: 0')
    .replace(/hash: sha256:[0-9a-f]{64}/g, `hash: ${hashToken(token)}`)
    .replace(/prefix: '[^']*'/g, `prefix: '${prefix}'`);
  if (redisUrl !== undefined) text = text.replace(/url: redis:\/\/\S+/g, `url: ${redisUrl}`);
  const profile = path.join(dir, 'examples', 'profiles', `${name}.yaml`);
  await mkdir(path.dirname(profile), { recursive: true });
  await writeFile(profile, text);
  return {
    dir,
    profile,
    pki: pkiPaths(certs),
    token,
    prefix,
    write: (t) => writeFile(profile, t),
    read: () => readFile(profile, 'utf8'),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
