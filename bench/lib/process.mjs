/**
 * Child processes of the bench: launching a Node script pinned to one CPU (taskset), and a tiny
 * request/reply protocol over the IPC channel so the parent can drive brokers and generators.
 *
 * Every child is told to exit when its parent goes away (IPC 'disconnect'), so an interrupted
 * bench leaves no broker behind.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';

let tasksetChecked;

/** True when `taskset` runs here (util-linux). */
export function hasTaskset() {
  if (tasksetChecked === undefined) {
    const r = spawnSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
    tasksetChecked = r.status === 0;
  }
  return tasksetChecked;
}

/**
 * Which CPUs the broker and the generator get. Pinning needs taskset and at least two CPUs;
 * otherwise both run unpinned and the reason is recorded with the results.
 */
export function pinningPlan({ disabled = false } = {}) {
  const cpus = os.availableParallelism?.() ?? os.cpus().length;
  if (disabled) return { enabled: false, reason: 'disabled with --no-pin' };
  if (process.platform !== 'linux') return { enabled: false, reason: `no taskset pinning on ${process.platform}` };
  if (cpus < 2) return { enabled: false, reason: `only ${cpus} CPU available` };
  if (!hasTaskset()) return { enabled: false, reason: 'taskset not found' };
  return { enabled: true, broker: 0, generator: 1, reason: 'taskset' };
}

/**
 * Starts `node [execArgv] script ...args` (under `taskset -c cpu` when cpu is a number, under
 * `nice -n N` when nice is given) with an IPC channel.
 * Returns a handle with call(method, params, timeoutMs), on(type, fn) for unsolicited messages,
 * waitFor(type, timeoutMs), kill() and an `exited` promise.
 */
export function launch(script, args = [], { cpu, name = script, env, execArgv = [], nice, idle = false } = {}) {
  const nodeArgs = [...execArgv, script, ...args];
  let [cmd, argv] = typeof cpu === 'number' ? ['taskset', ['-c', String(cpu), process.execPath, ...nodeArgs]] : [process.execPath, nodeArgs];
  // a lower priority (the attacker of latency-flood shares the generator's CPU)
  if (typeof nice === 'number') [cmd, argv] = ['nice', ['-n', String(nice), cmd, ...argv]];
  // SCHED_IDLE: runs only on CPU time nobody else wants, so it never delays the measuring client
  if (idle && chrtAvailable()) [cmd, argv] = ['chrt', ['--idle', '0', cmd, ...argv]];
  [cmd, argv] = withOpenFilesRaised(cmd, argv);
  const child = spawn(cmd, argv, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...env },
  });
  const pending = new Map();
  const listeners = new Map();
  let nextId = 1;
  let exitInfo;

  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      const err = new Error(`${name} exited (code ${code}, signal ${signal}) while a request was pending`);
      for (const p of pending.values()) {
        clearTimeout(p.timer);
        p.reject(err);
      }
      pending.clear();
      for (const fn of listeners.get('exit') ?? []) fn({ type: 'exit', code, signal });
      resolve(exitInfo);
    });
  });
  child.on('error', (err) => {
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  });
  child.on('message', (msg) => {
    if (msg && typeof msg.id === 'number' && pending.has(msg.id)) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new Error(`${name}: ${msg.error}`));
      return;
    }
    if (msg && typeof msg.type === 'string') {
      for (const fn of listeners.get(msg.type) ?? []) fn(msg);
    }
  });

  const handle = {
    name,
    pid: child.pid,
    exited,
    /** Remote call; rejects on error, on child exit, or after timeoutMs. */
    call(method, params = {}, timeoutMs = 30_000) {
      if (exitInfo) return Promise.reject(new Error(`${name} has exited`));
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${name}: '${method}' timed out after ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, { resolve, reject, timer });
        child.send({ id, method, params });
      });
    },
    on(type, fn) {
      if (!listeners.has(type)) listeners.set(type, new Set());
      listeners.get(type).add(fn);
      return () => listeners.get(type).delete(fn);
    },
    /** Resolves with the first unsolicited message of that type (rejects on exit or timeout). */
    waitFor(type, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          offMsg();
          offExit();
          reject(new Error(`${name}: no '${type}' message within ${timeoutMs} ms`));
        }, timeoutMs);
        const offMsg = handle.on(type, (m) => {
          clearTimeout(timer);
          offMsg();
          offExit();
          resolve(m);
        });
        const offExit = handle.on('exit', (m) => {
          clearTimeout(timer);
          offMsg();
          offExit();
          reject(new Error(`${name} exited (code ${m.code}, signal ${m.signal}) before '${type}'`));
        });
      });
    },
    /** Asks politely (the 'stop' method), then SIGKILL after graceMs. */
    async stop(graceMs = 5_000) {
      if (exitInfo) return exitInfo;
      try {
        await handle.call('stop', {}, graceMs);
      } catch {
        // fall through to the kill below
      }
      const timer = setTimeout(() => handle.kill(), graceMs);
      const info = await exited;
      clearTimeout(timer);
      return info;
    },
    kill() {
      if (!exitInfo) child.kill('SIGKILL');
    },
  };
  return handle;
}

/**
 * Runs cmd with its soft open-files limit raised to the hard limit (`ulimit -n`): the connection
 * scenarios hold thousands of sockets. `exec` keeps the pid, so CPU readings stay on the broker.
 */
let chrtOk;
function chrtAvailable() {
  chrtOk ??= spawnSync('chrt', ['--idle', '0', 'true'], { stdio: 'ignore' }).status === 0;
  return chrtOk;
}

function withOpenFilesRaised(cmd, argv) {
  if (process.platform === 'win32') return [cmd, argv];
  return ['sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', cmd, ...argv]];
}

/**
 * Child side: answer {id, method, params} requests with handlers[method](params).
 * A 'stop' handler, when present, runs before the process exits.
 */
export function serve(handlers) {
  process.on('message', async (msg) => {
    if (!msg || typeof msg.id !== 'number') return;
    const fn = handlers[msg.method];
    try {
      if (!fn) throw new Error(`unknown method '${msg.method}'`);
      const result = await fn(msg.params ?? {});
      process.send?.({ id: msg.id, ok: true, result: result ?? null });
    } catch (err) {
      process.send?.({ id: msg.id, ok: false, error: err instanceof Error ? err.stack ?? err.message : String(err) });
    }
    if (msg.method === 'stop') {
      process.disconnect?.();
      setTimeout(() => process.exit(0), 50).unref();
    }
  });
  // parent gone (crash, Ctrl-C): do not outlive it
  process.on('disconnect', () => setTimeout(() => process.exit(0), 100).unref());
}

/** process.cpuUsage() in microseconds, and the same as a % of a wall-time span. */
export function cpuDelta(before, after, wallMs) {
  const user = after.user - before.user;
  const system = after.system - before.system;
  const pct = wallMs > 0 ? ((user + system) / 1000 / wallMs) * 100 : 0;
  return { userUs: user, systemUs: system, pct };
}

/**
 * Per-CPU busy and total time from /proc/stat (Linux; null elsewhere), to see how much of a
 * pinned CPU went to processes other than ours during a measurement. Steal time counts as busy:
 * on a VM it is time the hypervisor gave to someone else.
 */
export function readCpuTimes() {
  let text;
  try {
    text = readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  const cpus = {};
  for (const line of text.split('\n')) {
    const m = /^cpu(\d*)\s+(.*)$/.exec(line);
    if (!m) continue;
    const [user, nice, system, idle, iowait = 0, irq = 0, softirq = 0, steal = 0] = m[2].trim().split(/\s+/).map(Number);
    const busy = user + nice + system + irq + softirq + steal;
    cpus[m[1] === '' ? 'all' : m[1]] = { busy, total: busy + idle + iowait };
  }
  return cpus;
}

/** Busy % of one CPU ('all' = average over all CPUs) between two readCpuTimes() results. */
export function cpuBusyPct(before, after, cpu) {
  const a = before?.[cpu];
  const b = after?.[cpu];
  if (!a || !b || b.total <= a.total) return null;
  return ((b.busy - a.busy) / (b.total - a.total)) * 100;
}

/** CPU time (µs, user and system) and resident memory (bytes) of any process, from /proc (Linux). */
export function procUsage(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const tick = 1e6 / CLOCK_TICKS;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { cpu: { user: Number(f[11]) * tick, system: Number(f[12]) * tick }, memory: { rss: rssKb * 1024 } };
}

/** USER_HZ: 100 on every Linux we run on (getconf CLK_TCK); read once. */
const CLOCK_TICKS = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/**
 * Starts a broker that is not a Node script (Mosquitto) under `taskset -c cpu`, with the same
 * handle as launch(): waitFor('listening') resolves once `port` accepts TCP connections,
 * call('usage') reads CPU time and RSS from /proc, stop() sends SIGTERM then SIGKILL.
 */
export function launchExternal(argv, { cpu, name = argv[0], port, env } = {}) {
  const [cmd, args] = withOpenFilesRaised(...(typeof cpu === 'number' ? ['taskset', ['-c', String(cpu), ...argv]] : [argv[0], argv.slice(1)]));
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  let exitInfo;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  });
  child.on('error', () => {});
  const pid = child.pid;
  const handle = {
    name,
    pid,
    exited,
    async call(method) {
      if (exitInfo) throw new Error(`${name} has exited (code ${exitInfo.code}): ${stderr.trim()}`);
      if (method === 'usage') return { ...procUsage(pid), at: performance.now() };
      if (method === 'stop') return handle.stop();
      throw new Error(`${name}: no '${method}' for an external broker`);
    },
    on() {
      return () => {};
    },
    async waitFor(type, timeoutMs = 30_000) {
      if (type !== 'listening') throw new Error(`${name}: cannot wait for '${type}'`);
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (exitInfo) throw new Error(`${name} exited (code ${exitInfo.code}) before listening: ${stderr.trim()}`);
        const ok = await new Promise((resolve) => {
          const s = net.connect({ host: '127.0.0.1', port }, () => {
            s.destroy();
            resolve(true);
          });
          s.on('error', () => resolve(false));
        });
        if (ok) return { type: 'listening', port, pid };
        if (Date.now() > deadline) throw new Error(`${name}: port ${port} not listening within ${timeoutMs} ms: ${stderr.trim()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop(graceMs = 5_000) {
      if (exitInfo) return exitInfo;
      child.kill('SIGTERM');
      const timer = setTimeout(() => handle.kill(), graceMs);
      const info = await exited;
      clearTimeout(timer);
      return info;
    },
    kill() {
      if (!exitInfo) child.kill('SIGKILL');
    },
  };
  return handle;
}

/** A free TCP port on 127.0.0.1 (for brokers that cannot report an ephemeral one). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}
