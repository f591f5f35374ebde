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
import { connectClient, endClient, subscribe, tlsInfo } from './clients.mjs';
import { closeAll, connectMany } from './raw-mqtt.mjs';

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
};

/** TLS options of a raw connection (CA, servername, client certificate when the target wants one). */
function rawTlsOpts(conn) {
  if (conn.transport !== 'tls') return undefined;
  const o = { ca: readFileSync(conn.caFile, 'utf8'), servername: conn.servername, rejectUnauthorized: true };
  if (conn.certFile) {
    o.cert = readFileSync(conn.certFile, 'utf8');
    o.key = readFileSync(conn.keyFile, 'utf8');
  }
  return o;
}

/**
 * Connection rate: N clients connect (raw CONNECT, clean session, password when the target has
 * users), at most \`connWindow\` handshakes in flight, and stay connected — a fleet reconnecting
 * after an outage. value = CONNACKs per second; broker CPU per accepted connection is µs/msg.
 */
async function prepareConnRate({ conn, params }) {
  const tag = `${process.pid.toString(36)}${Date.now().toString(36)}`;
  const tlsOpts = rawTlsOpts(conn);
  const base = { window: params.connWindow, username: conn.username, password: conn.password, tlsOpts };
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
    info: {},
    async measure() {
      const r = await connectMany(conn, params.connections, { ...base, clientId: (i) => `c${tag}-${i}` });
      held = r.sockets;
      return {
        value: r.sockets.length / (r.elapsedMs / 1000),
        unit: 'conn/s',
        delivered: r.sockets.length,
        expected: params.connections,
        lost: r.failed,
        errors: r.failed > 0 ? r.errors : undefined,
        elapsedMs: r.elapsedMs,
      };
    },
    async close() {
      await closeAll(held);
      held = [];
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

/** QoS 1: a window of in-flight publishes, refilled from the PUBACK callbacks. */
function publishQoS1(client, topic, payload, n, window) {
  const opts = { qos: 1 };
  return new Promise((resolve, reject) => {
    let sent = 0;
    let acked = 0;
    let inflight = 0;
    let failed = false;
    const onAck = (err) => {
      if (failed) return;
      if (err) {
        failed = true;
        reject(err);
        return;
      }
      inflight--;
      acked++;
      if (acked === n) resolve();
      else pump();
    };
    const pump = () => {
      while (inflight < window && sent < n) {
        inflight++;
        sent++;
        client.publish(topic, payload, opts, onAck);
      }
    };
    pump();
  });
}

/**
 * 1 publisher → 1 subscriber on one topic, both in this process. Throughput is counted at the
 * subscriber: messages received / time from the first publish to the last message received.
 */
function pubSubThroughput(qos) {
  return async function prepare({ conn, params }) {
    const tag = `${process.pid}-${Date.now().toString(36)}`;
    const topic = `bench/${tag}/t`;
    const sub = await connectClient(conn, `bench-sub-${tag}`);
    let pub;
    try {
      pub = await connectClient(conn, `bench-pub-${tag}`);
      await subscribe(sub, topic, qos);
    } catch (err) {
      await endClient(sub);
      await endClient(pub);
      throw err;
    }
    const payload = Buffer.alloc(params.payloadBytes, 0x42);

    let received = 0;
    let expected = 0;
    let lastAt = 0;
    let onAll = () => {};
    sub.on('message', () => {
      received++;
      lastAt = performance.now();
      if (received === expected) onAll();
    });

    /** Publishes n messages; resolves when the subscriber has all, or when loss is evident. */
    const round = async (n) => {
      received = 0;
      expected = n;
      lastAt = 0;
      const all = new Promise((resolve) => (onAll = resolve));
      const t0 = performance.now();
      const publishing =
        qos === 0 ? publishQoS0(pub, topic, payload, n, params.qos0Batch) : publishQoS1(pub, topic, payload, n, params.qos1Window);
      await publishing;
      const publishedAt = performance.now();
      // All published (and for QoS 1 all acknowledged). Wait for the rest at the subscriber,
      // but give up on messages that stop coming (QoS 0 may drop; QoS 1 must not).
      let complete = received >= n;
      while (!complete) {
        const before = received;
        const idle = new Promise((resolve) => setTimeout(resolve, params.idleMs, 'idle'));
        const outcome = await Promise.race([all.then(() => 'all'), idle]);
        if (outcome === 'all') complete = true;
        else if (received === before) break;
      }
      const endAt = lastAt > t0 ? lastAt : performance.now();
      return { delivered: received, expected: n, elapsedMs: endAt - t0, publishMs: publishedAt - t0, complete };
    };

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

export const SCENARIOS = [
  {
    name: 'qos0',
    description: 'QoS 0 throughput, 1 publisher → 1 subscriber, one topic',
    unit: 'msg/s',
    higherIsBetter: true,
    prepare: pubSubThroughput(0),
  },
  {
    name: 'qos1',
    description: 'QoS 1 throughput, 1 publisher → 1 subscriber, one topic, publisher window of in-flight PUBACKs',
    unit: 'msg/s',
    higherIsBetter: true,
    prepare: pubSubThroughput(1),
  },
  {
    name: 'connrate',
    description: 'connection rate: raw CONNECTs (clean session, password where the target has users), a window of handshakes in flight, connections held',
    unit: 'conn/s',
    higherIsBetter: true,
    prepare: prepareConnRate,
  },
];

export const SCENARIO_NAMES = SCENARIOS.map((s) => s.name);

export function scenarioByName(name) {
  const s = SCENARIOS.find((x) => x.name === name);
  if (!s) throw new Error(`unknown scenario '${name}' (known: ${SCENARIO_NAMES.join(', ')})`);
  return s;
}
