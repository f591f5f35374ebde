import { describe, it, expect, afterEach } from 'vitest';
import mqtt from 'mqtt';
import { createCoreBroker, type BastionBroker } from '@bastion/core';
import { pino } from 'pino';

let broker: BastionBroker | undefined;
afterEach(async () => { await broker?.close(); broker = undefined; });

describe('core smoke', () => {
  it('exchanges a message over TCP', async () => {
    broker = await createCoreBroker({ listeners: [{ transport: 'mqtt', port: 0 }], logger: pino({ level: 'silent' }) });
    const port = Object.values(broker.addresses())[0]!.port;
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 's' });
    await sub.subscribeAsync('a/b');
    const got = new Promise<string>((r) => sub.on('message', (_t, p) => r(p.toString())));
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'p' });
    await pub.publishAsync('a/b', 'hello');
    expect(await got).toBe('hello');
    await pub.endAsync(); await sub.endAsync();
  });
});
