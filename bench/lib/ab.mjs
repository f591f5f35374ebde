/**
 * A/B of one control on the hot path: QoS 0 throughput of a Bastion broker with a profile section
 * on, as a ratio to the same broker with it off — interleaved in one run, each measurement with a
 * fresh broker (pinned to CPU 0) and a fresh load generator (bench/generator-process.mjs, CPU 1).
 * The script that calls runAB() is also the broker child (`--broker off|on`), so a bench is just
 * its two profiles:
 *
 *   await runAB({ name: 'acl', script: import.meta.url, what: 'ACL with 10,000 rules', profile: (side, dir) => ({ … }) });
 *
 * Flags: [--messages N] [--reps N] [--retries N] [--no-pin] [--json]. Run the build first.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuBusyPct, cpuDelta, launch, pinningPlan, readCpuTimes, serve } from './process.mjs';
import { DEFAULT_PARAMS } from './scenarios.mjs';
import { DISTURBED_PCT, median, summarize } from './stats.mjs';

const GENERATOR = fileURLToPath(new URL('../generator-process.mjs', import.meta.url));
export const BENCH_USER = { username: 'bench', password: 'bench-password' };

/** The part every side shares: tier 1, one TCP listener, the bench user, nothing logged. */
export function baseProfile(dir) {
  return {
    version: 1,
    tier: 1,
    listeners: [{ name: 'tcp', protocol: 'mqtt', host: '127.0.0.1', port: 0 }],
    authentication: { passwords: { file: path.join(dir, 'users.txt') } },
    logging: { level: 'silent' },
    // the default per-client publish budget (5000/s at tier 1) would cap both sides alike
    rateLimits: { enabled: false },
  };
}

/**
 * @param {{ name: string, script: string, what: string, profile: (side: 'off' | 'on', dir: string) => object,
 *           prepare?: (dir: string) => void | Promise<void> }} bench
 */
export async function runAB(bench) {
  const { values } = parseArgs({
    options: {
      broker: { type: 'string' },
      dir: { type: 'string' },
      messages: { type: 'string', default: '100000' },
      reps: { type: 'string', default: '5' },
      retries: { type: 'string', default: '2' },
      'no-pin': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      `usage: node bench/${bench.name}.mjs [--messages N] [--reps N] [--retries N] [--no-pin] [--json]\n  --retries N: re-run a measurement up to N times when other processes took >= 10% of a pinned CPU (the least disturbed is kept)\n`,
    );
    return;
  }
  if (values.broker) return brokerChild(bench, values);
  return parent(bench, values);
}

async function brokerChild(bench, values) {
  const side = values.broker;
  const { createBroker } = await import('@bastion/broker');
  const broker = await createBroker({ profile: bench.profile(side, values.dir), baseDir: values.dir });
  // BASTION_BENCH_CPU_PROFILE=DIR: write a .cpuprofile of each broker (open it in Chrome DevTools)
  const profDir = process.env.BASTION_BENCH_CPU_PROFILE;
  let session;
  if (profDir) {
    const { Session } = await import('node:inspector/promises');
    session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
  }
  serve({
    usage: () => ({ cpu: process.cpuUsage(), memory: process.memoryUsage(), at: performance.now() }),
    stop: async () => {
      if (session) {
        const { profile: prof } = await session.post('Profiler.stop');
        writeFileSync(path.join(profDir, `broker-${bench.name}-${side}-${process.pid}.cpuprofile`), JSON.stringify(prof));
      }
      await broker.close();
    },
  });
  process.send({ type: 'listening', port: broker.addresses().tcp.port, middleware: broker.middleware.map((m) => m.name) });
}

async function parent(bench, values) {
  const messages = Number(values.messages);
  const reps = Number(values.reps);
  const pinning = pinningPlan({ disabled: values['no-pin'] });
  const dir = mkdtempSync(path.join(tmpdir(), `bastion-bench-${bench.name}-`));
  const { hashPassword, serializeUsers } = await import('@bastion/middleware');
  writeFileSync(path.join(dir, 'users.txt'), serializeUsers([{ username: BENCH_USER.username, hash: await hashPassword(BENCH_USER.password), groups: [] }]), { mode: 0o600 });
  await bench.prepare?.(dir);
  const params = { ...DEFAULT_PARAMS, messages };
  const samples = [];
  const log = (s) => values.json || process.stderr.write(`${s}\n`);
  log(`${bench.name} bench: qos0, ${messages} messages, ${reps} reps, pinning: ${pinning.enabled ? 'broker CPU 0, generator CPU 1' : pinning.reason}`);
  try {
    for (let rep = 0; rep < reps; rep++) {
      // alternate which side goes first, so drift falls on both
      for (const side of rep % 2 === 0 ? ['off', 'on'] : ['on', 'off']) {
        let s;
        for (let attempt = 0; attempt <= Number(values.retries); attempt++) {
          const t = await measure(fileURLToPath(bench.script), side, rep, params, dir, pinning);
          if (s === undefined || (!t.error && (s.error || (t.otherPct ?? 0) < (s.otherPct ?? 0)))) s = t;
          if (!s.error && (s.otherPct ?? 0) < DISTURBED_PCT) break;
          if (attempt < Number(values.retries)) log(`  rep ${rep + 1} ${side}: ${t.error ? `failed (${t.error.split('\n')[0]})` : `disturbed (other processes took ${Math.round(t.otherPct ?? 0)}% of a pinned CPU)`}, again`);
        }
        samples.push(s);
        log(`  rep ${rep + 1} ${side.padEnd(3)} ${s.error ? `error: ${s.error}` : `${Math.round(s.value)} msg/s, broker ${Math.round(s.broker.pct)}% CPU, ${s.broker.usPerMessage.toFixed(2)} µs/msg, other load ${Math.round(s.otherPct ?? 0)}%, lost ${s.lost ?? 0}`}`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const ok = (side) => samples.filter((s) => s.side === side && !s.error);
  const off = ok('off');
  const on = ok('on');
  const paired = [];
  for (const s of on) {
    const b = off.find((x) => x.rep === s.rep);
    if (b) paired.push(s.value / b.value);
  }
  const result = {
    bench: bench.name,
    what: bench.what,
    scenario: 'qos0',
    messages,
    reps,
    pinning,
    off: summarize(off.map((s) => s.value)),
    on: summarize(on.map((s) => s.value)),
    ratio: median(on.map((s) => s.value)) / median(off.map((s) => s.value)),
    pairedRatio: summarize(paired),
    cpuPerMessageRatio: median(on.map((s) => s.broker.usPerMessage)) / median(off.map((s) => s.broker.usPerMessage)),
    middlewareOn: on[0]?.middleware,
    samples,
  };
  if (values.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else {
    process.stdout.write(
      [
        `qos0 msg/s, ${bench.what} off: median ${Math.round(result.off.median)} (${Math.round(result.off.min)}–${Math.round(result.off.max)})`,
        `qos0 msg/s, ${bench.what} on:  median ${Math.round(result.on.median)} (${Math.round(result.on.min)}–${Math.round(result.on.max)})`,
        `throughput ratio on/off: ${result.ratio.toFixed(3)} (paired per rep: ${result.pairedRatio.min.toFixed(3)}–${result.pairedRatio.max.toFixed(3)}, median ${result.pairedRatio.median.toFixed(3)}); broker CPU per message on/off: ${result.cpuPerMessageRatio.toFixed(3)}`,
        `middleware on: ${(result.middlewareOn ?? []).join(', ')}`,
        '',
      ].join('\n'),
    );
  }
  return result;
}

async function measure(script, side, rep, params, dir, pinning) {
  const sample = { side, rep };
  const broker = launch(script, ['--broker', side, '--dir', dir], { cpu: pinning.enabled ? pinning.broker : undefined, name: `broker ${side}` });
  let generator;
  try {
    const listening = await broker.waitFor('listening', 60_000);
    // (lib/process.mjs hands every waiter the exit message when a child dies early)
    if (listening.type !== 'listening' || typeof listening.port !== 'number') throw new Error(`broker ${side} exited before listening (code ${listening.code})`);
    sample.middleware = listening.middleware;
    generator = launch(GENERATOR, [], { cpu: pinning.enabled ? pinning.generator : undefined, name: 'generator' });
    await generator.waitFor('ready', 30_000);
    const conn = { target: `${side}`, host: '127.0.0.1', port: listening.port, transport: 'tcp', ...BENCH_USER };
    await generator.call('prepare', { scenario: 'qos0', conn, params }, 120_000);
    const sys0 = readCpuTimes();
    const before = await broker.call('usage');
    const result = await generator.call('measure', {}, 300_000);
    const after = await broker.call('usage');
    const sys1 = readCpuTimes();
    await generator.call('close', {}, 10_000);
    const wallMs = after.at - before.at;
    Object.assign(sample, result, { broker: { wallMs, ...cpuDelta(before.cpu, after.cpu, wallMs) } });
    sample.broker.usPerMessage = (sample.broker.userUs + sample.broker.systemUs) / result.delivered;
    // CPU that other processes took on the pinned CPUs during the timed part
    if (pinning.enabled) {
      const b = cpuBusyPct(sys0, sys1, String(pinning.broker));
      const g = cpuBusyPct(sys0, sys1, String(pinning.generator));
      if (b !== null && g !== null) sample.otherPct = Math.max(0, b - sample.broker.pct, g - result.generator.pct);
    }
  } catch (err) {
    sample.error = err instanceof Error ? err.message : String(err);
  } finally {
    await Promise.allSettled([generator?.stop(5_000), broker.stop(5_000)]);
  }
  return sample;
}
