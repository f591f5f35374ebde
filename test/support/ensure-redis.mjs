#!/usr/bin/env node
// Tests use a real redis-server (one per test run, on a free loopback port). Install it from
// Debian when it is missing, so `npm test` works on a fresh machine.
import { execSync, spawnSync } from 'node:child_process';

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

if (has('redis-server')) process.exit(0);
if (process.platform !== 'linux' || !has('apt-get')) {
  console.error('redis-server is missing: install it (e.g. apt-get install redis-server) and run the tests again');
  process.exit(1);
}
const sudo = process.getuid && process.getuid() === 0 ? '' : 'sudo ';
console.error('redis-server is missing; installing it with apt-get …');
try {
  execSync(`${sudo}apt-get update -qq && ${sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null`, { stdio: 'inherit' });
} catch {
  console.error('could not install redis-server with apt-get; install it by hand and run the tests again');
  process.exit(1);
}
