#!/usr/bin/env node
/**
 * Bastion vs bare Aedes, in one run: node bench/run.mjs [--help]
 *
 * For each repetition, each scenario and each target (targets in rotating order), a fresh broker
 * process (bench/broker-process.mjs, pinned to CPU 0) and a fresh load generator
 * (bench/generator-process.mjs, pinned to CPU 1) are started; the generator connects, warms up,
 * then runs the timed part while the broker's CPU time is sampled around it. The table is printed
 * and everything (machine, parameters, every raw sample) goes to bench/results/<timestamp>.json.
 *
 * Targets and scenarios are tables (lib/targets.mjs, lib/scenarios.mjs): adding one needs no
 * change here.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { USAGE, UsageError, parseFlags } from './lib/args.mjs';
import { connstorm } from './lib/native.mjs';
import { makeTlsDir } from './lib/certs.mjs';
import { cpuBusyPct, cpuDelta, freePort, launch, launchExternal, pinningPlan, readCpuTimes } from './lib/process.mjs';
import { formatReport } from './lib/report.mjs';
import { scenarioByName } from './lib/scenarios.mjs';
import { DISTURBED_PCT, otherLoadPct, summarizeRun } from './lib/stats.mjs';
import { connectionFor, targetByName } from './lib/targets.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const formatValue = (v) => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(2));
const BROKER = path.join(here, 'broker-process.mjs');
const GENERATOR = path.join(here, 'generator-process.mjs');

let flags;
try {
  flags = parseFlags(process.argv.slice(2));
} catch (err) {
  if (err instanceof UsageError) {
    process.stderr.write(`run.mjs: ${err.message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  throw err;
}
if (flags.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (flags.report) {
  // print the table of an earlier run again (bench/results/<timestamp>.json), measuring nothing
  const { readFile } = await import('node:fs/promises');
  process.stdout.write(`${formatReport(JSON.parse(await readFile(flags.report, 'utf8')))}\n`);
  process.exit(0);
}

const log = flags.json ? () => {} : (line) => process.stderr.write(`${line}\n`);
const scenarios = flags.scenarios.map(scenarioByName);
// a target that cannot run here (Mosquitto not installed) is skipped, and the reason printed
const skipped = [];
const targets = flags.targets.map(targetByName).filter((t) => {
  const ok = t.available ? t.available() : true;
  if (ok !== true) skipped.push({ target: t.name, reason: String(ok) });
  return ok === true;
});
const targetInfo = {};
const params = flags.params;
// connection rate over plain TCP: the C generator when it builds (the Node one caps the rate)
if (flags.generator !== 'node' && flags.scenarios.includes('connrate')) {
  const built = connstorm();
  if (built.path !== undefined) params.connstorm = built.path;
  else if (flags.generator === 'native') {
    process.stderr.write(`run.mjs: --generator native: ${built.reason}\n`);
    process.exit(2);
  } else params.connGeneratorNote = `connrate over TCP used the Node generator: ${built.reason}`;
}
const pinning = pinningPlan({ disabled: !flags.pin });
// A measurement that has not finished by then is recorded as failed (the bench always stops).
const measureTimeoutMs = Math.max(60_000, params.messages * 2);

const live = new Set();
let tlsDir;
async function cleanup() {
  await Promise.allSettled([...live].map((c) => c.stop(2_000)));
  await tlsDir?.remove();
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const c of live) c.kill();
    Promise.resolve(tlsDir?.remove())
      .catch(() => {})
      .finally(() => process.exit(130));
  });
}

/**
 * CPU time that went to processes other than the broker and the generator during the timed part,
 * in % of a CPU: on the broker's and the generator's CPU when pinned, else over the whole machine.
 * High values mean the sample was disturbed (another job on the shared machine).
 */
function otherLoad(sys0, sys1, sample) {
  if (!sys0 || !sys1) return null;
  const clamp = (n) => (n === null ? null : Math.max(0, n));
  if (pinning.enabled) {
    const b = cpuBusyPct(sys0, sys1, String(pinning.broker));
    const g = cpuBusyPct(sys0, sys1, String(pinning.generator));
    return {
      brokerCpuBusyPct: b,
      generatorCpuBusyPct: g,
      onBrokerCpuPct: clamp(b === null ? null : b - sample.broker.pct),
      onGeneratorCpuPct: clamp(g === null ? null : g - sample.generator.pct - (sample.attack?.cpuPct ?? 0)),
    };
  }
  const all = cpuBusyPct(sys0, sys1, 'all');
  const n = os.availableParallelism?.() ?? os.cpus().length;
  return { machineBusyPct: all, elsewherePct: clamp(all === null ? null : all * n - sample.broker.pct - sample.generator.pct - (sample.attack?.cpuPct ?? 0)) };
}

/** One broker, one generator, one timed measurement. Returns a raw sample. */
async function measureOnce(rep, scenario, target) {
  const sample = { rep, scenario: scenario.name, target: target.name, startedAt: new Date().toISOString() };
  const cpu = pinning.enabled ? pinning.broker : undefined;
  let broker;
  let external;
  if (target.external) {
    const port = await freePort();
    external = await target.command({ tlsDir: tlsDir?.dir, port });
    broker = launchExternal(flags.nice ? ['nice', '-n', String(flags.nice), ...external.argv] : external.argv, { cpu, name: `broker ${target.name}`, port });
  } else {
    const brokerArgs = [target.name];
    if (tlsDir) brokerArgs.push('--tls-dir', tlsDir.dir);
    // --expose-gc: the memory scenario reads the heap after a full collection
    const execArgv = ['--expose-gc', ...(process.env.BENCH_BROKER_NODE_FLAGS?.split(' ').filter(Boolean) ?? [])];
    if (flags.cpuProf) execArgv.push('--cpu-prof', `--cpu-prof-dir=${flags.cpuProf}`, `--cpu-prof-name=${scenario.name}-${target.name}-rep${rep}-${Date.now()}.cpuprofile`);
    broker = launch(BROKER, brokerArgs, { cpu, name: `broker ${target.name}`, execArgv, nice: flags.nice || undefined });
  }
  live.add(broker);
  let generator;
  const withGc = typeof scenario.fromBroker === 'function';
  try {
    const listening = await broker.waitFor('listening', 30_000);
    if (listening.info) targetInfo[target.name] = listening.info;
    generator = launch(GENERATOR, [], { cpu: pinning.enabled ? pinning.generator : undefined, name: 'generator', nice: flags.nice || undefined });
    live.add(generator);
    await generator.waitFor('ready', 30_000);
    const conn = connectionFor(target, listening.port, tlsDir);
    const info = await generator.call('prepare', { scenario: scenario.name, conn, params }, measureTimeoutMs);
    const sys0 = readCpuTimes();
    const before = await broker.call('usage', { gc: withGc });
    let result = await generator.call('measure', {}, measureTimeoutMs);
    const after = await broker.call('usage', { gc: withGc });
    const sys1 = readCpuTimes();
    await generator.call('close', {}, 30_000);
    if (withGc) result = { ...result, ...scenario.fromBroker({ before, after, result }) };
    const brokerWallMs = after.at - before.at;
    Object.assign(sample, result, {
      broker: {
        wallMs: brokerWallMs,
        ...cpuDelta(before.cpu, after.cpu, brokerWallMs),
        rssBytesBefore: before.memory.rss,
        rssBytesAfter: after.memory.rss,
        heapUsedBytesAfter: after.memory.heapUsed,
      },
      tls: info?.tls,
    });
    if (typeof result.delivered === 'number' && result.delivered > 0) {
      // CPU per delivered message: comparable even when the generator, not the broker, set the pace
      sample.broker.usPerMessage = (sample.broker.userUs + sample.broker.systemUs) / result.delivered;
      sample.generator.usPerMessage = (sample.generator.userUs + sample.generator.systemUs) / result.delivered;
    }
    sample.otherLoad = otherLoad(sys0, sys1, sample);
  } catch (err) {
    sample.error = err instanceof Error ? err.message : String(err);
  } finally {
    await Promise.allSettled([generator?.stop(5_000), broker.stop(5_000)]);
    await external?.cleanup?.();
    live.delete(broker);
    if (generator) live.delete(generator);
  }
  return sample;
}

async function main() {
  const startedAt = new Date();
  if (targets.some((t) => t.transport === 'tls') || scenarios.length === 0) {
    tlsDir = await makeTlsDir();
    log(`TLS certificates: ${tlsDir.source} (in ${tlsDir.dir}, removed at the end)`);
  }
  if (!pinning.enabled) log(`note: not pinning processes to CPUs: ${pinning.reason}`);
  for (const s of skipped) log(`skipping ${s.target}: ${s.reason}`);

  const total = flags.reps * scenarios.length * targets.length;
  const samples = [];
  const discarded = [];
  let done = 0;
  for (let rep = 1; rep <= flags.reps; rep++) {
    for (const scenario of scenarios) {
      // rotate the start so no target always runs first (or right after the same neighbour)
      const order = targets.map((_, i) => targets[(i + rep - 1) % targets.length]);
      for (const target of order) {
        done++;
        const tag = `[${String(done).padStart(String(total).length)}/${total}] rep ${rep} ${scenario.name} ${target.name}`;
        const attempts = [];
        for (let attempt = 1; attempt <= flags.retries + 1; attempt++) {
          const s = await measureOnce(rep, scenario, target);
          s.attempt = attempt;
          attempts.push(s);
          if (s.error) {
            log(`${tag}: FAILED: ${s.error.split('\n')[0]}`);
            break; // failures are not noise: do not retry them
          }
          const other = otherLoadPct(s);
          log(
            `${tag}: ${formatValue(s.value)} ${s.unit}` +
              `${s.p50 !== undefined ? ` (p50 ${s.p50.toFixed(2)}, p99.9 ${s.p999.toFixed(2)} ms)` : ''}` +
              `${s.attack ? ` [attack: ${Math.round(s.attack.attemptsPerSec)} guesses/s, ${s.attack.badCredentials} refused CONNACK, ${s.attack.refusedAtConnect} dropped, ${s.attack.accepted} accepted, ${s.attack.idleOpen} idle open]` : ''}` +
              `${s.lost ? ` (${s.delivered}/${s.expected} delivered)` : ''}` +
              ` in ${(s.elapsedMs / 1000).toFixed(2)} s, broker ${Math.round(s.broker.pct)}% CPU, generator ${Math.round(s.generator.pct)}% CPU` +
              `${other !== null ? `, other load ${Math.round(other)}%` : ''}` +
              `${other !== null && other >= DISTURBED_PCT && attempt <= flags.retries ? ' — disturbed, measuring again' : ''}`,
          );
          if (other === null || other < DISTURBED_PCT) break;
        }
        // keep the least disturbed successful attempt
        const ok = attempts.filter((a) => !a.error);
        const kept = ok.length > 0 ? ok.reduce((a, b) => ((otherLoadPct(b) ?? 0) < (otherLoadPct(a) ?? 0) ? b : a)) : attempts[attempts.length - 1];
        samples.push(kept);
        for (const a of attempts) if (a !== kept) discarded.push({ ...a, discarded: 'disturbed by other load; a less disturbed attempt was kept' });
      }
    }
  }

  const summary = summarizeRun(samples, { scenarios, targets });
  const negotiated = [...new Set(samples.filter((s) => s.tls).map((s) => `${s.target}: ${s.tls.protocol} ${s.tls.cipher}`))].join(', ');
  const cpus = os.cpus();
  const result = {
    bench: 'bastion',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    command: ['node', 'bench/run.mjs', ...process.argv.slice(2)].join(' '),
    machine: {
      cpuModel: cpus[0]?.model ?? 'unknown',
      cpus: cpus.length,
      availableParallelism: os.availableParallelism?.() ?? cpus.length,
      totalMemBytes: os.totalmem(),
      platform: os.platform(),
      release: os.release(),
      arch: os.arch(),
      node: process.version,
      loadavgAtStart: os.loadavg(),
    },
    reps: flags.reps,
    retries: flags.retries,
    disturbedPct: DISTURBED_PCT,
    params,
    pinning,
    nice: flags.nice,
    tls: tlsDir ? { source: tlsDir.source, negotiated: negotiated || undefined } : undefined,
    scenarios: scenarios.map(({ name, description, unit }) => ({ name, description, unit })),
    targets: targets.map(({ name, description, transport, baseline, alsoVs, mosquitto, tier }) => ({ name, description, transport, baseline, alsoVs, mosquitto, tier, info: targetInfo[name] })),
    skippedTargets: skipped,
    summary,
    samples,
    discardedSamples: discarded,
  };

  const resultsDir = path.join(here, 'results');
  await mkdir(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `${startedAt.toISOString().replace(/:/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);

  if (flags.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else {
    process.stdout.write(`\n${formatReport(result)}\n\nraw samples: ${path.relative(process.cwd(), file)}\n`);
  }
  return samples.some((s) => s.error) ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  process.stderr.write(`run.mjs: ${err instanceof Error ? err.stack : String(err)}\n`);
} finally {
  await cleanup();
}
process.exit(code);
