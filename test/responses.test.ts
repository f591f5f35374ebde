/**
 * Response policies and the response API over real sockets: dry run, allow-list, escalation,
 * revocation, topic blocks, lockdown, shutdown — and a legitimate client that keeps working.
 */
import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import net from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import { hashPassword, serializeUsers } from '@bastion/middleware';
import type { Responses } from '@bastion/detect';
import type { ProfileInput } from '@bastion/profile';
import { connect, tryConnect, isRefusal, nextMessage, waitFor, closed, type Refusal, collectCount } from './support/mqtt.js';
import { makeTestPki, type TestPki } from './support/pki.js';

const silent = pino({ level: 'silent' });
const ATTACKER = '127.0.0.2';
let pki: TestPki;
let broker: Bastion | undefined;
const clients: MqttClient[] = [];

beforeAll(async () => {
  pki = makeTestPki();
  pki.write(
    'users.txt',
    serializeUsers([
      { username: 'alice', hash: await hashPassword('alice-password'), groups: [] },
      { username: 'mallory', hash: await hashPassword('mallory-password'), groups: [] },
      { username: 'ops', hash: await hashPassword('ops-password'), groups: [] },
    ]),
  );
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
});

async function start(profile: Omit<ProfileInput, 'version' | 'listeners' | 'authentication'>) {
  broker = await createBroker({
    profile: { version: 1, listeners: [{ name: 'tcp', protocol: 'mqtt', port: 0 }], authentication: { passwords: { file: 'users.txt' } }, ...profile } as ProfileInput,
    baseDir: pki.dir,
    logger: silent,
  });
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  const port = broker.addresses()['tcp']!.port;
  const api = broker.controls.get<Responses>('responses')!;
  return { port, url: `mqtt://127.0.0.1:${port}`, events, api };
}

function tryConnectFrom(port: number, localAddress: string, opts: IClientOptions = {}): Promise<MqttClient | Refusal> {
  return new Promise((resolve) => {
    const client = new mqtt.MqttClient(() => net.connect({ host: '127.0.0.1', port, localAddress }), { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...opts });
    let settled = false;
    const settle = (v: MqttClient | Refusal) => {
      if (settled) return;
      settled = true;
      if (isRefusal(v)) client.end(true);
      else clients.push(client);
      resolve(v);
    };
    client.once('connect', () => settle(client));
    client.once('error', (err: Error & { code?: number }) => settle({ refused: true, code: typeof err.code === 'number' ? err.code : undefined, message: err.message }));
    client.once('close', () => settle({ refused: true, code: undefined, message: 'connection closed' }));
  });
}

async function user(url: string, clientId: string, username = 'alice') {
  const c = await connect(url, { clientId, username, password: `${username}-password` });
  clients.push(c);
  return c;
}

async function bruteForce(port: number, n: number, tag: string) {
  for (let i = 0; i < n; i++) await tryConnectFrom(port, ATTACKER, { clientId: `${tag}-${i}`, username: 'alice', password: 'wrong' });
}

const actions = (events: SecurityEvent[], action?: string) => events.filter((e) => e.type === 'response.action' && (action === undefined || (e.detail as { action?: string }).action === action));
const AUTH = { authFailures: { perIp: 5, perUsername: 1000, perClientId: 1000 } };

describe('response policies', () => {
  it('dryRun records what would be done and changes nothing', async () => {
    const { port, url, events, api } = await start({
      detectors: AUTH,
      responses: { dryRun: true, rules: [{ detector: 'auth-failures', actions: ['ban', 'disconnect', 'lockdown', 'shutdown'] }] },
    });
    const good = await user(url, 'legit');
    await bruteForce(port, 6, 'dry');
    await waitFor(() => actions(events).length === 4, 5000, 'four recorded actions');
    expect(actions(events).map((e) => [(e.detail as { action: string }).action, (e.detail as { outcome: string }).outcome])).toEqual([
      ['ban', 'dry-run'],
      ['disconnect', 'dry-run'],
      ['lockdown', 'dry-run'],
      ['shutdown', 'dry-run'],
    ]);
    expect(actions(events, 'ban')[0]).toMatchObject({ remoteAddress: ATTACKER, detail: { duration: 600_000 } });
    // nothing happened: no ban, no lockdown, the broker runs, the attacker can still log in properly
    expect(api.bans()).toEqual([]);
    expect(api.lockedDown).toBe(false);
    expect(events.some((e) => e.type === 'ban.added')).toBe(false);
    const attacker = await tryConnectFrom(port, ATTACKER, { clientId: 'dry-ok', username: 'alice', password: 'alice-password' });
    expect(isRefusal(attacker)).toBe(false);
    expect(good.connected).toBe(true);
  });

  it('allow-listed identities are never banned', async () => {
    const { port, events, api } = await start({
      detectors: AUTH,
      responses: { allow: { ips: ['127.0.0.0/30'] }, rules: [{ detector: 'auth-failures', keys: ['ip'], actions: ['ban'] }] },
    });
    await bruteForce(port, 6, 'allowed');
    await waitFor(() => actions(events, 'ban').length === 1, 5000, 'the skipped ban');
    expect(actions(events, 'ban')[0]).toMatchObject({ detail: { outcome: 'skipped', why: 'allow-listed' } });
    expect(api.bans()).toEqual([]);
    expect(api.ban({ ip: ATTACKER }, { actor: 'operator' })).toMatchObject({ outcome: 'skipped', why: 'allow-listed' });
    expect(isRefusal(await tryConnectFrom(port, ATTACKER, { clientId: 'ok', username: 'alice', password: 'alice-password' }))).toBe(false);
  });

  it('repeat offenders are banned for longer each time', async () => {
    const { port, url, events } = await start({
      detectors: AUTH,
      responses: { ban: { duration: '2s', factor: 3, maxDuration: '1h' }, rules: [{ detector: 'auth-failures', keys: ['ip'], actions: ['ban'] }] },
    });
    const good = await user(url, 'legit');
    await bruteForce(port, 6, 'first');
    await waitFor(() => actions(events, 'ban').length === 1, 5000, 'the first ban');
    expect(actions(events, 'ban')[0]).toMatchObject({ detail: { outcome: 'done', duration: 2000, offence: 1 } });
    expect(isRefusal(await tryConnectFrom(port, ATTACKER, { clientId: 'during', username: 'alice', password: 'alice-password' }))).toBe(true);
    await new Promise((r) => setTimeout(r, 2100)); // the first ban lapses
    await bruteForce(port, 6, 'second');
    await waitFor(() => actions(events, 'ban').length === 2, 5000, 'the second ban');
    expect(actions(events, 'ban')[1]).toMatchObject({ detail: { outcome: 'done', duration: 6000, offence: 2 } });
    expect(good.connected).toBe(true);
  });

  it('revoke: a scanning user loses its password credential; other users are untouched', async () => {
    const { url, events } = await start({
      detectors: { topicScanning: { maxTopics: 5, maxDenials: 1000 } },
      responses: { rules: [{ detector: 'topic-scanning', actions: ['revoke'] }] },
    });
    const good = await user(url, 'legit');
    const scanner = await user(url, 'scanner', 'mallory');
    const gone = closed(scanner, 5000);
    for (let i = 0; i < 6; i++) scanner.publish(`probe/${i}`, 'x');
    await gone;
    expect(actions(events, 'revoke')[0]).toMatchObject({ control: 'RS.RP-2', username: 'mallory', detail: { outcome: 'done', credential: 'password' } });
    const again = await tryConnect(url, { clientId: 'scanner', username: 'mallory', password: 'mallory-password' });
    expect(isRefusal(again) && again.code).toBe(4);
    await good.subscribeAsync('t');
    const m = nextMessage(good);
    good.publish('t', 'fine');
    expect((await m).payload).toBe('fine');
  });

  it('shutdown: a detection shuts the broker down gracefully', async () => {
    const { port, url, events } = await start({ detectors: AUTH, responses: { rules: [{ detector: 'auth-failures', actions: ['shutdown'] }] } });
    const good = await user(url, 'legit');
    const stopped = new Promise<void>((resolve) => broker!.once('closed', () => resolve()));
    await bruteForce(port, 6, 'shut');
    await stopped;
    await closed(good, 5000); // timed from the shutdown, not from before six password checks
    expect(actions(events, 'shutdown')[0]).toMatchObject({ control: 'RS.RP-6', detail: { outcome: 'done' } });
    expect(events.some((e) => e.type === 'client.disconnected' && e.clientId === 'legit' && e.reason === 'broker-closing')).toBe(true);
  });
});

describe('the response API (broker.controls.get("responses"))', () => {
  it('ban and unban a client id; disconnect by address', async () => {
    const { url, api, events } = await start({});
    const target = await user(url, 'target', 'mallory');
    const bystander = await user(url, 'bystander');
    const gone = closed(target, 3000);
    const rec = api.ban({ clientId: 'target' }, { duration: 60_000, reason: 'suspicious', actor: 'operator' });
    expect(rec).toMatchObject({ action: 'ban', outcome: 'done', actor: 'operator', duration: 60_000 });
    await gone;
    expect(isRefusal(await tryConnect(url, { clientId: 'target', username: 'mallory', password: 'mallory-password' }))).toBe(true);
    const banId = (rec.detail as { ban: string }).ban;
    expect(api.bans().map((b) => b.id)).toEqual([banId]);
    expect(api.unban(banId, { actor: 'operator' })).toBe(true);
    await user(url, 'target', 'mallory');
    expect(api.disconnect({ ip: '127.0.0.1' }, { dryRun: true })).toMatchObject({ outcome: 'dry-run' });
    expect(bystander.connected).toBe(true);
    expect(events.filter((e) => e.type === 'response.action').map((e) => (e.detail as { action: string }).action)).toEqual(['ban', 'unban', 'disconnect']);
  });

  it('block a topic (RS.RP-4): nobody can publish to it until unblocked; other topics flow', async () => {
    const { url, api } = await start({});
    const sub = await user(url, 'sub');
    await sub.subscribeAsync('plant/#');
    const pub = await user(url, 'pub');
    expect(api.blockTopic('plant/valve/+', { actor: 'operator' })).toMatchObject({ action: 'block-topic', outcome: 'done', control: 'RS.RP-4' });
    const got = collectCount(sub, 1);
    pub.publish('plant/valve/7', 'open');
    pub.publish('plant/pump/1', 'on');
    expect((await got).map((m) => m.topic)).toEqual(['plant/pump/1']);
    expect(pub.connected).toBe(true); // a blocked publish is dropped, the publisher stays
    expect(api.blockedTopics()).toEqual([{ topic: 'plant/valve/+', expiresAt: undefined }]);
    expect(api.unblockTopic('plant/valve/+')).toBe(true);
    const again = nextMessage(sub);
    pub.publish('plant/valve/7', 'open');
    expect((await again).topic).toBe('plant/valve/7');
  });

  it('lockdown (RS.RP-5): new connections refused except the allow-list; lifting restores', async () => {
    const { url, api } = await start({ responses: { lockdown: { allow: { usernames: ['ops'] } } } });
    const before = await user(url, 'before');
    expect(api.lockdown({ actor: 'operator' })).toMatchObject({ action: 'lockdown', outcome: 'done' });
    expect(api.lockedDown).toBe(true);
    const refused = await tryConnect(url, { clientId: 'late', username: 'alice', password: 'alice-password' });
    expect(isRefusal(refused) && refused.code).toBe(3);
    await user(url, 'operator', 'ops');
    expect(before.connected).toBe(true);
    expect(api.liftLockdown({ actor: 'operator' })).toBe(true);
    await user(url, 'late');
  });

  it('lockdown with disconnectOthers closes everyone not allowed', async () => {
    const { url, api } = await start({});
    const a = await user(url, 'a');
    const ops = await user(url, 'ops-console', 'ops');
    const gone = closed(a, 3000);
    api.lockdown({ allow: { clientIds: ['ops-console'] }, disconnectOthers: true, duration: 60_000 });
    await gone;
    expect(ops.connected).toBe(true);
  });
});
