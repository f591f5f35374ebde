import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';

const pkg = (name: string) => fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url));
const packages = ['core', 'profile', 'pki', 'middleware', 'detect', 'persistence', 'admin', 'broker', 'cli'];

export default defineConfig({
  resolve: {
    // Tests run the TypeScript sources directly; the CLI subprocess tests use the build.
    alias: Object.fromEntries(packages.map((p) => [`@bastion/${p}`, pkg(p)])),
  },
  test: {
    include: ['test/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'examples/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // One file at a time: brokers, Redis and subprocesses of one file must not share two cores
    // with another file's (a cluster test publishing to an offline session on the other node was
    // flaky under that contention). The whole suite stays at about 5 minutes.
    fileParallelism: false,
    maxWorkers: 1,
    pool: 'forks',
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
