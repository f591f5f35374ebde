#!/usr/bin/env node
/**
 * What the limits cost, and what they buy:  node bench/limits.mjs [--reps N] [--messages N] [--latency-seconds N] [--no-pin] [--json]
 *
 * (1) QoS 0 throughput of one publisher → one subscriber with every limit on but none tripped
 *     (rate limits, protocol limits, auto-disconnect, connection caps, slow-consumer guard), as a
 *     ratio to the same profile with all of them off. Target ≥ 0.95.
 * (2) Publish→receive latency of a legitimate client at 1,000 msg/s while 127.0.0.2 floods
 *     connections (idle sockets) and guesses passwords, as a ratio to the same client on a quiet
 *     broker, both with the limits on. Target p99 ≤ 2×.
 *
 * Each measurement gets a fresh broker process (this file with --broker, pinned to CPU 0) and a
 * fresh load generator (bench/generator-process.mjs, pinned to CPU 1), driven over IPC with the
 * helpers and scenarios of bench/lib (qos0, latency, latency-flood). Needs the build
 * (`npx -y pnpm@10 run build`).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { launch, pinningPlan, serve } from './lib/process.mjs';
import { DEFAULT_PARAMS } from './lib/scenarios.mjs';
import { median, summarize } from './lib/stats.mjs';

const here = fileURLToPath(import.meta.url);
const GENERATOR = path.join(path.dirname(here), 'generator-process.mjs');
const USER = { username: 'bench', password: 'bench-password' };

/** Budgets far above the load: every limit is evaluated on every packet, none trips. */
const LIMITS_ON = {
  rateLimits: {
    // per-address connection limits as a tier-3 deployment has them: these are what the flood meets
    connections: { perIp: { rate: 50, per: '10s' }, total: { rate: 100_000, per: '1s' } },
    concurrent: { perIp: 200, total: 20_000, authPerIp: 4 },
    publish: {
      perClient: { messages: { rate: 10_000_000, burst: 10_000_000 }, bytes: { rate: '4GiB', burst: '4GiB' } },
      perUser: { messages: { rate: 100_000_000, per: '1s' }, bytes: { rate: '100GiB', per: '1s' } },
      perListener: { bench: { messages: { rate: 100_000_000, burst: 100_000_000 }, bytes: { rate: '100GiB', burst: '100GiB' } } },
      total: { messages: { rate: 100_000_000, burst: 100_000_000 }, bytes: { rate: '100GiB', burst: '100GiB' } },
    },
    subscribe: { perClient: { rate: 10_000, burst: 10_000 }, perUser: { rate: 100_000, per: '1s' } },
    // password guessing, as at tier 3: 10 failures per address and minute, then refused at accept
    authFailures: { perIp: { rate: 10, per: '1m' } },
    // sockets refused at accept are held 2 s before they are closed, as at tier 3
    tarpit: { hold: '2s' },
  },
  protocol: { maxTopicLength: 1024, maxTopicLevels: 16, maxSubscriptionsPerClient: 100, maxQueuedPerClient: 1000, maxInflightInbound: 100, clientId: { maxLength: 64 }, slowConsumer: { maxBacklog: '8MiB', drainTimeout: '10s' } },
  disconnect: { keepalive: { max: 1200 }, idleTimeout: '1h', maxAge: '24h' },
};
const LIMITS_OFF = { rateLimits: { enabled: false }, protocol: { enabled: false }, disconnect: { enabled: false } };

// ---- broker child ----------------------------------------------------------------------------

async function brokerChild(mode) {
  const [{ createBroker }, { hashPassword }, { pino }] = await Promise.all([import('@bastion/broker'), import('@bastion/middleware'), import('pino')]);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bastion-bench-limits-'));
  await writeFile(path.join(dir, 'users.txt'), `${USER.username}:${await hashPassword(USER.password)}\n`, { mode: 0o600 });
  const profile = {
    version: 1,
    tier: 1,
    name: `bench-limits-${mode}`,
    listeners: [{ name: 'bench', protocol: 'mqtt', host: '127.0.0.1', port: 0 }],
    authentication: { passwords: { file: 'users.txt' } },
    logging: { level: 'info' },
    ...(mode === 'on' ? LIMITS_ON : LIMITS_OFF),
  };
  // info level into /dev/null, as deployed: what is logged per connection or message is paid for
  const logger = pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: false }));
  const broker = await createBroker({ profile, baseDir: dir, logger });
  const limited = {};
  broker.events.on((e) => {
    if (e.type === 'rate.limited' || e.type === 'limit.exceeded') {
      const k = e.detail?.limit ?? e.type;
      limited[k] = (limited[k] ?? 0) + 1 + (e.detail?.suppressed ?? 0);
    }
  });
  const { monitorEventLoopDelay } = await import('node:perf_hooks');
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  serve({
    usage: () => {
      const out = { cpu: process.cpuUsage(), memory: process.memoryUsage(), loopP99Ms: loop.percentile(99) / 1e6, loopMaxMs: loop.max / 1e6 };
      loop.reset();
      return out;
    },
    limited: () => ({ ...limited }),
    stop: async () => {
      await broker.close();
      await rm(dir, { recursive: true, force: true });
    },
  });
  process.send({ type: 'listening', port: Object.values(broker.addresses())[0].port, pid: process.pid });
}

// ---- hook cost, in process ---------------------------------------------------------------------

/**
 * CPU time per PUBLISH of the three limit middlewares' hooks with every budget on (none tripped),
 * in this process: what the limits add to each message, without sockets or a machine's noise.
 */
async function hookCost(n = 2_000_000) {
  const [{ rateLimit, protocolLimits, autoDisconnect }, { SecurityEventBus }, { pino }] = await Promise.all([import('@bastion/middleware'), import('@bastion/core'), import('pino')]);
  const ctx = {
    logger: pino({ level: 'silent' }),
    events: new SecurityEventBus(),
    clients: () => [][Symbol.iterator](),
    client: () => undefined,
    disconnect: () => false,
    disconnectWhere: () => 0,
    recheckSubscriptions: async () => [],
  };
  const big = { rate: 1e12, burst: 1e12 };
  const rl = rateLimit({
    publish: { perClient: { messages: big, bytes: big }, perUser: { messages: { rate: 1e12 }, bytes: { rate: 1e12 } }, perListener: { bench: { messages: big, bytes: big } }, total: { messages: big, bytes: big } },
  });
  const pl = protocolLimits({ maxTopicLength: 1024, maxTopicLevels: 16 });
  const ad = autoDisconnect({ idleTimeout: 3_600_000, maxAge: 86_400_000 });
  for (const m of [rl, pl, ad]) await m.setup?.(ctx);
  const client = { id: 'bench-pub', username: 'bench', groups: [], remoteAddress: '127.0.0.1', remotePort: 1, listener: 'bench', transport: 'mqtt', certificate: undefined, tls: undefined, protocolVersion: 4, clean: true, keepalive: 60, connectedAt: Date.now() };
  ad.onConnected(client);
  const packet = { topic: 'bench/abcdef/t', payload: Buffer.alloc(64), qos: 0, retain: false };
  const time = (fn) => {
    for (let i = 0; i < 100_000; i++) fn(); // warm-up
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) fn();
    const c1 = process.cpuUsage(c0);
    return ((c1.user + c1.system) * 1000) / n;
  };
  const out = {
    rateLimit: time(() => rl.authorizePublish(client, packet)),
    protocolLimits: time(() => pl.authorizePublish(client, packet)),
    autoDisconnect: time(() => ad.authorizePublish(client, packet)),
  };
  for (const m of [rl, pl, ad]) await m.close?.();
  return out;
}

// ---- parent --------------------------------------------------------------------------------

async function measure({ mode, scenario, params, pin }) {
  const broker = launch(here, ['--broker', mode], { cpu: pin.broker, name: `broker-${mode}` });
  const generator = launch(GENERATOR, [], { cpu: pin.generator, name: 'generator' });
  // listen for both announcements at once: a message nobody waits for yet is not kept
  const listening = broker.waitFor('listening', 60_000);
  const ready = generator.waitFor('ready', 60_000);
  try {
    const [{ port }] = await Promise.all([listening, ready]);
    const conn = { target: `bastion-limits-${mode}`, host: '127.0.0.1', port, transport: 'tcp', username: USER.username, password: USER.password, servername: 'localhost', spreadSources: false };
    await generator.call('prepare', { scenario, conn, params }, 120_000);
    const u0 = await broker.call('usage');
    const result = await generator.call('measure', {}, Math.max(120_000, params.messages * 2));
    const u1 = await broker.call('usage');
    const limited = await broker.call('limited');
    await generator.call('close', {}, 30_000);
    const brokerCpuUs = u1.cpu.user - u0.cpu.user + (u1.cpu.system - u0.cpu.system);
    const wallMs = result.generator?.wallMs ?? result.elapsedMs;
    return { ...result, limited, brokerLoopP99Ms: u1.loopP99Ms, brokerLoopMaxMs: u1.loopMaxMs, brokerUsPerMessage: result.delivered ? brokerCpuUs / result.delivered : undefined, brokerCpuPct: wallMs ? brokerCpuUs / 1000 / wallMs * 100 : undefined, brokerRssMiB: u1.memory.rss / 2 ** 20 };
  } finally {
    await Promise.allSettled([generator.stop(5_000), broker.stop(5_000)]);
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      reps: { type: 'string', default: '3' },
      messages: { type: 'string', default: String(DEFAULT_PARAMS.messages) },
      'latency-seconds': { type: 'string', default: String(DEFAULT_PARAMS.latencySeconds) },
      'no-pin': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      broker: { type: 'string' },
      'hooks-only': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.broker) return brokerChild(values.broker);
  if (values.help) {
    process.stdout.write('usage: node bench/limits.mjs [--reps N] [--messages N] [--latency-seconds N] [--no-pin] [--json] [--hooks-only]\n');
    return;
  }
  const reps = Number(values.reps);
  const params = { ...DEFAULT_PARAMS, messages: Number(values.messages), latencySeconds: Number(values['latency-seconds']) };
  const pin = pinningPlan({ disabled: values['no-pin'] });
  const log = values.json ? () => {} : (line) => process.stderr.write(`${line}\n`);
  log(`bench/limits: ${reps} reps, ${params.messages} QoS 0 messages, latency ${params.latencySeconds}s at ${params.latencyRate} msg/s; pinning: ${pin.enabled ? `broker CPU ${pin.broker}, generator CPU ${pin.generator}` : `off (${pin.reason})`}`);

  const hooks = await hookCost();
  log(`  hook cost per PUBLISH (ns, CPU time, in process): rate-limit ${hooks.rateLimit.toFixed(0)}, protocol-limits ${hooks.protocolLimits.toFixed(0)}, auto-disconnect ${hooks.autoDisconnect.toFixed(0)}`);
  if (values['hooks-only']) return;
  const throughput = [];
  const latency = [];
  for (let r = 0; r < reps; r++) {
    // alternate the order each repetition so drift falls on both alike
    const order = r % 2 === 0 ? ['off', 'on'] : ['on', 'off'];
    const pair = {};
    for (const mode of order) {
      pair[mode] = await measure({ mode, scenario: 'qos0', params, pin });
      log(`  rep ${r + 1} qos0 limits-${mode}: ${Math.round(pair[mode].value)} msg/s (lost ${pair[mode].lost ?? 0}, broker ${pair[mode].brokerUsPerMessage?.toFixed(2)} µs/msg, limited ${JSON.stringify(pair[mode].limited)})`);
    }
    throughput.push({ rep: r + 1, off: pair.off, on: pair.on, ratio: pair.on.value / pair.off.value, cpuRatio: pair.on.brokerUsPerMessage / pair.off.brokerUsPerMessage });
    const lat = {};
    for (const scenario of r % 2 === 0 ? ['latency', 'latency-flood'] : ['latency-flood', 'latency']) {
      lat[scenario] = await measure({ mode: 'on', scenario, params, pin });
      const x = lat[scenario];
      log(`  rep ${r + 1} ${scenario}: p50 ${x.p50.toFixed(3)} ms, p99 ${x.p99.toFixed(3)} ms, broker CPU ${x.brokerCpuPct?.toFixed(0)}%, broker event-loop delay p99 ${x.brokerLoopP99Ms?.toFixed(1)} ms (max ${x.brokerLoopMaxMs?.toFixed(0)}), lost ${x.lost}${x.attack ? `, attacker ${Math.round(x.attack.attemptsPerSec)} guesses/s, ${x.attack.badCredentials} reached the password check, ${x.attack.refusedAtConnect} refused, idle open ${x.attack.idleOpen}` : ''}; limited ${JSON.stringify(x.limited)}`);
    }
    latency.push({ rep: r + 1, quiet: lat.latency, flood: lat['latency-flood'], p50Ratio: lat['latency-flood'].p50 / lat.latency.p50, p99Ratio: lat['latency-flood'].p99 / lat.latency.p99 });
  }

  const s = (xs) => summarize(xs);
  const summary = {
    hookNsPerPublish: hooks,
    qos0: {
      offMsgPerSec: s(throughput.map((t) => t.off.value)),
      onMsgPerSec: s(throughput.map((t) => t.on.value)),
      ratio: s(throughput.map((t) => t.ratio)),
      ratioOfMedians: median(throughput.map((t) => t.on.value)) / median(throughput.map((t) => t.off.value)),
      brokerCpuPerMessageRatio: s(throughput.map((t) => t.cpuRatio)),
      target: '≥ 0.95',
    },
    latencyUnderFlood: {
      quietP50: s(latency.map((l) => l.quiet.p50)),
      quietP99: s(latency.map((l) => l.quiet.p99)),
      floodP50: s(latency.map((l) => l.flood.p50)),
      floodP99: s(latency.map((l) => l.flood.p99)),
      p50Ratio: s(latency.map((l) => l.p50Ratio)),
      p99Ratio: s(latency.map((l) => l.p99Ratio)),
      attack: latency.map((l) => l.flood.attack),
      target: 'p99 ratio ≤ 2',
    },
  };
  const out = { machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version }, pinning: pin, params, reps, summary, throughput, latency };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  const f = (x, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  const q = summary.qos0;
  const l = summary.latencyUnderFlood;
  process.stdout.write(
    [
      '',
      'limits: cost and protection (medians of per-repetition ratios; min–max in brackets)',
      `  (0) hook CPU per PUBLISH, every budget on: rate-limit ${f(hooks.rateLimit, 0)} ns, protocol-limits ${f(hooks.protocolLimits, 0)} ns, auto-disconnect ${f(hooks.autoDisconnect, 0)} ns`,
      `  (1) QoS 0 throughput, limits on / off:   ${f(q.ratio.median)}  [${f(q.ratio.min)}–${f(q.ratio.max)}]   (${Math.round(q.onMsgPerSec.median)} vs ${Math.round(q.offMsgPerSec.median)} msg/s; broker CPU per message ×${f(q.brokerCpuPerMessageRatio.median)})   target ≥ 0.95`,
      `  (2) latency at 1,000 msg/s, flood / quiet: p50 ×${f(l.p50Ratio.median, 2)} [${f(l.p50Ratio.min, 2)}–${f(l.p50Ratio.max, 2)}]   p99 ×${f(l.p99Ratio.median, 2)} [${f(l.p99Ratio.min, 2)}–${f(l.p99Ratio.max, 2)}]   target p99 ≤ 2×`,
      `      quiet p50 ${f(l.quietP50.median)} ms, p99 ${f(l.quietP99.median)} ms; under flood p50 ${f(l.floodP50.median)} ms, p99 ${f(l.floodP99.median)} ms`,
      '',
    ].join('\n'),
  );
}

await main();
