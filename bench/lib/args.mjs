/**
 * Command-line flags of bench/run.mjs. A bad flag is a UsageError: run.mjs prints it with the
 * usage text and exits 2.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_PARAMS, SCENARIO_NAMES } from './scenarios.mjs';
import { DISTURBED_PCT } from './stats.mjs';
import { DEFAULT_TARGET_NAMES, TARGET_NAMES } from './targets.mjs';

export class UsageError extends Error {}

export const USAGE = `usage: node bench/run.mjs [options]

Measures bare Aedes, Bastion (tier 1 and tier 3 profiles) and Mosquitto (when installed) side by side, in one run, broker and load generator in separate
processes pinned to separate CPUs. Prints a table and writes bench/results/<timestamp>.json.

options:
  --messages N     messages per measurement (default ${DEFAULT_PARAMS.messages})
  --reps N         repetitions, round-robin across targets (default 3)
  --only LIST      scenarios, comma-separated: ${SCENARIO_NAMES.join(',')} (default all)
  --targets LIST   targets, comma-separated, from: ${TARGET_NAMES.join(',')}
                   (default ${DEFAULT_TARGET_NAMES.join(',')})
  --warmup N       untimed messages before each measurement (default ${DEFAULT_PARAMS.warmup})
  --window N       QoS 1 publishes in flight awaiting PUBACK (default ${DEFAULT_PARAMS.qos1Window})
  --payload N      payload bytes (default ${DEFAULT_PARAMS.payloadBytes})
  --connections N  connections per connection-rate measurement (default ${DEFAULT_PARAMS.connections})
  --conn-window N  connection handshakes in flight (default ${DEFAULT_PARAMS.connWindow})
  --idle N         idle connections for the memory scenario (default ${DEFAULT_PARAMS.idleConnections})
  --fanout-messages N  messages published to the fan-out subscribers (default ${DEFAULT_PARAMS.fanoutMessages})
  --latency-seconds N  timed part of the latency scenarios (default ${DEFAULT_PARAMS.latencySeconds})
  --flood-window N     latency-flood: the attacker's password guesses in flight (default ${DEFAULT_PARAMS.floodWindow}; 0 = none)
  --flood-idle N       latency-flood: idle sockets the attacker holds, never sending CONNECT (default ${DEFAULT_PARAMS.floodIdle}; 0 = none)
  --retries N      re-run a measurement up to N times when other processes took >= ${DISTURBED_PCT}%
                   of the broker's or generator's CPU during it (default 2; the least disturbed
                   attempt is kept, the others are listed in the JSON as discarded)
  --no-pin         do not pin broker and generator to CPUs with taskset
  --nice N         run broker and generator at this nice value (default -10 when run as root, so other
                   jobs on a shared machine disturb fewer measurements; 0 = unchanged)
  --json           print only the JSON result (still written to bench/results/)
  --report FILE    print the table of an earlier run's JSON file again, measuring nothing
  --generator KIND connection rate over plain TCP: 'native' (bench/native/connstorm.c, compiled with cc
                   on first use), 'node', or 'auto' (default: native when it builds, else node)
  --cpu-prof DIR   write a V8 CPU profile of each broker process into DIR
                   (<scenario>-<target>-rep<N>-<ms>.cpuprofile; Node targets only)
  -h, --help       this text

Run the build first (npm run bench at the repository root does setup, build and this).`;

function positiveInt(name, raw, { min = 1, max = Number.MAX_SAFE_INTEGER } = {}) {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw new UsageError(`--${name} wants a whole number, got '${raw}'`);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be at least ${min}, got ${raw}`);
  if (n > max) throw new UsageError(`--${name} must be at most ${max}, got ${raw}`);
  return n;
}

function niceValue(raw) {
  if (!/^-?\d+$/.test(raw) || Number(raw) < -20 || Number(raw) > 19) throw new UsageError(`--nice wants a whole number from -20 to 19, got '${raw}'`);
  return Number(raw);
}

function generatorKind(raw) {
  if (raw === undefined) return 'auto';
  if (raw !== 'native' && raw !== 'node' && raw !== 'auto') throw new UsageError(`--generator wants native, node or auto, got '${raw}'`);
  return raw;
}

function list(name, raw, known, defaults = known) {
  if (raw === undefined) return [...defaults];
  const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new UsageError(`--${name} wants a comma-separated list of: ${known.join(', ')}`);
  for (const item of items) {
    if (!known.includes(item)) throw new UsageError(`--${name}: unknown '${item}' (known: ${known.join(', ')})`);
  }
  // keep the table order, drop duplicates
  return known.filter((k) => items.includes(k));
}

export function parseFlags(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        messages: { type: 'string' },
        reps: { type: 'string' },
        only: { type: 'string' },
        targets: { type: 'string' },
        warmup: { type: 'string' },
        window: { type: 'string' },
        payload: { type: 'string' },
        connections: { type: 'string' },
        'conn-window': { type: 'string' },
        idle: { type: 'string' },
        'fanout-messages': { type: 'string' },
        'latency-seconds': { type: 'string' },
        'flood-window': { type: 'string' },
        'flood-idle': { type: 'string' },
        retries: { type: 'string' },
        'no-pin': { type: 'boolean', default: false },
        nice: { type: 'string' },
        json: { type: 'boolean', default: false },
        report: { type: 'string' },
        'cpu-prof': { type: 'string' },
        generator: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new UsageError(err.message);
  }
  const v = parsed.values;
  return {
    help: v.help,
    json: v.json,
    report: v.report,
    cpuProf: v['cpu-prof'],
    generator: generatorKind(v.generator),
    pin: !v['no-pin'],
    nice: v.nice === undefined ? (process.getuid?.() === 0 ? -10 : 0) : niceValue(v.nice),
    reps: positiveInt('reps', v.reps) ?? 3,
    retries: positiveInt('retries', v.retries, { min: 0 }) ?? 2,
    scenarios: list('only', v.only, SCENARIO_NAMES),
    targets: list('targets', v.targets, TARGET_NAMES, DEFAULT_TARGET_NAMES),
    params: {
      ...DEFAULT_PARAMS,
      messages: positiveInt('messages', v.messages) ?? DEFAULT_PARAMS.messages,
      warmup: positiveInt('warmup', v.warmup, { min: 0 }) ?? DEFAULT_PARAMS.warmup,
      qos1Window: positiveInt('window', v.window, { max: 65_535 }) ?? DEFAULT_PARAMS.qos1Window,
      payloadBytes: positiveInt('payload', v.payload, { max: 256 * 1024 - 1024 }) ?? DEFAULT_PARAMS.payloadBytes,
      connections: positiveInt('connections', v.connections, { max: 50_000 }) ?? DEFAULT_PARAMS.connections,
      connWindow: positiveInt('conn-window', v['conn-window'], { max: 10_000 }) ?? DEFAULT_PARAMS.connWindow,
      idleConnections: positiveInt('idle', v.idle, { max: 50_000 }) ?? DEFAULT_PARAMS.idleConnections,
      fanoutMessages: positiveInt('fanout-messages', v['fanout-messages']) ?? DEFAULT_PARAMS.fanoutMessages,
      latencySeconds: positiveInt('latency-seconds', v['latency-seconds'], { max: 600 }) ?? DEFAULT_PARAMS.latencySeconds,
      floodWindow: positiveInt('flood-window', v['flood-window'], { min: 0, max: 10_000 }) ?? DEFAULT_PARAMS.floodWindow,
      floodIdle: positiveInt('flood-idle', v['flood-idle'], { min: 0, max: 50_000 }) ?? DEFAULT_PARAMS.floodIdle,
    },
  };
}
