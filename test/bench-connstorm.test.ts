/**
 * The bench's C connection generator (bench/native/connstorm.c), against a real broker: the
 * connection-rate figures rest on it sending the CONNECT the Node generator sends, counting only
 * accepted CONNACKs, and leaving as a client does.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createCoreBroker, type BastionBroker, type SecurityEvent } from '@bastion/core';
import { passwordAuth, hashPassword } from '@bastion/middleware';
import { connstorm, nativeConnectMany } from '../bench/lib/native.mjs';
import { waitFor } from './support/mqtt.js';

let broker: BastionBroker | undefined;
afterEach(async () => {
  await broker?.close();
  broker = undefined;
});

async function start() {
  const auth = passwordAuth({ users: [{ username: 'fleet', hash: await hashPassword('fleet-pw'), groups: [] }] });
  broker = await createCoreBroker({ listeners: [{ transport: 'mqtt', port: 0 }], middleware: [auth], logger: pino({ level: 'silent' }) });
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  const { port } = Object.values(broker.addresses())[0] as { port: number };
  return { conn: { host: '127.0.0.1', port }, events, b: broker };
}

describe('connstorm', () => {
  it('builds, connects a spread fleet with a password, holds it, then disconnects every client', async () => {
    const built = connstorm();
    expect(built.reason).toBeUndefined();
    const { conn, events, b } = await start();
    const run = await nativeConnectMany(built.path as string, conn, 40, { window: 8, idPrefix: 'storm-', username: 'fleet', password: 'fleet-pw', spread: true, first: 5 });
    expect(run).toMatchObject({ held: 40, failed: 0, errors: {} });
    expect(run.elapsedMs).toBeGreaterThan(0);
    expect(run.cpu.userUs + run.cpu.systemUs).toBeGreaterThan(0);
    const ids = [...b.clients()].map((c) => c.id).sort();
    expect(ids).toHaveLength(40);
    expect(ids).toContain('storm-0');
    expect(ids).toContain('storm-39');
    // spread over loopback sources: connection i from source (first + i) % 1000
    const sources = new Set([...b.clients()].map((c) => c.remoteAddress));
    expect(sources.size).toBe(40);
    expect(sources).toContain('127.0.1.6');
    await run.close();
    await waitFor(() => [...b.clients()].length === 0, 5000, 'every client to leave');
    const left = events.filter((e) => e.type === 'client.disconnected');
    expect(left).toHaveLength(40);
    expect(left.every((e) => e.reason === 'client-disconnect')).toBe(true); // DISCONNECT, not a dropped line
  });

  it('counts refused CONNECTs by return code, holding none of them', async () => {
    const built = connstorm();
    const { conn, b } = await start();
    const run = await nativeConnectMany(built.path as string, conn, 6, { window: 3, idPrefix: 'guess-', username: 'fleet', password: 'wrong', spread: false });
    expect(run).toMatchObject({ held: 0, failed: 6, errors: { 'returnCode 4': 6 } });
    expect([...b.clients()]).toHaveLength(0);
    await run.close();
  });
});
