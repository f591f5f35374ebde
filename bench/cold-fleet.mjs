#!/usr/bin/env node
/**
 * A fleet reconnecting to a restarted broker: every device has its own user and the broker
 * remembers nobody yet, so each CONNECT is a first login. With scrypt passwords each one costs a
 * KDF run (~40 ms of CPU at the default cost); with generated device tokens (`bastion passwd
 * --generate`) one salted SHA-256.
 *
 *   node bench/cold-fleet.mjs [--devices N] [--reps N] [--no-pin]
 *
 * Per rep and kind: a fresh broker process (Bastion core + passwordAuth, users file of N users)
 * pinned to CPU 0, the C generator (native/connstorm.c, user dev-<i> per connection, 100
 * handshakes in flight) on CPU 1. Prints conn/s and the broker's CPU per CONNECT (all its threads,
 * the KDF threads included). Run the build first.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connstorm, nativeConnectMany } from './lib/native.mjs';

const PASSWORD = 'a-fleet-password';

if (process.argv[2] === '--broker') {
  // the broker under test: prints its port, answers 'usage' lines with its CPU time, ends with stdin
  const { pino } = await import('pino');
  const { createCoreBroker } = await import('@bastion/core');
  const { passwordAuth } = await import('@bastion/middleware');
  const broker = await createCoreBroker({
    listeners: [{ transport: 'mqtt', port: 0, host: '127.0.0.1' }],
    middleware: [passwordAuth({ file: process.argv[3], watch: false })],
    logger: pino({ level: 'silent' }),
  });
  process.stdout.write(`${JSON.stringify({ port: Object.values(broker.addresses())[0].port })}\n`);
  const lines = createInterface({ input: process.stdin });
  lines.on('line', () => process.stdout.write(`${JSON.stringify(process.cpuUsage())}\n`));
  lines.on('close', () => broker.close().then(() => process.exit(0)));
} else {
  const { values } = parseArgs({ options: { devices: { type: 'string' }, reps: { type: 'string' }, 'no-pin': { type: 'boolean', default: false } } });
  const devices = Number(values.devices ?? 500);
  const reps = Number(values.reps ?? 3);
  const pin = !values['no-pin'] && spawnSync('taskset', ['-c', '0', 'true']).status === 0;
  const built = connstorm();
  if (built.path === undefined) {
    process.stderr.write(`cold-fleet.mjs needs the C generator: ${built.reason}\n`);
    process.exit(2);
  }
  const { hashDeviceToken, hashPassword, writeUsersFile } = await import('@bastion/middleware');
  const dir = mkdtempSync(path.join(tmpdir(), 'bastion-cold-fleet-'));
  try {
    // one hash per kind, given to every user: a first login costs the same whoever it is
    const token = `${PASSWORD}-${'t'.repeat(32)}`;
    const kinds = [
      { kind: 'scrypt password', password: PASSWORD, hash: await hashPassword(PASSWORD) },
      { kind: 'device token', password: token, hash: hashDeviceToken(token) },
    ];
    for (const k of kinds) {
      k.file = path.join(dir, `${k.kind.replace(' ', '-')}.txt`);
      await writeUsersFile(k.file, Array.from({ length: devices }, (_, i) => ({ username: `dev-${i}`, hash: k.hash, groups: [] })));
      k.samples = [];
    }
    for (let rep = 1; rep <= reps; rep++) {
      for (const k of rep % 2 ? kinds : [...kinds].reverse()) {
        const s = await once(k, built.path, devices, pin);
        k.samples.push(s);
        process.stderr.write(`[rep ${rep}] ${k.kind}: ${Math.round(s.rate).toLocaleString('en-US')} conn/s, broker ${s.usPerConnect.toFixed(0)} µs CPU per CONNECT${s.failed ? `, ${s.failed} refused ${JSON.stringify(s.errors)}` : ''}\n`);
      }
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    process.stdout.write(`\ncold fleet: ${devices.toLocaleString('en-US')} devices, each its own user, reconnecting to a fresh broker (${reps} reps${pin ? ', broker on CPU 0, generator on CPU 1' : ', not pinned'})\n`);
    for (const k of kinds) {
      const rates = k.samples.map((s) => s.rate);
      process.stdout.write(`  ${k.kind.padEnd(16)} ${Math.round(median(rates)).toLocaleString('en-US').padStart(7)} conn/s (${Math.round(Math.min(...rates))}–${Math.round(Math.max(...rates))})  ${median(k.samples.map((s) => s.usPerConnect)).toFixed(0).padStart(6)} µs broker CPU per CONNECT\n`);
    }
    const [scrypt, tokens] = kinds.map((k) => median(k.samples.map((s) => s.rate)));
    process.stdout.write(`  device tokens ÷ scrypt passwords: ${(tokens / scrypt).toFixed(1)}× the connection rate\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One fresh broker, one storm of `devices` first logins. */
async function once(k, binary, devices, pin) {
  const script = fileURLToPath(import.meta.url);
  const flags = process.env.BENCH_BROKER_NODE_FLAGS?.split(' ').filter(Boolean) ?? []; // as in run.mjs
  const argv = [process.execPath, ...flags, script, '--broker', k.file];
  const child = spawn(pin ? 'taskset' : argv[0], pin ? ['-c', '0', ...argv] : argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => JSON.parse((await lines.next()).value);
  const { port } = await next();
  const usage = async () => {
    child.stdin.write('usage\n');
    return next();
  };
  const before = await usage();
  const storm = pin ? 'taskset' : binary;
  const run = await nativeConnectMany(storm, { host: '127.0.0.1', port }, devices, { window: 100, idPrefix: 'cold-', username: 'dev-{i}', password: k.password, spread: true, ...(pin ? { prefixArgs: ['-c', '1', binary] } : {}) });
  const after = await usage();
  await run.close();
  child.stdin.end();
  await new Promise((r) => child.once('exit', r));
  const cpuUs = after.user - before.user + (after.system - before.system);
  return { rate: run.held / (run.elapsedMs / 1000), usPerConnect: cpuUs / Math.max(1, run.held), failed: run.failed, errors: run.errors };
}
