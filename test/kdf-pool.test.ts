import { scryptSync } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import { KdfPool, KdfBusyError, KDF_MAX_QUEUED, kdfPool, hashPassword, serializeUsers } from '@bastion/middleware';
import type { ProfileInput } from '@bastion/profile';
import { connect, tryConnect, isRefusal, waitFor } from './support/mqtt.js';
import { makeTestPki, type TestPki } from './support/pki.js';

const silent = pino({ level: 'silent' });
const CHEAP = { N: 1024, r: 8, p: 1 };
let pki: TestPki;
let broker: Bastion | undefined;
const clients: mqtt.MqttClient[] = [];

beforeAll(async () => {
  pki = makeTestPki();
  pki.write('users.txt', serializeUsers([{ username: 'device-1', hash: await hashPassword('device-1-password'), groups: [] }]));
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
});

/** Nice values of this process's threads (Linux: field 19 of /proc/self/task/<tid>/stat). */
function threadNiceValues(): number[] {
  return readdirSync('/proc/self/task').map((tid) => {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
  });
}

describe('the KDF pool (password checks off the event loop, at low priority)', () => {
  it('derives what crypto.scrypt derives, on a thread that lowered its priority to nice 19', async () => {
    const pool = new KdfPool(1);
    const key = await pool.derive(Buffer.from('pw'), Buffer.from('salt'), 32, CHEAP);
    expect(key.equals(scryptSync('pw', 'salt', 32, CHEAP))).toBe(true);
    expect(pool.lowered).toBe(true);
    expect(threadNiceValues()).toContain(19);
  });

  it('refuses a check at once when its queue is full, and serves the ones it queued', async () => {
    const pool = new KdfPool(1);
    // one check goes to the thread, KDF_MAX_QUEUED wait, the next is refused
    const checks = Array.from({ length: KDF_MAX_QUEUED + 2 }, (_, i) => pool.derive(Buffer.from(`pw${i}`), Buffer.from('salt'), 32, CHEAP));
    const settled = await Promise.allSettled(checks);
    const refused = settled.filter((s) => s.status === 'rejected');
    expect(refused).toHaveLength(1);
    expect((refused[0] as PromiseRejectedResult).reason).toBeInstanceOf(KdfBusyError);
    expect((refused[0] as PromiseRejectedResult).reason.code).toBe('BASTION_ERR_KDF_BUSY');
    const last = settled[KDF_MAX_QUEUED] as PromiseFulfilledResult<Buffer>;
    expect(last.value.equals(scryptSync(`pw${KDF_MAX_QUEUED}`, 'salt', 32, CHEAP))).toBe(true);
    expect(pool.waiting).toBe(0);
  });

  it('over MQTT: while the queue is full a new password check gets CONNACK "server unavailable", and a device whose password is remembered still connects', async () => {
    broker = await createBroker({
      profile: { version: 1, listeners: [{ name: 'tcp', protocol: 'mqtt', port: 0 }], authentication: { passwords: { file: 'users.txt' } }, rateLimits: { enabled: false } } as ProfileInput,
      baseDir: pki.dir,
      logger: silent,
    });
    const events: SecurityEvent[] = [];
    broker.events.on((e) => events.push(e));
    const url = `mqtt://127.0.0.1:${broker.addresses()['tcp']!.port}`;
    const opts = { clientId: 'device-1', username: 'device-1', password: 'device-1-password', reconnectPeriod: 0 };
    clients.push(await connect(url, opts)); // checked once with scrypt, then remembered
    clients.splice(0).forEach((c) => c.end(true));

    // keep the process's pool full: every finished filler is replaced at once
    const pool = kdfPool();
    let filling = true;
    const fill = (): void => {
      if (filling) pool.derive(Buffer.from('filler'), Buffer.from('salt'), 32, { N: 4096, r: 8, p: 1 }).then(fill, () => setTimeout(fill, 1));
    };
    for (let i = 0; i < KDF_MAX_QUEUED + 8; i++) fill();
    try {
      await waitFor(() => pool.waiting >= KDF_MAX_QUEUED, 3000, 'the pool full');
      const guess = await tryConnect(url, { clientId: 'guess', username: 'device-1', password: 'wrong', reconnectPeriod: 0 });
      expect(isRefusal(guess) && guess.code).toBe(3);
      expect(events.some((e) => e.type === 'auth.failed' && e.reason === 'server-busy')).toBe(true);
      const known = await connect(url, opts); // no scrypt: answered from the remembered proof
      clients.push(known);
      expect(known.connected).toBe(true);
    } finally {
      filling = false;
      await waitFor(() => pool.waiting === 0, 15_000, 'the pool drained');
    }
  });
});
