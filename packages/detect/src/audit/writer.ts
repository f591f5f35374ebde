/**
 * An append-only file writer with size-based rotation, for the audit log.
 *
 * Lines queued during one turn of the event loop are written together with one synchronous
 * write at the next turn (or at once by flush()): no unbounded in-memory queue under a flood
 * of events (the flood pays for its own writes), order kept, nothing lost on a clean stop.
 * `fsync` additionally syncs every batch to disk.
 *
 * Rotation: the active file keeps its name; a full file is renamed `<file>.<n>` with n growing
 * (1, 2, …), so a higher number is newer. `maxFiles` > 0 deletes the oldest rotated files beyond it.
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readSync, readdirSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';

export interface WriterOptions {
  /** Rotate before a write would take the active file past this many bytes. */
  maxSize: number;
  /** Rotated files kept (0 = all). */
  maxFiles: number;
  fsync: boolean;
}

export class RotatingWriter {
  readonly file: string;
  #o: WriterOptions;
  #fd: number | undefined;
  #size = 0;
  #queue: string[] = [];
  #scheduled: NodeJS.Immediate | undefined;

  constructor(file: string, o: WriterOptions) {
    this.file = file;
    this.#o = o;
  }

  /** Open (creating directories, mode 0600). Returns the last complete line of the existing chain, and bytes cut from a torn tail. */
  open(): { lastLine: string | undefined; repaired: number } {
    mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    this.#fd = openSync(this.file, 'a+', 0o600);
    const { line, cut } = tail(this.#fd);
    let repaired = 0;
    if (cut > 0) {
      // a write torn by a crash: drop the partial line so the chain goes on from the last whole one
      const size = fstatSync(this.#fd).size;
      ftruncateSync(this.#fd, size - cut);
      repaired = cut;
    }
    this.#size = fstatSync(this.#fd).size;
    let lastLine = line;
    if (lastLine === undefined) {
      // an empty active file: the chain may go on from the newest rotated file
      const newest = this.rotated().at(-1);
      if (newest !== undefined) {
        const fd = openSync(newest, 'r');
        try {
          lastLine = tail(fd).line;
        } finally {
          closeSync(fd);
        }
      }
    }
    return { lastLine, repaired };
  }

  get size(): number {
    return this.#size;
  }

  /** New rotation and sync settings (a profile reload); they apply from the next write. */
  setOptions(o: WriterOptions): void {
    this.#o = o;
  }

  /** True when `bytes` more would take the active file past maxSize (and it is not empty). */
  wouldOverflow(bytes: number): boolean {
    return this.#size > 0 && this.#size + bytes > this.#o.maxSize;
  }

  /** Queue a line ('\n' added). */
  write(line: string): void {
    if (this.#fd === undefined) throw new Error('audit writer is closed');
    const text = `${line}\n`;
    this.#queue.push(text);
    this.#size += Buffer.byteLength(text);
    this.#scheduled ??= setImmediate(() => {
      this.#scheduled = undefined;
      this.flush();
    });
  }

  /** Write everything queued now. */
  flush(): void {
    if (this.#queue.length === 0 || this.#fd === undefined) return;
    const buf = Buffer.from(this.#queue.join(''));
    this.#queue = [];
    let off = 0;
    while (off < buf.length) off += writeSync(this.#fd, buf, off, buf.length - off);
    if (this.#o.fsync) fsyncSync(this.#fd);
  }

  /** Close the active file, rename it `<file>.<n>`, start a new one. Returns the rotated name. */
  rotate(): string {
    this.flush();
    if (this.#fd === undefined) throw new Error('audit writer is closed');
    fsyncSync(this.#fd);
    closeSync(this.#fd);
    const existing = this.rotated();
    const last = existing.at(-1);
    const n = last === undefined ? 1 : Number(last.slice(this.file.length + 1)) + 1;
    const target = `${this.file}.${n}`;
    renameSync(this.file, target);
    this.#fd = openSync(this.file, 'a', 0o600);
    this.#size = 0;
    if (this.#o.maxFiles > 0) for (const old of [...existing, target].slice(0, -this.#o.maxFiles)) unlinkSync(old);
    return target;
  }

  /** Rotated files, oldest first. */
  rotated(): string[] {
    const dir = path.dirname(this.file);
    const base = path.basename(this.file);
    const out: Array<{ n: number; p: string }> = [];
    for (const name of readdirSync(dir)) {
      if (!name.startsWith(`${base}.`)) continue;
      const rest = name.slice(base.length + 1);
      if (!/^[1-9][0-9]*$/.test(rest)) continue;
      const p = path.join(dir, name);
      if (statSync(p).isFile()) out.push({ n: Number(rest), p });
    }
    return out.sort((a, b) => a.n - b.n).map((x) => x.p);
  }

  close(): void {
    if (this.#scheduled) clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    this.flush();
    if (this.#fd !== undefined) {
      fsyncSync(this.#fd);
      closeSync(this.#fd);
    }
    this.#fd = undefined;
  }
}

/** The last complete line of a file, and how many bytes follow it without a newline. */
function tail(fd: number): { line: string | undefined; cut: number } {
  const size = fstatSync(fd).size;
  if (size === 0) return { line: undefined, cut: 0 };
  let chunk = 64 * 1024;
  for (;;) {
    const start = Math.max(0, size - chunk);
    const buf = Buffer.alloc(size - start);
    readSync(fd, buf, 0, buf.length, start);
    const text = buf.toString('utf8');
    const lastNl = text.lastIndexOf('\n');
    const cut = Buffer.byteLength(text.slice(lastNl + 1));
    if (lastNl === -1) {
      if (start === 0) return { line: undefined, cut };
      chunk *= 4;
      continue;
    }
    const prevNl = text.lastIndexOf('\n', lastNl - 1);
    if (prevNl === -1 && start > 0) {
      chunk *= 4;
      continue;
    }
    return { line: text.slice(prevNl + 1, lastNl), cut };
  }
}
