/**
 * Crash-safe file writes for PKI material.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { PkiError } from './errors.js';

export const PRIVATE_FILE_MODE = 0o600;
export const PUBLIC_FILE_MODE = 0o644;
export const PRIVATE_DIR_MODE = 0o700;

/**
 * Writes `data` so that readers see either the old file or the complete new one: a temp
 * file is created next to the target (O_EXCL, exact `mode`), fsynced, then renamed over
 * the target. Renaming replaces a symlink at `path` instead of writing through it.
 * Missing parent directories are created with mode 0700.
 */
export async function writeFileAtomic(path: string, data: string | Buffer, mode: number): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.chmod(mode); // the create mode is filtered by the umask; make it exact
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await chmod(path, mode);
  await syncDir(dir);
}

async function syncDir(dir: string): Promise<void> {
  try {
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch {
    // Directory fsync is not supported everywhere (e.g. Windows); the rename is still atomic.
  }
}

/** Writes a private key (or other secret) with mode 0600, atomically. The data is never logged. */
export async function writePrivateFile(path: string, data: string): Promise<void> {
  await writeFileAtomic(path, data, PRIVATE_FILE_MODE);
}

/** Writes a certificate / CRL / other public file with mode 0644, atomically. */
export async function writePublicFile(path: string, data: string | Buffer): Promise<void> {
  await writeFileAtomic(path, data, PUBLIC_FILE_MODE);
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

const LOCK_NAME = '.bastion-pki.lock';
const LOCK_STALE_MS = 2 * 60 * 1000;
const LOCK_WAIT_MS = 60 * 1000;

/**
 * Runs `fn` while holding an exclusive lock file in `dir`, so a broker starting up and a
 * `bastion certs` command cannot interleave writes of the same PKI. Locks older than two
 * minutes are considered stale (a crashed process) and are taken over.
 */
export async function withDirLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const lockPath = join(dir, LOCK_NAME);
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fh = await open(lockPath, 'wx', PRIVATE_FILE_MODE);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = await stat(lockPath).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > LOCK_STALE_MS) {
        await rm(lockPath, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new PkiError(
          'BASTION_ERR_PKI_LOCKED',
          `The PKI directory ${dir} is locked by another process (${lockPath}). Wait for it to finish, or delete the lock file if no bastion process is running.`,
        );
      }
      await delay(25 + Math.floor(Math.random() * 50));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockPath, { force: true });
  }
}
