/**
 * One redis-server for the whole test run (tests that need Redis read its URL with
 * `inject('redisUrl')` and use their own key prefix or database).
 */
import type { TestProject } from 'vitest/node';
import { startRedis, type RunningRedis } from './redis-server.js';

let redis: RunningRedis | undefined;

export async function setup(project: TestProject): Promise<void> {
  redis = await startRedis();
  project.provide('redisUrl', redis.url);
}

export async function teardown(): Promise<void> {
  await redis?.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}
