#!/usr/bin/env node
/**
 * What topic authorization costs with a large rule set (issue: "with 10,000 rules, publish
 * authorization adds no more than 10% to QoS 0 throughput against no ACL"):
 *
 *   node bench/acl.mjs [--messages N] [--reps N] [--retries N] [--no-pin] [--json]
 *
 * (1) in process: CPU per publish check against 10,000 rules, with the per-client decision cache
 *     (the default) and without it (cacheSize 0: every check walks the compiled rule trie);
 * (2) over sockets: QoS 0 throughput, 1 publisher → 1 subscriber, with the 10,000-rule ACL (publish
 *     checked per PUBLISH, read checked per delivery) as a ratio to the same broker without an ACL.
 *     Harness: bench/lib/ab.mjs. Run the build first.
 */
import { BENCH_USER, baseProfile, runAB } from './lib/ab.mjs';

export const RULES = 10_000;

/**
 * 10,000 rules shaped like a fleet's: one namespace per device user (with a placeholder variant),
 * per-site groups with wildcards, client-id globs, denies at a higher priority — and the bench
 * user's own rule among them, not first.
 */
export function fleetRules(n = RULES) {
  const rules = [];
  for (let i = 0; rules.length < n - 1; i++) {
    const k = i % 4;
    if (k === 0) rules.push({ id: `dev-${i}`, effect: 'allow', users: [`dev-${i}`], actions: ['publish', 'subscribe', 'read'], topics: [`devices/dev-${i}/#`] });
    else if (k === 1) rules.push({ id: `site-${i}`, effect: 'allow', groups: [`site-${i % 500}`], actions: ['subscribe', 'read'], topics: [`sites/${i % 500}/+/status`, `sites/${i % 500}/alarms/#`] });
    else if (k === 2) rules.push({ id: `gw-${i}`, effect: 'allow', clientIds: [`gw-${i}-*`], actions: ['publish'], topics: [`gateways/%c/up/#`] });
    else rules.push({ id: `deny-${i}`, effect: 'deny', priority: 10, users: [`dev-${i}`], actions: ['publish'], topics: [`devices/+/commands/${i}`] });
    if (rules.length === Math.floor(n / 2)) rules.push({ id: 'bench', effect: 'allow', users: [BENCH_USER.username], actions: ['publish', 'subscribe', 'read'], topics: ['bench/#'] });
  }
  return rules;
}

/** CPU time per publish check (ns), in this process, with and without the decision cache. */
async function checkCost(iterations = 1_000_000) {
  const { acl } = await import('@bastion/middleware');
  const client = { id: 'bench-pub', username: BENCH_USER.username, groups: [], remoteAddress: '127.0.0.1', remotePort: 1, listener: 'tcp', transport: 'mqtt', certificate: undefined, tls: undefined, protocolVersion: 4, clean: true, keepalive: 60, connectedAt: Date.now() };
  const out = {};
  for (const [label, cacheSize] of [['cached', 256], ['uncached', 0]]) {
    const a = acl({ rules: fleetRules(), defaultEffect: 'deny', cacheSize });
    const packets = Array.from({ length: 64 }, (_, i) => ({ topic: `bench/site-${i}/t`, payload: Buffer.alloc(64), qos: 0, retain: false }));
    let allowed = 0;
    // the hook the broker calls per PUBLISH (undefined = allowed)
    const run = (n) => {
      for (let i = 0; i < n; i++) if (a.authorizePublish(client, packets[i & 63]) === undefined) allowed++;
    };
    run(50_000); // warm-up
    const c0 = process.cpuUsage();
    run(iterations);
    const c = process.cpuUsage(c0);
    if (allowed !== iterations + 50_000) throw new Error(`the bench rule should allow every check (${allowed})`);
    out[label] = ((c.user + c.system) * 1000) / iterations;
    await a.close?.();
  }
  return out;
}

if (!process.argv.includes('--broker') && !process.argv.includes('--help') && !process.argv.includes('-h')) {
  const cost = await checkCost();
  const line = `acl: publish check against ${RULES.toLocaleString('en-US')} rules, CPU per check in process: ${cost.cached.toFixed(0)} ns with the per-client cache (default), ${cost.uncached.toFixed(0)} ns without (cacheSize 0)\n`;
  if (process.argv.includes('--json')) process.stderr.write(line);
  else process.stdout.write(line);
}

await runAB({
  name: 'acl',
  script: import.meta.url,
  what: `ACL (${RULES.toLocaleString('en-US')} rules, default deny)`,
  profile(side, dir) {
    const base = baseProfile(dir);
    return side === 'off' ? base : { ...base, acl: { defaultEffect: 'deny', rules: fleetRules() } };
  },
});
