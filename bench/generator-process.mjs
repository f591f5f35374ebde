#!/usr/bin/env node
/**
 * The load generator, in its own process (pinned to a CPU other than the broker's by run.mjs).
 * Driven over IPC: prepare({scenario, conn, params}) → measure() → close() → stop.
 * measure() also returns this process's CPU time over the timed part.
 */
import { performance } from 'node:perf_hooks';
import { scenarioByName } from './lib/scenarios.mjs';
import { cpuDelta, serve } from './lib/process.mjs';

if (!process.send) {
  process.stderr.write('generator-process.mjs is started by bench/run.mjs (it needs an IPC channel)\n');
  process.exit(2);
}

let prepared;

serve({
  async prepare({ scenario, conn, params }) {
    if (prepared) throw new Error('already prepared');
    prepared = await scenarioByName(scenario).prepare({ conn, params });
    return prepared.info ?? {};
  },
  async measure() {
    if (!prepared) throw new Error('measure before prepare');
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const result = await prepared.measure();
    const wallMs = performance.now() - t0;
    const cpu1 = process.cpuUsage();
    // a scenario that drives a native generator (connstorm) reports that process's CPU as well
    const extra = result.generatorCpu;
    if (extra !== undefined) {
      cpu1.user += extra.userUs;
      cpu1.system += extra.systemUs;
    }
    const cpu = cpuDelta(cpu0, cpu1, wallMs);
    const { generatorCpu: _, ...rest } = result;
    return { ...rest, generator: { wallMs, ...cpu, maxRssBytes: process.resourceUsage().maxRSS * 1024 } };
  },
  async close() {
    await prepared?.close();
    prepared = undefined;
  },
  async stop() {
    await prepared?.close();
  },
});

process.send({ type: 'ready', pid: process.pid });
