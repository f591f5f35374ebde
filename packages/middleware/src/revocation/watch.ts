/**
 * Watching a few files for changes, robustly enough for certificates and CRLs:
 *
 * - the *directory* is watched, not the file: tools replace files by rename (atomic writes,
 *   `bastion certs revoke`), which ends an inotify watch on the old inode;
 * - events are debounced, so a key and a certificate written one after the other, or a temp file
 *   renamed into place, make one callback;
 * - Kubernetes-style secret volumes swap a `..data` symlink: events on `..`-names count too;
 * - a slow poll backs up fs.watch where it is unreliable (network and some container file systems).
 *
 * The callback only says "look again": callers compare contents (see `fileDigest`) and do nothing
 * when nothing changed, so spurious wake-ups are cheap.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';

export interface WatchFilesOptions {
  /** Quiet time after the last event before the callback runs (default 150 ms). */
  debounceMs?: number;
  /** Also call back every this many ms whatever fs.watch says (default 60 s; 0 = never). */
  pollMs?: number;
  /** Told when a directory cannot be watched (polling still runs). */
  onError?: (err: Error, dir: string) => void;
}

export interface FileWatch {
  close(): void;
}

export function watchFiles(files: readonly string[], onChange: () => void, opts: WatchFilesOptions = {}): FileWatch {
  const debounceMs = opts.debounceMs ?? 150;
  const pollMs = opts.pollMs ?? 60_000;
  const byDir = new Map<string, Set<string>>();
  for (const f of files) {
    const abs = path.resolve(f);
    const dir = path.dirname(abs);
    let names = byDir.get(dir);
    if (!names) byDir.set(dir, (names = new Set()));
    names.add(path.basename(abs));
  }
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const fire = () => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      if (!closed) onChange();
    }, debounceMs);
    timer.unref();
  };
  const watchers: FSWatcher[] = [];
  for (const [dir, names] of byDir) {
    try {
      const w = watch(dir, { persistent: false }, (_event, filename) => {
        const name = filename === null ? null : String(filename);
        if (name === null || names.has(name) || name.startsWith('..')) fire();
      });
      w.on('error', (err) => opts.onError?.(err, dir));
      watchers.push(w);
    } catch (err) {
      opts.onError?.(err as Error, dir);
    }
  }
  const poll = pollMs > 0 ? setInterval(() => !closed && onChange(), pollMs) : undefined;
  poll?.unref();
  return {
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      if (poll) clearInterval(poll);
      for (const w of watchers) w.close();
    },
  };
}

/** sha256 of a file's bytes with the bytes, or the error that kept it from being read. */
export async function readWithDigest(file: string): Promise<{ bytes: Buffer; digest: string } | { error: Error }> {
  try {
    const bytes = await readFile(file);
    return { bytes, digest: createHash('sha256').update(bytes).digest('hex') };
  } catch (err) {
    return { error: err as Error };
  }
}
