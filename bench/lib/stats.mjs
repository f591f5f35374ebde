/**
 * Summaries of repeated samples. Only the median is compared across targets; min and max show
 * how noisy the run was.
 */

export function median(values) {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function summarize(values) {
  if (values.length === 0) return { n: 0, median: NaN, min: NaN, max: NaN, spreadPct: NaN };
  const med = median(values);
  const min = Math.min(...values);
  const max = Math.max(...values);
  return { n: values.length, median: med, min, max, spreadPct: med > 0 ? ((max - min) / med) * 100 : NaN };
}

/** Other processes took at least this CPU % of one of our CPUs during a sample: it was disturbed. */
export const DISTURBED_PCT = 10;

/** Largest 'other load' figure of a sample (CPU % taken by other processes), null when unknown. */
export function otherLoadPct(sample) {
  const o = sample.otherLoad;
  if (!o) return null;
  const v = [o.onBrokerCpuPct, o.onGeneratorCpuPct, o.elsewherePct].filter((x) => typeof x === 'number');
  return v.length ? Math.max(...v) : null;
}

/**
 * Per (scenario, target): summary of the values, of broker and generator CPU %, and, for a target
 * with a baseline, the ratio of medians plus the spread of the per-repetition ratios (rep r of the
 * target over rep r of the baseline: both ran back to back, so they share that moment's noise), and
 * the ratio of broker CPU time per delivered message (the broker's cost, whoever set the pace).
 */
/** Ratios of one row against the samples of another target in the same scenario (null if absent). */
function compare(samples, scenario, ok, row, baselineName) {
  if (!baselineName) return null;
  const base = samples.filter((s) => s.scenario === scenario.name && s.target === baselineName && !s.error);
  if (base.length === 0 || ok.length === 0) return null;
  const paired = [];
  for (const s of ok) {
    const b = base.find((x) => x.rep === s.rep);
    if (b) paired.push(s.value / b.value);
  }
  const baseCost = median(base.map((s) => s.broker.usPerMessage).filter((x) => typeof x === 'number'));
  return {
    vs: baselineName,
    ofMedians: row.value.median / median(base.map((s) => s.value)),
    paired: summarize(paired),
    brokerCpuPerMessage: row.brokerUsPerMessage.median / baseCost,
  };
}

export function summarizeRun(samples, { scenarios, targets }) {
  const rows = [];
  for (const scenario of scenarios) {
    for (const target of targets) {
      const mine = samples.filter((s) => s.scenario === scenario.name && s.target === target.name);
      const ok = mine.filter((s) => !s.error);
      const row = {
        scenario: scenario.name,
        target: target.name,
        unit: scenario.unit,
        failures: mine.length - ok.length,
        value: summarize(ok.map((s) => s.value)),
        brokerCpuPct: summarize(ok.map((s) => s.broker.pct)),
        generatorCpuPct: summarize(ok.map((s) => s.generator.pct)),
        brokerUsPerMessage: summarize(ok.map((s) => s.broker.usPerMessage).filter((x) => typeof x === 'number')),
        otherLoadPct: summarize(ok.map(otherLoadPct).filter((x) => x !== null)),
        lost: ok.reduce((n, s) => n + (s.lost ?? 0), 0),
        baseline: target.baseline ?? null,
        higherIsBetter: scenario.higherIsBetter !== false,
        p50: summarize(ok.map((s) => s.p50).filter((x) => typeof x === 'number')),
        p999: summarize(ok.map((s) => s.p999).filter((x) => typeof x === 'number')),
        heapPerConnection: summarize(ok.map((s) => s.heapBytesPerConnection).filter((x) => typeof x === 'number')),
        ratio: null,
        vsMosquitto: null,
      };
      row.ratio = compare(samples, scenario, ok, row, target.baseline);
      row.vsMosquitto = compare(samples, scenario, ok, row, target.mosquitto);
      row.alsoVs = (target.alsoVs ?? []).map((name) => compare(samples, scenario, ok, row, name)).filter(Boolean);
      rows.push(row);
    }
  }
  return rows;
}
