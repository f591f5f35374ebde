#!/usr/bin/env node
/**
 * One broker under test, in its own process:
 *   node bench/broker-process.mjs <target> [--tls-dir DIR]
 * Starts the target from lib/targets.mjs on 127.0.0.1 with an ephemeral port and reports
 * {"type":"listening","port":N} through IPC (when forked by run.mjs) or as a JSON line on stdout
 * (when started by hand). Under IPC it answers 'usage' (CPU time and memory of this process) and
 * 'stop'.
 */
import { parseArgs } from 'node:util';
import { targetByName } from './lib/targets.mjs';
import { serve } from './lib/process.mjs';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { 'tls-dir': { type: 'string' } },
});
if (positionals.length !== 1) {
  process.stderr.write('usage: node bench/broker-process.mjs <target> [--tls-dir DIR]\n');
  process.exit(2);
}

const target = targetByName(positionals[0]);
let running;
try {
  running = await target.start({ tlsDir: values['tls-dir'] });
} catch (err) {
  process.stderr.write(`broker-process ${target.name}: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
}

const listening = { type: 'listening', target: target.name, port: running.port, pid: process.pid, info: running.info };
if (process.send) {
  serve({
    // gc: a full collection first (run.mjs starts brokers with --expose-gc), for memory readings
    usage: ({ gc } = {}) => {
      if (gc && typeof globalThis.gc === 'function') {
        globalThis.gc();
        globalThis.gc();
      }
      return { cpu: process.cpuUsage(), memory: process.memoryUsage(), at: performance.now() };
    },
    stop: async () => {
      await running.close();
    },
  });
  process.send(listening);
} else {
  process.stdout.write(`${JSON.stringify(listening)}\n`);
  const shutdown = async () => {
    await running.close();
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}
