/**
 * Where password checks spend their CPU. One scrypt at the default cost (ln=14, r=8) is ~40 ms of
 * CPU. On libuv's pool it runs at the broker's own priority, so a password-guessing flood takes CPU
 * time from the event loop that serves every client (measured with the broker on one core: a
 * client's p99 round trip ×2–3 while one scrypt runs beside it). Here each check runs in a worker
 * thread that has lowered its own priority to nice 19 (Linux): the event loop comes first, and
 * checks use the CPU it leaves (same measurement: p99 unchanged with such a thread busy).
 *
 * Threads: max(1, min(4, available CPUs − 1)), started on first use, holding the process open only
 * while they work. At most MAX_QUEUED checks wait for a thread; beyond that a check is refused at
 * once (KdfBusyError): under guesses from many addresses, refusing fast beats a queue without
 * bound. Where worker threads cannot start, checks fall back to crypto.scrypt.
 *
 * The thread's code is inline (THREAD), not a file: a bundled broker has no worker file beside it.
 */
import { scrypt } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { BastionError } from '@bastion/core';

/** Checks that may wait for a thread; more are refused. */
export const MAX_QUEUED = 256;

export class KdfBusyError extends BastionError {
  constructor() {
    super('BASTION_ERR_KDF_BUSY', `${MAX_QUEUED} password checks are already waiting`);
  }
}

export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

interface KdfJob {
  id: number;
  password: Uint8Array;
  salt: Uint8Array;
  keyLength: number;
  N: number;
  r: number;
  p: number;
}

type KdfReply = { id: number; key: Uint8Array } | { id: number; error: string } | { ready: true; lowered: boolean };

/**
 * One pool thread: lowers its own priority (Linux: setpriority() on a thread id changes that thread
 * alone, and /proc/thread-self names it), then derives one key at a time, synchronously, so the
 * CPU it takes is this thread's, at that priority.
 */
const THREAD = `
const { scryptSync } = require('node:crypto');
const { readlinkSync } = require('node:fs');
const { setPriority } = require('node:os');
const { parentPort } = require('node:worker_threads');
let lowered = false;
try {
  const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
  if (Number.isSafeInteger(tid) && tid > 0) { setPriority(tid, 19); lowered = true; }
} catch {}
parentPort.postMessage({ ready: true, lowered });
parentPort.on('message', (job) => {
  let reply;
  try {
    const key = scryptSync(job.password, job.salt, job.keyLength, { N: job.N, r: job.r, p: job.p, maxmem: 256 * job.N * job.r + 1024 * 1024 });
    reply = { id: job.id, key };
  } catch (err) {
    reply = { id: job.id, error: err instanceof Error ? err.message : String(err) };
  }
  parentPort.postMessage(reply);
});
`;

interface Job {
  readonly job: KdfJob;
  readonly resolve: (key: Buffer) => void;
  readonly reject: (err: Error) => void;
}

interface Thread {
  readonly worker: Worker;
  job: Job | undefined;
  ready: boolean;
}

export class KdfPool {
  readonly size: number;
  readonly #threads: Thread[] = [];
  readonly #queue: Job[] = [];
  #head = 0;
  #nextId = 1;
  /** Worker threads could not start here: derive with crypto.scrypt. */
  #fallback = false;
  /** Whether the threads run at a lowered priority (undefined until one has started). */
  lowered: boolean | undefined;

  constructor(size = Math.max(1, Math.min(4, availableParallelism() - 1))) {
    this.size = size;
  }

  /** Checks waiting for a thread. */
  get waiting(): number {
    return this.#queue.length - this.#head;
  }

  /** scrypt(password, salt, keyLength, params) on a pool thread. */
  derive(password: Buffer, salt: Buffer, keyLength: number, params: ScryptParams): Promise<Buffer> {
    if (this.#fallback) return scryptHere(password, salt, keyLength, params);
    if (this.waiting >= MAX_QUEUED) return Promise.reject(new KdfBusyError());
    return new Promise<Buffer>((resolve, reject) => {
      const job: KdfJob = { id: this.#nextId++, password, salt, keyLength, N: params.N, r: params.r, p: params.p };
      this.#queue.push({ job, resolve, reject });
      this.#dispatch();
    });
  }

  #dispatch(): void {
    while (this.waiting > 0) {
      let t = this.#threads.find((x) => x.job === undefined);
      if (t === undefined && this.#threads.length < this.size) t = this.#start();
      if (t === undefined) {
        if (this.#fallback) this.#drainToFallback();
        return;
      }
      const next = this.#queue[this.#head] as Job;
      this.#queue[this.#head++] = undefined as unknown as Job;
      if (this.#head > 64 && this.#head * 2 > this.#queue.length) {
        this.#queue.splice(0, this.#head);
        this.#head = 0;
      }
      t.job = next;
      t.worker.ref(); // a check in progress keeps the process alive, an idle thread does not
      t.worker.postMessage(next.job);
    }
  }

  #start(): Thread | undefined {
    let worker: Worker;
    try {
      // no inherited flags (--import hooks, loaders, profilers): the thread runs scrypt and nothing else
      worker = new Worker(THREAD, { eval: true, execArgv: [] });
    } catch {
      this.#fallback = true;
      return undefined;
    }
    const t: Thread = { worker, job: undefined, ready: false };
    worker.on('message', (m: KdfReply) => {
      if ('ready' in m) {
        t.ready = true;
        this.lowered = m.lowered;
        return;
      }
      const job = t.job;
      t.job = undefined;
      worker.unref();
      if (job !== undefined && job.job.id === m.id) {
        if ('key' in m) job.resolve(Buffer.from(m.key.buffer, m.key.byteOffset, m.key.byteLength));
        else job.reject(new BastionError('BASTION_ERR_KDF', `password check failed: ${m.error}`));
      }
      this.#dispatch();
    });
    const lost = (err: unknown) => {
      const i = this.#threads.indexOf(t);
      if (i < 0) return;
      this.#threads.splice(i, 1);
      const job = t.job;
      t.job = undefined;
      if (!t.ready) {
        // it never started (no worker threads here): derive in-process from now on
        this.#fallback = true;
        if (job) scryptHere(Buffer.from(job.job.password), Buffer.from(job.job.salt), job.job.keyLength, job.job).then(job.resolve, job.reject);
      } else {
        job?.reject(new BastionError('BASTION_ERR_KDF', 'the password check thread stopped', { cause: err }));
      }
      this.#dispatch(); // a new thread (or the fallback) takes the queue
    };
    worker.on('error', lost);
    worker.on('exit', lost);
    worker.unref();
    this.#threads.push(t);
    return t;
  }

  #drainToFallback(): void {
    while (this.waiting > 0) {
      const { job, resolve, reject } = this.#queue[this.#head] as Job;
      this.#queue[this.#head++] = undefined as unknown as Job;
      scryptHere(Buffer.from(job.password), Buffer.from(job.salt), job.keyLength, job).then(resolve, reject);
    }
  }
}

/** crypto.scrypt on libuv's pool, at the caller's priority (hashing a new password; the fallback). */
export function scryptHere(password: Buffer, salt: Buffer, keyLength: number, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keyLength, { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r + 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

/** The process's pool (like libuv's: one per process, shared by every broker in it). */
let shared: KdfPool | undefined;
export function kdfPool(): KdfPool {
  shared ??= new KdfPool();
  return shared;
}
