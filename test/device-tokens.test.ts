/**
 * Device tokens (PR.AC-3): generated 256-bit secrets whose users-file hash is one salted SHA-256,
 * so a fleet reconnecting to a restarted broker (nothing remembered) costs no scrypt per device.
 * Over real sockets with mqtt.js, next to scrypt passwords in the same users file.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type mqtt from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import { generateDeviceToken, hashDeviceToken, hashPassword, parseUsersFile, writeUsersFile, type UserRecord } from '@bastion/middleware';
import { connect, isRefusal, tryConnect } from './support/mqtt.js';

let broker: Bastion | undefined;
const clients: mqtt.MqttClient[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function start(users: UserRecord[]) {
  const dir = mkdtempSync(path.join(tmpdir(), 'bastion-tokens-'));
  dirs.push(dir);
  const file = path.join(dir, 'users.txt');
  await writeUsersFile(file, users);
  broker = await createBroker({
    profile: { version: 1, listeners: [{ protocol: 'mqtt', port: 0 }], authentication: { passwords: { file } } },
    baseDir: dir,
    logger: pino({ level: 'silent' }),
  });
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  return { url: `mqtt://127.0.0.1:${Object.values(broker.addresses())[0]!.port}`, events };
}

describe('device tokens', () => {
  it('a fleet logs in with generated tokens beside a password user; wrong and unknown are refused alike', async () => {
    const tokens = Array.from({ length: 50 }, () => generateDeviceToken());
    const fleet = tokens.map((t, i) => ({ username: `meter-${i}`, hash: hashDeviceToken(t), groups: ['meters'] }));
    const { url, events } = await start([...fleet, { username: 'operator', hash: await hashPassword('operator-pw'), groups: ['ops'] }]);
    // a fresh broker remembers nothing: every one of these is a first login
    const connected = await Promise.all(tokens.map((t, i) => connect(url, { clientId: `m${i}`, username: `meter-${i}`, password: t, reconnectPeriod: 0 })));
    clients.push(...connected);
    expect(broker!.client('m7')).toMatchObject({ username: 'meter-7', groups: ['meters'] });
    clients.push(await connect(url, { clientId: 'op', username: 'operator', password: 'operator-pw' }));
    // another device's token, a near miss, an unknown user: CONNACK 4, each an auth.failed
    // the last character changed to one it is not (a fixed 'A' would be the token itself 1 time in 16)
    const nearMiss = `${tokens[1]!.slice(0, -1)}${tokens[1]!.endsWith('A') ? 'B' : 'A'}`;
    const refused = await Promise.all([
      tryConnect(url, { clientId: 'x1', username: 'meter-1', password: tokens[2], reconnectPeriod: 0 }),
      tryConnect(url, { clientId: 'x2', username: 'meter-1', password: nearMiss, reconnectPeriod: 0 }),
      tryConnect(url, { clientId: 'x3', username: 'meter-999', password: tokens[0], reconnectPeriod: 0 }),
    ]);
    expect(refused.map((r) => (isRefusal(r) ? r.code : 'connected'))).toEqual([4, 4, 4]);
    expect(events.filter((e) => e.type === 'auth.failed')).toHaveLength(3);
  });

  it('takes no short or typed secret, and a users file names a broken token hash by line', () => {
    expect(() => hashDeviceToken('correct horse battery staple')).toThrow(/at least 32 characters/);
    const good = hashDeviceToken(generateDeviceToken());
    expect(parseUsersFile(`meter-1:${good}:meters\n`, 'users.txt').get('meter-1')?.hash).toBe(good);
    expect(() => parseUsersFile(`# fleet\nmeter-1:${good.slice(0, -5)}\n`, 'users.txt')).toThrow(/users\.txt:2: user "meter-1" has no valid scrypt or device-token hash/);
  });
});
