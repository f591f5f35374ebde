/**
 * The printed table and the notes under it.
 */
import { DISTURBED_PCT } from './stats.mjs';

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

function rowCells(r) {
  const flags = [];
  if (r.failures > 0) flags.push(`${r.failures} failed`);
  if (r.lost > 0) flags.push(`${int(r.lost)} lost`);
  if (r.generatorCpuPct.median >= SATURATED_PCT) flags.push('generator-bound');
  if (r.otherLoadPct.max >= DISTURBED_PCT) flags.push('disturbed');
  return [
    r.scenario,
    r.target,
    int(r.value.median),
    r.value.n > 0 ? `${int(r.value.min)} – ${int(r.value.max)}` : '—',
    pct(r.brokerCpuPct.median),
    Number.isFinite(r.brokerUsPerMessage.median) ? r.brokerUsPerMessage.median.toFixed(2) : '—',
    pct(r.generatorCpuPct.median),
    pct(r.otherLoadPct.max),
    r.ratio ? ratio(r.ratio.ofMedians) : '',
    r.ratio ? `${ratio(r.ratio.paired.min)}–${ratio(r.ratio.paired.max)}` : '',
    r.ratio ? ratio(r.ratio.brokerCpuPerMessage) : '',
    flags.join(', '),
  ];
}

function runNotes(summary, pinning, targets = []) {
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
        `${label(r)} vs ${c.vs}: ${ratio(c.ofMedians)} msg/s (paired ${ratio(c.paired.min)}–${ratio(c.paired.max)}), ` +
          `${ratio(c.brokerCpuPerMessage)} broker CPU/msg`,
      );
    }
  }
  const ran = new Set(targets.map((t) => t.name));
  const missing = [...new Set(targets.flatMap((t) => (t.baseline && ran.has(t.baseline) ? t.alsoVs ?? [] : [])).filter((n) => !ran.has(n)))];
  if (missing.length > 0) {
    notes.push(
      "Bastion's listeners set TCP_NODELAY and bare Aedes does not, which moves msg/s and CPU/msg by itself (QoS 1 over " +
        `Nagle can stall on round trips). To separate that from middleware cost, add --targets ...,${missing.join(',')}.`,
    );
  }
  for (const r of summary) {
    if (r.lost > 0) notes.push(`${label(r)}: ${int(r.lost)} messages lost over all reps (msg/s counts delivered messages only).`);
    if (r.failures > 0) notes.push(`${label(r)}: ${r.failures} measurement(s) failed; see the errors in the JSON file.`);
  }
  if (!pinning.enabled) notes.push('not pinned: broker and generator compete for CPU, ratios are less trustworthy.');
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
  out.push(
    pinning.enabled
      ? `pinning: broker on CPU ${pinning.broker}, generator on CPU ${pinning.generator} (taskset)`
      : `pinning: none (${pinning.reason}) — broker and generator share the CPUs`,
  );
  if (tls) out.push(`TLS: ${tls.source}${tls.negotiated ? `; negotiated ${tls.negotiated}` : ''}`);
  out.push('');

  const header = ['scenario', 'target', 'median msg/s', 'min – max msg/s', 'broker CPU', 'µs/msg', 'gen CPU', 'other', 'vs bare', 'paired', 'CPU/msg vs bare', 'flags'];
  const right = [false, false, true, true, true, true, true, true, true, true, true, false];
  out.push(table(header, summary.map(rowCells), right));
  out.push('');
  out.push('vs bare   = Bastion median msg/s / bare Aedes median msg/s, same transport (1.00 = as fast; 0.80 = 20% fewer msg/s).');
  out.push("paired    = min–max of that ratio taken rep by rep (each pair ran back to back, sharing that moment's noise).");
  out.push('broker CPU, gen CPU = median user+sys CPU time / wall time over the timed part (100% = one core busy).');
  out.push('µs/msg    = broker CPU time per delivered message (median); CPU/msg vs bare = its Bastion / bare Aedes ratio');
  out.push('            (1.25 = the broker spends 25% more CPU per message): valid even when the generator set the pace.');
  out.push("other     = most CPU % other processes took on the broker's or generator's CPU in any rep (/proc/stat).");

  const notes = runNotes(summary, pinning, result.targets);
  if (notes.length > 0) {
    out.push('');
    out.push('notes:');
    for (const n of notes) out.push(`  - ${n}`);
  }
  return out.join('\n');
}
