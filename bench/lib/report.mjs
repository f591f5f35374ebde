/**
 * The printed table and the notes under it.
 */
import { DISTURBED_PCT, median } from './stats.mjs';

const int = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
const pct = (n) => (Number.isFinite(n) ? `${Math.round(n)}%` : '—');
const ratio = (n) => (Number.isFinite(n) ? n.toFixed(2) : '—');

/** Generator (or broker) at or above this CPU % is saturated: the figure is bound by that process. */
export const SATURATED_PCT = 90;

function table(header, rows, alignRight) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((c, i) => (alignRight[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** A figure in its unit's precision: counts and bytes whole, milliseconds with two decimals. */
const val = (n, unit) => (!Number.isFinite(n) ? '—' : /^ms( |$)/.test(unit ?? '') ? n.toFixed(2) : int(n));

/** Scenarios where broker CPU per delivered item is a cost figure (not for memory and latency). */
const costScenario = (r) => r.higherIsBetter;

function rowCells(r) {
  const flags = [];
  if (r.failures > 0) flags.push(`${r.failures} failed`);
  if (r.lost > 0) flags.push(`${int(r.lost)} ${r.unit === 'conn/s' || r.unit === 'B/conn' ? 'refused' : 'lost'}`);
  if (r.generatorCpuPct.median >= SATURATED_PCT) flags.push('generator-bound');
  if (r.otherLoadPct.max >= DISTURBED_PCT) flags.push('disturbed');
  if (r.p50.n > 0) flags.push(`p50 ${r.p50.median.toFixed(2)}, p99.9 ${r.p999.median.toFixed(2)} ms`);
  if (r.heapPerConnection?.n > 0) flags.push(`JS heap ${int(r.heapPerConnection.median)} B/conn`);
  return [
    r.scenario,
    r.target,
    `${val(r.value.median, r.unit)} ${r.unit}`,
    r.value.n > 0 ? `${val(r.value.min, r.unit)} – ${val(r.value.max, r.unit)}` : '—',
    pct(r.brokerCpuPct.median),
    costScenario(r) && Number.isFinite(r.brokerUsPerMessage.median) ? r.brokerUsPerMessage.median.toFixed(2) : '',
    pct(r.generatorCpuPct.median),
    pct(r.otherLoadPct.max),
    r.ratio ? ratio(r.ratio.ofMedians) : '',
    r.ratio ? `${ratio(r.ratio.paired.min)}–${ratio(r.ratio.paired.max)}` : '',
    r.ratio && costScenario(r) ? ratio(r.ratio.brokerCpuPerMessage) : '',
    r.vsMosquitto ? ratio(r.vsMosquitto.ofMedians) : '',
    flags.join('; '),
  ];
}

function runNotes(summary, pinning, targets = [], samples = [], params = undefined) {
  const notes = [];
  const label = (r) => `${r.scenario}/${r.target}`;
  const disturbed = summary.filter((r) => r.otherLoadPct.max >= DISTURBED_PCT);
  const generatorBound = summary.filter((r) => r.generatorCpuPct.median >= SATURATED_PCT);
  const unsaturated = summary.filter(
    (r) => r.value.n > 0 && r.brokerCpuPct.median < SATURATED_PCT && r.generatorCpuPct.median < SATURATED_PCT && !disturbed.includes(r),
  );
  if (generatorBound.length > 0) {
    notes.push(
      `generator-bound (generator ≥ ${SATURATED_PCT}% CPU): msg/s there is partly the client's limit, compare µs/msg instead: ` +
        generatorBound.map((r) => `${label(r)} ${pct(r.generatorCpuPct.median)}`).join(', '),
    );
  }
  if (unsaturated.length > 0) {
    notes.push(
      'neither process saturated and no other load (pace set by the network stack / flow control): ' +
        unsaturated.map((r) => `${label(r)} broker ${pct(r.brokerCpuPct.median)} gen ${pct(r.generatorCpuPct.median)}`).join(', '),
    );
  }
  if (disturbed.length > 0) {
    notes.push(
      `disturbed: other processes took ≥ ${DISTURBED_PCT}% of a pinned CPU in some rep (shared machine), min–max is wider: ` +
        disturbed.map((r) => `${label(r)} up to ${pct(r.otherLoadPct.max)}`).join(', '),
    );
  }
  for (const r of summary) {
    for (const c of r.alsoVs ?? []) {
      notes.push(
        `${label(r)} vs ${c.vs}: ${ratio(c.ofMedians)} ${r.unit} (paired ${ratio(c.paired.min)}–${ratio(c.paired.max)})` +
          `${costScenario(r) ? `, ${ratio(c.brokerCpuPerMessage)} broker CPU/op` : ''}`,
      );
    }
  }
  // the cost of an attack: p99 under the flood over the quiet p99 of the same target (target: ≤ 2)
  for (const f of summary.filter((r) => r.scenario === 'latency-flood' && r.value.n > 0)) {
    const q = summary.find((r) => r.scenario === 'latency' && r.target === f.target && r.value.n > 0);
    if (!q) continue;
    // rep by rep as well: the quiet and flood measurements of one rep ran within a minute of each other
    const reps = (name) => new Map(samples.filter((s) => s.scenario === name && s.target === f.target && !s.error).map((s) => [s.rep, s.value]));
    const quiet = reps('latency');
    const paired = [...reps('latency-flood')].filter(([rep]) => quiet.has(rep)).map(([rep, v]) => v / quiet.get(rep));
    const range = paired.length > 1 ? `, paired ${ratio(Math.min(...paired))}–${ratio(Math.max(...paired))}, median ${ratio(median(paired))}` : '';
    notes.push(`${f.target}: p99 under the flood / quiet p99 = ${ratio(f.value.median / q.value.median)} (${f.value.median.toFixed(2)} / ${q.value.median.toFixed(2)} ms${range})`);
  }
  for (const t of targets) {
    if (t.info?.included) notes.push(`${t.name} profile (tier ${t.tier}) sets: ${t.info.included.join(', ')}.`);
    if (t.info?.middleware) notes.push(`${t.name} middleware chain as wired: ${t.info.middleware.join(', ')}.`);
  }
  // Bastion's listeners leave Nagle on by default (ListenerOptions.noDelay), like bare Aedes and
  // Mosquitto; the -nodelay bare targets show what turning it off does by itself.
  const ran = new Set(targets.map((t) => t.name));
  const missing = [...new Set(targets.flatMap((t) => (t.baseline && ran.has(t.baseline) ? t.alsoVs ?? [] : [])).filter((n) => !ran.has(n)))];
  if (missing.length > 0) {
    notes.push(`more comparisons: add --targets ...,${missing.join(',')} (aedes-patched-tcp: Aedes with Bastion's patches alone; -nodelay: bare Aedes with TCP_NODELAY, which Bastion's listeners leave off by default like Aedes and Mosquitto).`);
  }
  for (const r of summary) {
    if (r.lost > 0) notes.push(`${label(r)}: ${int(r.lost)} messages lost over all reps (msg/s counts delivered messages only).`);
    if (r.failures > 0) notes.push(`${label(r)}: ${r.failures} measurement(s) failed; see the errors in the JSON file.`);
  }
  if (!pinning.enabled) notes.push('not pinned: broker and generator compete for CPU, ratios are less trustworthy.');
  if (params?.connGeneratorNote) notes.push(params.connGeneratorNote);
  else if (params?.connstorm && summary.some((r) => r.scenario === 'connrate')) notes.push('connrate over TCP: C generator (bench/native/connstorm.c); over TLS: the Node one.');
  return notes;
}

export function formatReport(result) {
  const { machine, params, pinning, tls, summary } = result;
  const out = [];
  out.push(`Bastion bench — ${result.startedAt}`);
  out.push(`machine: ${machine.cpuModel} ×${machine.cpus}, ${machine.platform} ${machine.release}, node ${machine.node}`);
  out.push(
    `load: ${int(params.messages)} messages × ${params.payloadBytes} B per measurement, ${result.reps} reps round-robin, ` +
      `warmup ${int(params.warmup)}, QoS 0 drain every ${params.qos0Batch}, QoS 1 window ${params.qos1Window}`,
  );
  if (params.connections !== undefined) {
    out.push(
      `connections: ${int(params.connections)} per rate measurement (${int(params.connWindow)} handshakes in flight), ` +
        `${int(params.idleConnections)} idle for memory; fan-out ${params.fanoutSubscribers} subscribers × ${int(params.fanoutMessages)} messages; ` +
        `latency ${int(params.latencyRate)} msg/s for ${params.latencySeconds} s, flood from ${params.floodAddress} (${params.floodWindow} guesses in flight, ${params.floodIdle} idle sockets)`,
    );
  }
  out.push(
    pinning.enabled
      ? `pinning: broker on CPU ${pinning.broker}, generator on CPU ${pinning.generator} (taskset)`
      : `pinning: none (${pinning.reason}) — broker and generator share the CPUs`,
  );
  if (result.nice) out.push(`priority: broker and generator at nice ${result.nice}`);
  if (tls) out.push(`TLS: ${tls.source}${tls.negotiated ? `; negotiated ${tls.negotiated}` : ''}`);
  out.push('');

  const header = ['scenario', 'target', 'median', 'min – max', 'broker CPU', 'µs/op', 'gen CPU', 'other', 'vs bare', 'paired', 'CPU/op vs bare', 'vs mosq', 'flags'];
  const right = [false, false, true, true, true, true, true, true, true, true, true, true, false];
  out.push(table(header, summary.map(rowCells), right));
  out.push('');
  out.push('vs bare   = median / bare Aedes median, same scenario and transport. Throughput (msg/s, deliveries/s, conn/s):');
  out.push('            higher is better (0.80 = 20% fewer). Memory (B/conn) and latency (ms p99): lower is better (0.80 = 20% less).');
  out.push("paired    = min–max of that ratio taken rep by rep (each pair ran back to back, sharing that moment's noise).");
  out.push('vs mosq   = median / Mosquitto median, same transport (when Mosquitto is installed).');
  out.push('broker CPU, gen CPU = median user+sys CPU time / wall time over the timed part (100% = one core busy).');
  out.push('µs/op     = broker CPU time per delivered message or accepted connection (median); CPU/op vs bare = its ratio to');
  out.push('            bare Aedes (1.25 = 25% more broker CPU per operation): valid even when the generator set the pace.');
  out.push("other     = most CPU % other processes took on the broker's or generator's CPU in any rep (/proc/stat).");
  for (const s of result.skippedTargets ?? []) out.push(`skipped   ${s.target}: ${s.reason}`);

  const notes = runNotes(summary, pinning, result.targets, result.samples ?? [], result.params);
  if (notes.length > 0) {
    out.push('');
    out.push('notes:');
    for (const n of notes) out.push(`  - ${n}`);
  }
  return out.join('\n');
}
