#!/usr/bin/env node
/**
 * What Detect & Respond cost on the hot path: QoS 0 throughput of a Bastion broker with all seven
 * detectors, the response engine's rules, the hash-chained audit log and metrics on (no attack
 * running), as a ratio to the same broker with them off — in one run, interleaved.
 *
 *   node bench/detectors.mjs [--messages N] [--reps N] [--retries N] [--no-pin] [--json]
 *
 * The harness (fresh pinned broker and generator per measurement, disturbance re-runs, the report)
 * is bench/lib/ab.mjs; this file is the two profiles. Run the build first.
 */
import path from 'node:path';
import { baseProfile, runAB } from './lib/ab.mjs';

await runAB({
  name: 'detectors',
  script: import.meta.url,
  what: 'detectors+responses+audit+metrics',
  profile(side, dir) {
    const base = baseProfile(dir);
    if (side === 'off') return base;
    return {
      ...base,
      detectors: {
        connectionAttempts: { enabled: true },
        abnormalTermination: { enabled: true },
        availability: { expected: [{ pattern: 'sensor-*', interval: '1h' }] },
        authFailures: { enabled: true },
        topicScanning: { enabled: true },
        undeliverable: { enabled: true },
        silentClients: { enabled: true },
      },
      responses: {
        rules: [
          { detector: 'auth-failures', keys: ['ip'], actions: ['ban'] },
          { detector: 'connection-attempts', keys: ['ip'], actions: ['ban'] },
          { detector: 'topic-scanning', actions: ['disconnect'] },
        ],
      },
      audit: { file: path.join(dir, `audit-${process.pid}.log`), receipts: { topics: ['commands/#'] } },
      metrics: { endpoint: { port: 0 }, sysInterval: '10s' },
    };
  },
});
