/**
 * First start on the embedded default profile: make the development PKI and a first user, so that
 * one command gives a broker with TLS and authentication on. The generated password is shown once
 * (through `announce`, never through the logger) and kept in a 0600 file beside the certificates.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { initDevPki, writePrivateFile } from '@bastion/pki';
import { setUserPassword } from '@bastion/middleware';

export const FIRST_USER = 'admin';
export const PASSWORD_FILE = 'initial-password.txt';

export interface FirstStartInfo {
  readonly dir: string;
  readonly createdPki: boolean;
  /** Present only when the first user was created now. */
  readonly user?: { readonly username: string; readonly password: string; readonly passwordFile: string };
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}

export async function ensureDevMaterial(dir: string): Promise<FirstStartInfo> {
  const pki = await initDevPki(dir);
  const usersFile = path.join(dir, 'users.txt');
  if (await exists(usersFile)) return { dir, createdPki: pki.created };
  const password = randomBytes(18).toString('base64url');
  await setUserPassword(usersFile, FIRST_USER, password, { groups: ['admins'] });
  const passwordFile = path.join(dir, PASSWORD_FILE);
  await writePrivateFile(passwordFile, `${FIRST_USER}:${password}\n`);
  return { dir, createdPki: pki.created, user: { username: FIRST_USER, password, passwordFile } };
}

export function announceFirstStart(info: FirstStartInfo, write: (s: string) => void = (s) => process.stderr.write(s)): void {
  if (info.createdPki) write(`bastion: created a development PKI in ${info.dir} (CA, server and two client certificates; keys are mode 0600)\n`);
  if (info.user) {
    write(
      `bastion: created the first user "${info.user.username}" with password: ${info.user.password}\n` +
        `bastion: it is shown only now; it is also in ${info.user.passwordFile} (mode 0600)\n`,
    );
  }
}
