/** Helpers for the persistence tests: unique Redis prefixes, raw Redis reads, own redis-servers, key files. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';

export function uniquePrefix(tag: string): string {
  return `t-${tag}-${randomUUID().slice(0, 8)}:`;
}

export function tempDir(tag: string): string {
  return mkdtempSync(path.join(tmpdir(), `bastion-${tag}-`));
}

/** A new 32-byte key written to `dir/name` (mode 0600); returns its path and bytes. */
export function keyFile(dir: string, name: string): { path: string; bytes: Buffer } {
  const bytes = randomBytes(32);
  const p = path.join(dir, name);
  writeFileSync(p, bytes, { mode: 0o600 });
  return { path: p, bytes };
}

export interface RawValue {
  key: string;
  type: string;
  /** Every stored byte string of the key (string value, list items, set members, hash fields and values). */
  parts: Buffer[];
}

/** SCAN every key under `prefix` (or all keys), TYPE it and read it with the command its type needs. */
export async function scanAll(redis: Redis, prefix = ''): Promise<RawValue[]> {
  const out: RawValue[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scanBuffer(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = String(next);
    for (const k of keys) {
      const key = k.toString();
      const type = await redis.type(key);
      if (type === 'none') continue; // deleted since the scan (other tests share this Redis)
      const parts: Buffer[] = [k];
      if (type === 'string') parts.push((await redis.getBuffer(key)) ?? Buffer.alloc(0));
      else if (type === 'list') parts.push(...(await redis.lrangeBuffer(key, 0, -1)));
      else if (type === 'set') parts.push(...(await redis.smembersBuffer(key)));
      else if (type === 'hash') {
        const flat = await redis.hgetallBuffer(key);
        for (const [f, v] of Object.entries(flat)) parts.push(Buffer.from(f), v);
      } else if (type === 'zset') parts.push(...(await redis.zrangeBuffer(key, 0, -1)));
      else throw new Error(`unexpected Redis type ${type} for ${key}`);
      out.push({ key, type, parts });
    }
  } while (cursor !== '0');
  return out;
}

/** Keys (of `values`) whose stored bytes contain `needle`. */
export function containing(values: RawValue[], needle: string): string[] {
  const n = Buffer.from(needle);
  return values.filter((v) => v.parts.some((p) => p.includes(n))).map((v) => v.key);
}

/** A redis-server of our own on a fixed port, which a test may stop and start again. */
export class OwnRedis {
  #child: ChildProcess | undefined;
  /** `extra`: more redis-server arguments (a password, TLS: then pass `--port 0 --tls-port <port>` …). */
  constructor(
    readonly port: number,
    readonly extra: string[] = [],
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const args = this.extra.includes('--tls-port') ? this.extra : ['--port', String(this.port), ...this.extra];
    const child = spawn('redis-server', [...args, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10_000);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code}): ${out}`));
      });
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          child.removeAllListeners('exit');
          resolve();
        }
      });
    });
  }

  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL'); // gone at once, as a crashed or unplugged Redis
    });
  }
}
