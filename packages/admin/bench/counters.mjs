// The admin API's only per-message cost: the traffic-counters hooks. Build first (npx tsc -b tsconfig.json), then
//   node --expose-gc packages/admin/bench/counters.mjs
import { trafficCounters } from '../dist/index.js';

const t = trafficCounters();
const client = { id: 'c1' };
t.onConnected(client);
const packet = { topic: 'plant/line1/temp', payload: Buffer.alloc(64), qos: 0, retain: false };
const N = 10_000_000;
for (let i = 0; i < 1e6; i++) {
  t.authorizePublish(client, packet);
  t.authorizeForward(client, packet);
}
globalThis.gc?.();
const h0 = process.memoryUsage().heapUsed;
const s = process.hrtime.bigint();
for (let i = 0; i < N; i++) {
  t.authorizePublish(client, packet);
  t.authorizeForward(client, packet);
}
const ns = Number(process.hrtime.bigint() - s);
const h1 = process.memoryUsage().heapUsed;
console.log(`${(ns / (2 * N)).toFixed(1)} ns per hook call; heap growth over ${2 * N} calls: ${((h1 - h0) / 1024).toFixed(0)} KiB`);
