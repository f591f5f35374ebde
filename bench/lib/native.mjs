/**
 * The C connection generator (bench/native/connstorm.c): compiled on first use, driven from the
 * generator process for the plain-TCP connection-rate scenario. A Node generator spends ~110 µs of
 * CPU per connection and so caps the measurable rate near 8,000 conn/s on one core; this one spends
 * ~30 µs (the kernel's share), so the broker sets the pace.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const bench = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = path.join(bench, 'native', 'connstorm.c');
const BINARY = path.join(bench, '.cache', 'connstorm');

/**
 * The compiled generator's path, building it when missing or older than its source; undefined
 * (with the reason) when there is no C compiler or it does not build: the bench then keeps the
 * Node generator and says so.
 */
export function connstorm() {
  try {
    if (statSync(BINARY).mtimeMs >= statSync(SOURCE).mtimeMs) return { path: BINARY };
  } catch {
    /* not built yet */
  }
  mkdirSync(path.dirname(BINARY), { recursive: true });
  // the first compiler there is: $CC, cc, gcc, clang, or g++ told the source is C
  const compilers = [...(process.env.CC ? [[process.env.CC]] : []), ['cc'], ['gcc'], ['clang'], ['g++', '-x', 'c']];
  const missing = [];
  for (const [cc, ...lang] of compilers) {
    // built beside it and renamed: a half-written binary is never taken for a built one
    const tmp = `${BINARY}.${process.pid}.tmp`;
    const r = spawnSync(cc, ['-O2', ...lang, '-o', tmp, SOURCE], { encoding: 'utf8' });
    if (r.error) {
      missing.push(cc);
      continue;
    }
    if (r.status !== 0) return { reason: `${cc} failed to build ${path.relative(process.cwd(), SOURCE)}: ${r.stderr.trim().split('\n').slice(-3).join(' / ')}` };
    renameSync(tmp, BINARY);
    return { path: BINARY };
  }
  return { reason: `no C compiler (tried ${missing.join(', ')}); on Debian: apt-get install build-essential` };
}

/**
 * Opens `count` MQTT connections (plain TCP, clean session) with at most `window` handshakes in
 * flight, holding the accepted ones. Resolves with what connectMany (raw-mqtt.mjs) reports, plus
 * the generator's CPU over the timed part and close(), which disconnects them all.
 */
export function nativeConnectMany(binary, conn, count, { window, idPrefix, username, password, keepalive = 60, spread, first = 0, prefixArgs = [] }) {
  // prefixArgs: when `binary` is a wrapper (taskset -c 1 …), its arguments before ours
  const args = [...prefixArgs, conn.host, String(conn.port), String(count), String(window), idPrefix, String(keepalive), spread ? '1' : '0', String(first)];
  if (username !== undefined || password !== undefined) args.push(username ?? '', password ?? '');
  const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      let r;
      try {
        r = JSON.parse(line);
      } catch {
        return reject(new Error(`connstorm printed '${line}'`));
      }
      resolve({
        held: r.connected,
        failed: r.failed,
        errors: r.errors,
        elapsedMs: r.elapsedMs,
        cpu: { userUs: r.userUs, systemUs: r.systemUs },
        async close() {
          child.stdin.end('close\n');
          await exited;
        },
      });
    });
    exited.then((code) => reject(new Error(`connstorm exited with ${code} before reporting`)));
  });
}
