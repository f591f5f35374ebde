/**
 * Load scenarios, as a table. A scenario runs inside bench/generator-process.mjs (pinned to its own
 * CPU), in two steps so that only the interesting part is timed:
 *
 *   prepare({ conn, params }) → { info, measure(), close() }
 *     connects clients, subscribes, warms up (not timed);
 *   measure() → { value, unit, ... }
 *     the timed part; the parent samples the broker's CPU time around this call and the
 *     generator process samples its own.
 *
 * `value` is the figure the report summarises (higher is better when `higherIsBetter`).
 * Planned additions fit the same shape: fan-out (1 publisher → 100 subscribers: prepare connects
 * the subscribers, measure counts deliveries across them), connection rate (measure opens and
 * closes connections), latency percentiles (payload carries a send timestamp, value = p50 with
 * p99/p999 alongside), idle memory (prepare opens N idle clients, the parent reads the broker's
 * memory through its 'usage' call).
 */
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToIo } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { connectClient, endClient, subscribe, tlsInfo } from './clients.mjs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { closeAll, connectMany, rawQoS1Publisher, rawSubscriber, spreadAddress } from './raw-mqtt.mjs';
import { launch } from './process.mjs';
import { nativeConnectMany } from './native.mjs';

export const DEFAULT_PARAMS = {
  messages: 100_000,
  payloadBytes: 64,
  warmup: 5_000,
  /** QoS 0: publish in batches; the last publish of a batch waits for the socket ('drain'). */
  qos0Batch: 100,
  /** QoS 1: at most this many publishes waiting for PUBACK. */
  qos1Window: 1_000,
  /** QoS 0: when nothing arrives for this long after the last publish, the loss is accepted. */
  idleMs: 2_000,
  /** Connection rate: connections opened (and held) in the timed part, handshakes in flight. */
  connections: 5_000,
  connWindow: 100,
  /** Connection rate: connections opened and closed untimed first (JIT, pools). */
  connWarmup: 1_000,
  /** Idle memory: connections held, and how long they sit before the broker's memory is read. */
  idleConnections: 5_000,
  idleSettleMs: 2_000,
  /** Fan-out: subscribers, and messages published to all of them (deliveries = the product). */
  fanoutSubscribers: 100,
  fanoutMessages: 2_000,
  /** Latency: publish rate and duration of the timed part. */
  latencyRate: 1_000,
  latencySeconds: 10,
  /** Latency under attack: attacker's handshakes in flight (password guesses) and idle sockets held. */
  floodWindow: 50,
  floodIdle: 500,
  floodAddress: '127.0.0.2',
};

/** TLS options of a raw connection (CA, servername, client certificate when the target wants one). */
function rawTlsOpts(conn) {
  if (conn.transport !== 'tls') return undefined;
  const o = { ca: readFileSync(conn.caFile, 'utf8') };
  if (conn.certFile) {
    o.cert = readFileSync(conn.certFile, 'utf8');
    o.key = readFileSync(conn.keyFile, 'utf8');
  }
  // one secure context for all connections, as a device keeps one: with ca/cert/key given per
  // tls.connect(), Node parsed the PEMs and the key again for each handshake, on the generator's
  // core, which made the TLS connection scenarios generator-bound
  return { secureContext: tls.createSecureContext(o), servername: conn.servername, rejectUnauthorized: true };
}

/**
 * Connection rate: N clients connect (raw CONNECT, clean session, password when the target has
 * users), at most \`connWindow\` handshakes in flight, and stay connected — a fleet reconnecting
 * after an outage. value = CONNACKs per second; broker CPU per accepted connection is µs/msg.
 */
async function prepareConnRate({ conn, params }) {
  if (params.connstorm !== undefined && conn.transport !== 'tls') return prepareNativeConnRate({ conn, params });
  const tag = `${process.pid.toString(36)}${Date.now().toString(36)}`;
  const tlsOpts = rawTlsOpts(conn);
  const base = { window: params.connWindow, username: conn.username, password: conn.password, tlsOpts, localAddress: conn.spreadSources ? spreadAddress : undefined };
  if (params.connWarmup > 0) {
    const w = await connectMany(conn, params.connWarmup, { ...base, clientId: (i) => `w${tag}-${i}` });
    if (w.failed > 0) {
      await closeAll(w.sockets);
      throw new Error(`connection warm-up: ${w.failed} of ${params.connWarmup} failed: ${JSON.stringify(w.errors)}`);
    }
    await closeAll(w.sockets);
  }
  let held = [];
  return {
    info: { generator: 'node' },
    async measure() {
      // the warm-up used sources 0…connWarmup-1: go on from there, so each address sees fresh ports
      const r = await connectMany(conn, params.connections, { ...base, clientId: (i) => `c${tag}-${i}`, localAddress: conn.spreadSources ? (i) => spreadAddress(i + params.connWarmup) : undefined });
      held = r.sockets;
      return connRateResult(r.sockets.length, r.failed, r.errors, r.elapsedMs, params);
    },
    async close() {
      await closeAll(held);
      held = [];
    },
  };
}

function connRateResult(held, failed, errors, elapsedMs, params) {
  return {
    value: held / (elapsedMs / 1000),
    unit: 'conn/s',
    delivered: held,
    expected: params.connections,
    lost: failed,
    errors: failed > 0 ? errors : undefined,
    elapsedMs,
  };
}

/** The same over plain TCP with the C generator (bench/native/connstorm.c): the broker sets the pace. */
async function prepareNativeConnRate({ conn, params }) {
  const tag = `${process.pid.toString(36)}${Date.now().toString(36)}`;
  const base = { window: params.connWindow, username: conn.username, password: conn.password, spread: conn.spreadSources };
  if (params.connWarmup > 0) {
    const w = await nativeConnectMany(params.connstorm, conn, params.connWarmup, { ...base, idPrefix: `w${tag}-` });
    await w.close();
    if (w.failed > 0) throw new Error(`connection warm-up: ${w.failed} of ${params.connWarmup} failed: ${JSON.stringify(w.errors)}`);
  }
  let run;
  return {
    info: { generator: 'native' },
    async measure() {
      // the warm-up used sources 0…connWarmup-1: go on from there, so each address sees fresh ports
      run = await nativeConnectMany(params.connstorm, conn, params.connections, { ...base, idPrefix: `c${tag}-`, first: params.connWarmup });
      // the generator's CPU is the C process's, not this one's (which only waits)
      return { ...connRateResult(run.held, run.failed, run.errors, run.elapsedMs, params), generatorCpu: run.cpu };
    },
    async close() {
      await run?.close();
      run = undefined;
    },
  };
}

/**
 * QoS 0: batches of `batch` publishes; the last one carries a callback, which mqtt.js calls at
 * once when the socket took the bytes and on 'drain' when it is full. Between batches we let the
 * event loop run I/O (the subscriber lives in this process too), so nothing is unbounded.
 */
async function publishQoS0(client, topic, payload, n, batch) {
  const opts = { qos: 0 };
  let sent = 0;
  while (sent < n) {
    const end = Math.min(n, sent + batch);
    while (sent < end - 1) {
      client.publish(topic, payload, opts);
      sent++;
    }
    let synchronous = true;
    let waitedForDrain = false;
    await new Promise((resolve, reject) => {
      client.publish(topic, payload, opts, (err) => {
        if (!synchronous) waitedForDrain = true;
        if (err) reject(err);
        else resolve();
      });
      synchronous = false;
    });
    sent++;
    if (!waitedForDrain) await yieldToIo();
  }
}

/**
 * Counts deliveries at the receiving side of a throughput round. `round(n, publish)` runs
 * `publish()`, then waits for all n deliveries, giving up once they stop coming for `idleMs` (QoS 0
 * may drop; QoS 1 must not, which the caller reports as lost). The time runs from the first publish
 * to the last delivery.
 */
function deliveryCounter(idleMs) {
  let received = 0;
  let expected = 0;
  let lastAt = 0;
  let onAll = () => {};
  return {
    onDelivery() {
      received++;
      lastAt = performance.now();
      if (received === expected) onAll();
    },
    async round(n, publish) {
      received = 0;
      expected = n;
      lastAt = 0;
      const all = new Promise((resolve) => (onAll = resolve));
      const t0 = performance.now();
      await publish();
      const publishedAt = performance.now();
      let complete = received >= n;
      while (!complete) {
        const before = received;
        const outcome = await Promise.race([all.then(() => 'all'), new Promise((r) => setTimeout(r, idleMs, 'idle'))]);
        if (outcome === 'all') complete = true;
        else if (received === before) break;
      }
      const endAt = lastAt > t0 ? lastAt : performance.now();
      return { delivered: received, expected: n, elapsedMs: endAt - t0, publishMs: publishedAt - t0, complete };
    },
  };
}

/**
 * QoS 0, 1 publisher → 1 subscriber on one topic, both mqtt.js clients in this process (QoS 1 uses
 * raw-socket clients: prepareRawQoS1). Throughput is counted at the subscriber: messages received /
 * time from the first publish to the last message received.
 */
function pubSubThroughputQoS0() {
  return async function prepare({ conn, params }) {
    const tag = `${process.pid}-${Date.now().toString(36)}`;
    const topic = `bench/${tag}/t`;
    const sub = await connectClient(conn, `bench-sub-${tag}`);
    let pub;
    try {
      pub = await connectClient(conn, `bench-pub-${tag}`);
      await subscribe(sub, topic, 0);
    } catch (err) {
      await endClient(sub);
      await endClient(pub);
      throw err;
    }
    const payload = Buffer.alloc(params.payloadBytes, 0x42);

    const counter = deliveryCounter(params.idleMs);
    sub.on('message', counter.onDelivery);
    /** Publishes n messages; resolves when the subscriber has all, or when loss is evident. */
    const round = (n) =>
      counter.round(n, () => publishQoS0(pub, topic, payload, n, params.qos0Batch));

    if (params.warmup > 0) await round(params.warmup);

    return {
      info: { tls: tlsInfo(pub) },
      async measure() {
        const r = await round(params.messages);
        return {
          value: r.delivered / (r.elapsedMs / 1000),
          unit: 'msg/s',
          delivered: r.delivered,
          expected: r.expected,
          lost: r.expected - r.delivered,
          elapsedMs: r.elapsedMs,
          publishMs: r.publishMs,
        };
      },
      async close() {
        await Promise.all([endClient(pub), endClient(sub)]);
      },
    };
  };
}

/**
 * QoS 1, 1 → 1, with raw-socket clients (lib/raw-mqtt.mjs): an mqtt.js publisher and subscriber in
 * one process used a whole core at ~60,000 msg/s, so the generator, not the broker, set the pace.
 * Throughput is counted at the subscriber, which acknowledges every message; at most `qos1Window`
 * publishes await PUBACK.
 */
async function prepareRawQoS1({ conn, params }) {
  const tag = `${process.pid.toString(36)}${Date.now().toString(36)}`;
  const topic = `bench/${tag}/q1`;
  const tlsOpts = rawTlsOpts(conn);
  const payload = Buffer.alloc(params.payloadBytes, 0x42);
  const counter = deliveryCounter(params.idleMs);
  const auth = { username: conn.username, password: conn.password, tlsOpts };
  const sub = await rawSubscriber(conn, { clientId: `bench-sub-${tag}`, topic, qos: 1, onPublish: counter.onDelivery, ...auth });
  let pub;
  try {
    pub = await rawQoS1Publisher(conn, { clientId: `bench-pub-${tag}`, topic, payload, ...auth });
  } catch (err) {
    sub.socket.destroy();
    throw err;
  }
  const round = (n) => counter.round(n, () => pub.publish(n, params.qos1Window));
  if (params.warmup > 0) await round(params.warmup);
  return {
    info: {},
    async measure() {
      const r = await round(params.messages);
      return { value: r.delivered / (r.elapsedMs / 1000), unit: 'msg/s', ...r, lost: r.expected - r.delivered };
    },
    async close() {
      await closeAll([pub.socket, sub.socket]);
    },
  };
}

/**
 * Idle memory per connection: `idleConnections` clients connect and sit idle; the parent reads the
 * broker's RSS (after a full GC in Node brokers) before and after, and divides the difference by the
 * number connected (`fromBroker` below runs in the parent with both readings).
 */
async function prepareIdleMemory({ conn, params }) {
  const tag = `${process.pid.toString(36)}${Date.now().toString(36)}`;
  const tlsOpts = rawTlsOpts(conn);
  const source = conn.spreadSources ? spreadAddress : () => undefined;
  const base = { window: params.connWindow, username: conn.username, password: conn.password, tlsOpts };
  // warm the broker's connection path once, then let it settle (untimed)
  const w = await connectMany(conn, 200, { ...base, clientId: (i) => `w${tag}-${i}`, localAddress: (i) => source(i) });
  await closeAll(w.sockets);
  await new Promise((r) => setTimeout(r, 500));
  let held = [];
  return {
    info: {},
    async measure() {
      const t0 = performance.now();
      const r = await connectMany(conn, params.idleConnections, { ...base, clientId: (i) => `i${tag}-${i}`, localAddress: (i) => source(i + 200) });
      held = r.sockets;
      await new Promise((resolve) => setTimeout(resolve, params.idleSettleMs));
      return { delivered: r.sockets.length, expected: params.idleConnections, lost: r.failed, errors: r.failed > 0 ? r.errors : undefined, elapsedMs: performance.now() - t0 };
    },
    async close() {
      await closeAll(held);
      held = [];
    },
  };
}

/**
 * Fan-out: one mqtt.js publisher, `fanoutSubscribers` counting raw subscribers on one topic,
 * QoS 0, 64-byte payloads. value = deliveries per second (messages × subscribers / time from the
 * first publish to the last delivery).
 */
async function prepareFanout({ conn, params }) {
  const tag = `${process.pid.toString(36)}${Date.now().toString(36)}`;
  const topic = `bench/${tag}/fan`;
  const tlsOpts = rawTlsOpts(conn);
  const counter = deliveryCounter(params.idleMs);
  const onPublish = counter.onDelivery;
  const subs = [];
  try {
    for (let i = 0; i < params.fanoutSubscribers; i++) {
      subs.push(
        await rawSubscriber(conn, {
          clientId: `f${tag}-${i}`,
          topic,
          username: conn.username,
          password: conn.password,
          tlsOpts,
          localAddress: conn.spreadSources ? spreadAddress(i) : undefined,
          onPublish,
        }),
      );
    }
  } catch (err) {
    for (const s of subs) s.socket.destroy();
    throw err;
  }
  const pub = await connectClient(conn, `bench-fanpub-${tag}`);
  const payload = Buffer.alloc(params.payloadBytes, 0x42);
  const round = (n) => counter.round(n * subs.length, () => publishQoS0(pub, topic, payload, n, Math.max(1, Math.floor(params.qos0Batch / 10))));
  await round(Math.max(1, Math.floor(params.fanoutMessages / 10)));
  return {
    info: { tls: tlsInfo(pub) },
    async measure() {
      const r = await round(params.fanoutMessages);
      return { value: r.delivered / (r.elapsedMs / 1000), unit: 'deliveries/s', ...r, lost: r.expected - r.delivered };
    },
    async close() {
      await endClient(pub);
      for (const s of subs) s.socket.destroy();
    },
  };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/**
 * Publish→receive latency at a steady `latencyRate` msg/s for `latencySeconds` (QoS 0, 64-byte
 * payloads carrying the send time; publisher and subscriber in this process, one clock).
 * value = p99 in ms; p50 and p99.9 alongside.
 */
function prepareLatency({ flood }) {
  return async function prepare({ conn, params }) {
    const tag = `${process.pid.toString(36)}${Date.now().toString(36)}`;
    const topic = `bench/${tag}/lat`;
    const sub = await connectClient(conn, `bench-latsub-${tag}`);
    let pub;
    try {
      pub = await connectClient(conn, `bench-latpub-${tag}`);
      await subscribe(sub, topic, 0);
    } catch (err) {
      await endClient(sub);
      await endClient(pub);
      throw err;
    }
    let samples = [];
    let recording = false;
    sub.on('message', (_t, payload) => {
      if (recording && payload.length >= 8) samples.push(performance.now() - payload.readDoubleLE(0));
    });
    const payload = Buffer.alloc(params.payloadBytes < 8 ? 8 : params.payloadBytes, 0x42);
    const run = (ms) =>
      new Promise((resolve) => {
        const t0 = performance.now();
        let sent = 0;
        const tick = () => {
          const now = performance.now();
          const due = Math.min(Math.floor(((now - t0) * params.latencyRate) / 1000), Math.floor((ms * params.latencyRate) / 1000));
          while (sent < due) {
            const p = Buffer.from(payload);
            p.writeDoubleLE(performance.now(), 0);
            pub.publish(topic, p, { qos: 0 });
            sent++;
          }
          if (now - t0 >= ms) setTimeout(() => resolve(sent), 500); // let the last ones arrive
          else setTimeout(tick, 1);
        };
        tick();
      });
    let attacker;
    if (flood) {
      attacker = launch(ATTACKER, [], { name: 'attacker', nice: 19, idle: true });
      await attacker.waitFor('ready', 30_000);
      await attacker.call('start', { conn: { ...conn, spreadSources: false }, params }, 30_000);
      await new Promise((r) => setTimeout(r, 2_000)); // the attack is under way before we measure
    }
    // warm-up (untimed), right before the timed part in both scenarios: after an idle pause (the
    // attacker's start above) the first milliseconds are slower, which alone moved the flood's p99
    // 1.5× with an attacker that did nothing (--flood-window 0 --flood-idle 0)
    await run(1_000);
    return {
      info: { tls: tlsInfo(pub) },
      async measure() {
        samples = [];
        recording = true;
        const attack0 = attacker ? await attacker.call('stats') : undefined;
        const sent = await run(params.latencySeconds * 1000);
        const attack1 = attacker ? await attacker.call('stats') : undefined;
        recording = false;
        const sorted = Float64Array.from(samples).sort();
        const result = {
          value: percentile(sorted, 99),
          unit: 'ms p99',
          p50: percentile(sorted, 50),
          p99: percentile(sorted, 99),
          p999: percentile(sorted, 99.9),
          max: sorted.length ? sorted[sorted.length - 1] : NaN,
          delivered: sorted.length,
          expected: sent,
          lost: sent - sorted.length,
          elapsedMs: params.latencySeconds * 1000,
        };
        if (attack0 && attack1) {
          const secs = (attack1.at - attack0.at) / 1000;
          const d = (k) => attack1[k] - attack0[k];
          result.attack = {
            attemptsPerSec: d('attempts') / secs,
            refusedAtConnect: d('refused'),
            badCredentials: d('badCredentials'),
            accepted: d('accepted'),
            idleOpen: attack1.idleOpen,
            idleOpened: d('idleOpened'),
            errors: attack1.errors,
            // its CPU (it shares the generator's CPU): not counted as a disturbance of the sample
            cpuPct: ((attack1.cpuUs - attack0.cpuUs) / 1000 / (attack1.at - attack0.at)) * 100,
          };
        }
        return result;
      },
      async close() {
        if (attacker) await attacker.stop(5_000);
        await Promise.all([endClient(pub), endClient(sub)]);
      },
    };
  };
}

const ATTACKER = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'attacker-process.mjs');

export const SCENARIOS = [
  {
    name: 'qos0',
    description: 'QoS 0 throughput, 1 publisher → 1 subscriber, one topic',
    unit: 'msg/s',
    higherIsBetter: true,
    prepare: pubSubThroughputQoS0(),
  },
  {
    name: 'qos1',
    description: 'QoS 1 throughput, 1 publisher → 1 subscriber (raw-socket clients), one topic, publisher window of in-flight PUBACKs',
    unit: 'msg/s',
    higherIsBetter: true,
    prepare: prepareRawQoS1,
  },
  {
    name: 'connrate',
    description: 'connection rate: raw CONNECTs (clean session, password where the target has users), a window of handshakes in flight, connections held',
    unit: 'conn/s',
    higherIsBetter: true,
    prepare: prepareConnRate,
  },
  {
    name: 'fanout',
    description: 'fan-out: 1 publisher → 100 subscribers on one topic, QoS 0, 64-byte payloads; deliveries per second',
    unit: 'deliveries/s',
    higherIsBetter: true,
    prepare: prepareFanout,
  },
  {
    name: 'memory',
    description: 'idle memory per connection: broker RSS growth (after GC) / connections, 5,000 idle clients',
    unit: 'B/conn',
    higherIsBetter: false,
    prepare: prepareIdleMemory,
    /** Runs in the parent with the broker's usage before and after measure(). */
    fromBroker({ before, after, result }) {
      const n = result.delivered || 1;
      return {
        value: (after.memory.rss - before.memory.rss) / n,
        unit: 'B/conn',
        heapBytesPerConnection: after.memory.heapUsed !== undefined ? (after.memory.heapUsed - before.memory.heapUsed) / n : undefined,
      };
    },
  },
  {
    name: 'latency',
    description: 'publish→receive latency at 1,000 msg/s (QoS 0, 64 B): p99 in ms, p50 and p99.9 alongside',
    unit: 'ms p99',
    higherIsBetter: false,
    prepare: prepareLatency({ flood: false }),
  },
  {
    name: 'latency-flood',
    description: 'the same latency while 127.0.0.2 floods connections and guesses passwords (a separate attacker process)',
    unit: 'ms p99',
    higherIsBetter: false,
    prepare: prepareLatency({ flood: true }),
  },
];

export const SCENARIO_NAMES = SCENARIOS.map((s) => s.name);

export function scenarioByName(name) {
  const s = SCENARIOS.find((x) => x.name === name);
  if (!s) throw new Error(`unknown scenario '${name}' (known: ${SCENARIO_NAMES.join(', ')})`);
  return s;
}
