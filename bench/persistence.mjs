#!/usr/bin/env node
/**
 * Persistence encryption cost, in one run: node bench/persistence.mjs [--messages N] [--rounds R]
 *
 * QoS 1 throughput of Bastion with the Redis store and with the memory store, each unencrypted and
 * encrypted (AES-256-GCM, persistence.encryption), as encrypted/unencrypted ratios. The four
 * configurations run in rotating order, R rounds each, every measurement in a fresh broker process
 * (pinned to CPU 0 when taskset works; this generator and redis-server get the other CPU).
 *
 * Scenario: 1 publisher → 1 subscriber with a persistent session (clean session off, QoS 1
 * subscription), so every message goes through the store: queued (sealed), re-stored on delivery,
 * cleared on PUBACK. At most --window publishes wait for their PUBACK. Throughput = messages
 * received / time from the first publish to the last message received, after --warmup untimed ones.
 * The bench starts its own redis-server (no disk persistence) unless --redis URL is given.
 *
 * Needs a build first (npx tsc -b). Prints a table; --json prints the raw samples as JSON;
 * --cpu-prof DIR writes a V8 CPU profile of each broker process into DIR.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { launch, pinningPlan, serve } from './lib/process.mjs';

const SELF = fileURLToPath(import.meta.url);
const { values } = parseArgs({
  options: {
    broker: { type: 'string' },
    messages: { type: 'string', default: '20000' },
    warmup: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '3' },
    window: { type: 'string', default: '100' },
    payload: { type: 'string', default: '256' },
    redis: { type: 'string' },
    only: { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

// ---- broker child ---------------------------------------------------------------------------
if (values.broker) {
  const persistence = JSON.parse(values.broker);
  const { createBroker } = await import('@bastion/broker');
  const broker = await createBroker({
    profile: { version: 1, listeners: [{ protocol: 'mqtt', host: '127.0.0.1', port: 0 }], authentication: { anonymous: true }, logging: { level: 'silent' }, persistence,
      // the default per-client publish budget (5,000/s, burst 10,000) would pace the publisher: measure the store, not the limit
      rateLimits: { enabled: false } },
  });
  serve({
    stop: () => broker.close(),
    usage: () => ({ cpu: process.cpuUsage() }),
  });
  process.send({ type: 'listening', port: Object.values(broker.addresses())[0].port });
  await new Promise(() => undefined); // until 'stop'
}

if (values.help) {
  process.stdout.write(`${fileURLToPath(import.meta.url).split('/').slice(-2).join('/')} [--messages N] [--warmup N] [--rounds R] [--window W] [--payload BYTES] [--redis URL] [--no-pin] [--cpu-prof DIR] [--json]\n`);
  process.exit(0);
}

const int = (name) => {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`persistence.mjs: --${name} must be a positive integer\n`);
    process.exit(2);
  }
  return n;
};
const MESSAGES = int('messages');
const WARMUP = int('warmup');
const ROUNDS = int('rounds');
const WINDOW = int('window');
const PAYLOAD = Buffer.alloc(int('payload'), 'p');
const log = values.json ? () => undefined : (s) => process.stderr.write(`${s}\n`);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startRedis(cpu) {
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  const [cmd, argv] = typeof cpu === 'number' ? ['taskset', ['-c', String(cpu), 'redis-server', ...args]] : ['redis-server', args];
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10_000);
    child.once('error', reject);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('Ready to accept connections')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill('SIGKILL') };
}

function connect(port, clientId, clean) {
  const c = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 4, clientId, clean, reconnectPeriod: 0, keepalive: 60 });
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

/** Publish n QoS 1 messages (at most WINDOW unacknowledged) and resolve when the subscriber got them all. */
function run(pub, sub, n) {
  return new Promise((resolve, reject) => {
    let received = 0;
    let sent = 0;
    let acked = 0;
    const onMessage = () => {
      if (++received === n) {
        sub.off('message', onMessage);
        resolve(performance.now());
      }
    };
    sub.on('message', onMessage);
    const next = () => {
      while (sent < n && sent - acked < WINDOW) {
        sent++;
        pub.publish('bench/persistence', PAYLOAD, { qos: 1 }, (err) => {
          if (err) return reject(err);
          acked++;
          next();
        });
      }
    };
    next();
  });
}

async function measure(config, pinning) {
  const execArgv = values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`, `--cpu-prof-name=${config.name.replace(' ', '-')}-${Date.now()}.cpuprofile`] : [];
  const broker = launch(SELF, ['--broker', JSON.stringify(config.persistence)], { cpu: pinning.enabled ? pinning.broker : undefined, name: `broker ${config.name}`, execArgv });
  try {
    const { port } = await broker.waitFor('listening', 30_000);
    const tag = randomBytes(3).toString('hex');
    const sub = await connect(port, `bench-sub-${tag}`, false); // persistent session: every message goes through the store
    await sub.subscribeAsync('bench/persistence', { qos: 1 });
    const pub = await connect(port, `bench-pub-${tag}`, true);
    await run(pub, sub, WARMUP);
    const t0 = performance.now();
    const cpu0 = await broker.call('usage');
    const t1 = await run(pub, sub, MESSAGES);
    const cpu1 = await broker.call('usage');
    pub.end(true);
    sub.end(true);
    const ms = t1 - t0;
    const cpuMs = (cpu1.cpu.user + cpu1.cpu.system - cpu0.cpu.user - cpu0.cpu.system) / 1000;
    return { msgPerSec: (MESSAGES / ms) * 1000, ms, brokerCpuPct: (cpuMs / ms) * 100, brokerCpuUsPerMsg: (cpuMs * 1000) / MESSAGES };
  } finally {
    await broker.stop();
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const pinning = pinningPlan({ disabled: values['no-pin'] });
if (pinning.enabled) spawnSync('taskset', ['-pc', String(pinning.generator), String(process.pid)], { stdio: 'ignore' });
const redis = values.redis ? { url: values.redis, stop: () => undefined } : await startRedis(pinning.enabled ? pinning.generator : undefined);
const KEY = randomBytes(32).toString('hex'); // a throwaway key, only in this process and its children
const redisConfig = (prefix, encrypted) => ({
  store: 'redis',
  redis: { url: redis.url, prefix },
  ...(encrypted ? { encryption: { keys: [{ value: KEY }] } } : {}),
});
const STORES = values.only ? values.only.split(',') : ['redis', 'memory'];
if (STORES.some((s) => s !== 'redis' && s !== 'memory')) {
  process.stderr.write('persistence.mjs: --only takes redis, memory or both\n');
  process.exit(2);
}
const configs = STORES.flatMap((name) => [
  { name, encrypted: false },
  { name, encrypted: true },
]);

log(`persistence bench: ${MESSAGES} QoS 1 messages of ${PAYLOAD.length} B per sample (+${WARMUP} warm-up), window ${WINDOW}, ${ROUNDS} rounds; pinning: ${pinning.reason}`);
const samples = [];
try {
  for (let round = 0; round < ROUNDS; round++) {
    // rotate the order so no configuration always runs first (or last)
    const order = configs.map((_, i) => configs[(i + round) % configs.length]);
    for (const c of order) {
      const persistence = c.name === 'redis' ? redisConfig(`bench-${randomBytes(4).toString('hex')}:`, c.encrypted) : c.encrypted ? { encryption: { keys: [{ value: KEY }] } } : { store: 'memory' };
      const label = `${c.name}${c.encrypted ? ' encrypted' : ''}`;
      const r = await measure({ name: label, persistence }, pinning);
      samples.push({ round, store: c.name, encrypted: c.encrypted, ...r });
      log(`  round ${round + 1}: ${label.padEnd(16)} ${Math.round(r.msgPerSec).toString().padStart(7)} msg/s  broker CPU ${Math.round(r.brokerCpuPct).toString().padStart(3)}%, ${r.brokerCpuUsPerMsg.toFixed(1)} µs/msg`);
    }
  }
} finally {
  redis.stop();
}

const rows = STORES.map((store) => {
  const plain = median(samples.filter((s) => s.store === store && !s.encrypted).map((s) => s.msgPerSec));
  const enc = median(samples.filter((s) => s.store === store && s.encrypted).map((s) => s.msgPerSec));
  const perRound = Array.from({ length: ROUNDS }, (_, r) => {
    const p = samples.find((s) => s.round === r && s.store === store && !s.encrypted);
    const e = samples.find((s) => s.round === r && s.store === store && s.encrypted);
    return e.msgPerSec / p.msgPerSec;
  });
  const cpuPlain = median(samples.filter((s) => s.store === store && !s.encrypted).map((s) => s.brokerCpuUsPerMsg));
  const cpuEnc = median(samples.filter((s) => s.store === store && s.encrypted).map((s) => s.brokerCpuUsPerMsg));
  // the ratio of median throughputs, and the median of the per-round ratios (each round ran both
  // configurations back to back, so it shares that moment's load: the steadier figure on a busy machine)
  return { store, plain, encrypted: enc, ratio: enc / plain, paired: median(perRound), target: store === 'redis' ? 0.8 : 0.9, perRound, cpuPlain, cpuEnc };
});

if (values.json) {
  process.stdout.write(JSON.stringify({ machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version }, params: { MESSAGES, WARMUP, ROUNDS, WINDOW, payload: PAYLOAD.length }, pinning, samples, rows }, null, 2) + '\n');
} else {
  process.stdout.write('\nstore    unencrypted msg/s  encrypted msg/s  ratio (median)  paired (median)  target  per round        broker CPU µs/msg (unencrypted → encrypted)\n');
  for (const r of rows) {
    process.stdout.write(
      `${r.store.padEnd(8)} ${Math.round(r.plain).toString().padStart(17)}  ${Math.round(r.encrypted).toString().padStart(15)}  ${r.ratio.toFixed(2).padStart(14)}  ${r.paired.toFixed(2).padStart(15)}  ≥ ${r.target.toFixed(1)}   ${r.perRound.map((x) => x.toFixed(2)).join(' ').padEnd(15)}  ${r.cpuPlain.toFixed(1)} → ${r.cpuEnc.toFixed(1)}\n`,
    );
  }
}
