/**
 * The seven detectors over real sockets: each test runs a real attacking client (from 127.0.0.2
 * where the address matters), waits for the detection, and checks the configured response and
 * that a legitimate client on 127.0.0.1 keeps working.
 */
import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import net from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion, type SecurityEvent } from '@bastion/broker';
import { hashPassword, serializeUsers } from '@bastion/middleware';
import type { Detectors } from '@bastion/detect';
import { resolveProfile, type ProfileInput } from '@bastion/profile';
import { connect, tryConnect, isRefusal, nextMessage, waitFor, closed, type Refusal } from './support/mqtt.js';
import { makeTestPki, type TestPki } from './support/pki.js';

const silent = pino({ level: 'silent' });
const ATTACKER = '127.0.0.2';
let pki: TestPki;
let broker: Bastion | undefined;
const clients: MqttClient[] = [];
const sockets: net.Socket[] = [];

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
  for (const s of sockets.splice(0)) s.destroy();
  await broker?.close();
  broker = undefined;
});

async function start(profile: Omit<ProfileInput, 'version' | 'listeners' | 'authentication'> & Partial<Pick<ProfileInput, 'authentication'>>) {
  broker = await createBroker({
    profile: { version: 1, listeners: [{ name: 'tcp', protocol: 'mqtt', port: 0 }], authentication: { passwords: { file: 'users.txt' } }, ...profile } as ProfileInput,
    baseDir: pki.dir,
    logger: silent,
  });
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  const port = broker.addresses()['tcp']!.port;
  return { port, url: `mqtt://127.0.0.1:${port}`, events };
}

/** An mqtt.js client whose socket leaves from `localAddress`. */
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

async function legit(url: string, clientId = 'legit', opts: IClientOptions = {}) {
  const c = await connect(url, { clientId, username: 'alice', password: 'alice-password', ...opts });
  clients.push(c);
  return c;
}

/** The legitimate client still publishes and receives. */
async function stillWorks(c: MqttClient, topic = 'legit/echo') {
  await c.subscribeAsync(topic);
  const got = nextMessage(c);
  c.publish(topic, 'still here');
  expect((await got).payload).toBe('still here');
}

/** An MQTT 3.1.1 CONNECT with clean session, username and password. */
function connectPacket(clientId: string, keepalive: number, username: string, password: string): Buffer {
  const str = (v: string) => {
    const b = Buffer.from(v);
    return Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b]);
  };
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0xc2, keepalive >> 8, keepalive & 255]), str(clientId), str(username), str(password)]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

const detections = (events: SecurityEvent[], detector: string) => events.filter((e) => e.type === 'detection.raised' && (e.detail as { detector?: string }).detector === detector);
const actions = (events: SecurityEvent[], action?: string) => events.filter((e) => e.type === 'response.action' && (action === undefined || (e.detail as { action?: string }).action === action));

describe('DE.ID-1 repeated authentication attempts', () => {
  it('6 wrong passwords from rotating client ids ban the address; the legitimate client on another address is untouched', async () => {
    const { port, url, events } = await start({
      detectors: { authFailures: { perIp: 5, perUsername: 100, perClientId: 100, window: '1m' } },
      responses: { rules: [{ detector: 'auth-failures', keys: ['ip'], actions: ['ban'] }] },
    });
    const good = await legit(url);
    for (let i = 0; i < 6; i++) {
      const r = await tryConnectFrom(port, ATTACKER, { clientId: `bot-${i}`, username: 'alice', password: `guess-${i}` });
      expect(isRefusal(r)).toBe(true);
    }
    await waitFor(() => detections(events, 'auth-failures').length === 1, 5000, 'the detection');
    const d = detections(events, 'auth-failures')[0]!;
    expect(d).toMatchObject({ control: 'DE.ID-1', remoteAddress: ATTACKER, detail: { key: 'ip', severity: 'high', evidence: { count: 6, threshold: 5, window: 60_000 } } });
    await waitFor(() => actions(events, 'ban').length === 1, 3000, 'the ban');
    expect(actions(events, 'ban')[0]).toMatchObject({ control: 'RS.RP-3', remoteAddress: ATTACKER, detail: { outcome: 'done', duration: 600_000, via: 'bans' } });
    // the right password from the banned address no longer helps
    const after = await tryConnectFrom(port, ATTACKER, { clientId: 'bot-final', username: 'alice', password: 'alice-password' });
    expect(isRefusal(after)).toBe(true);
    expect(events.some((e) => e.type === 'connection.refused' && e.reason === 'banned' && e.remoteAddress === ATTACKER)).toBe(true);
    // the legitimate client keeps working, and new connections from 127.0.0.1 are accepted
    expect(good.connected).toBe(true);
    await stillWorks(good);
    await legit(url, 'legit-2');
  });

  it('rotating usernames from one address, and one username from rotating ids, are both counted', async () => {
    const { port, events } = await start({ detectors: { authFailures: { perIp: 1000, perUsername: 3, perClientId: 1000 } } });
    for (let i = 0; i < 4; i++) await tryConnectFrom(port, ATTACKER, { clientId: `x-${i}`, username: 'ops', password: 'nope' });
    await waitFor(() => detections(events, 'auth-failures').length === 1);
    expect(detections(events, 'auth-failures')[0]).toMatchObject({ username: 'ops', detail: { key: 'username' } });
  });
});

describe('DE.NM-1 repeated connection attempts', () => {
  it('raw connections from one address are counted before CONNECT and the address is banned', async () => {
    const { port, url, events } = await start({
      detectors: { connectionAttempts: { perIp: 5, perClientId: 100 } },
      responses: { rules: [{ detector: 'connection-attempts', keys: ['ip'], actions: ['ban-ip'] }] },
    });
    const good = await legit(url);
    for (let i = 0; i < 6; i++) {
      const s = net.connect({ host: '127.0.0.1', port, localAddress: ATTACKER });
      sockets.push(s);
      await new Promise((r) => s.once('connect', r));
    }
    await waitFor(() => actions(events, 'ban-ip').length === 1, 5000, 'the ban');
    expect(detections(events, 'connection-attempts')[0]).toMatchObject({ control: 'DE.NM-1', remoteAddress: ATTACKER, detail: { key: 'ip', evidence: { count: 6, threshold: 5 } } });
    expect(actions(events, 'ban-ip')[0]).toMatchObject({ control: 'RS.RP-5', detail: { outcome: 'done' } });
    const refused = await tryConnectFrom(port, ATTACKER, { clientId: 'again', username: 'alice', password: 'alice-password' });
    expect(isRefusal(refused)).toBe(true);
    await stillWorks(good);
  });

  it('a client id reconnecting in a loop is detected and that client id banned; others on the same address are not', async () => {
    const { url, events } = await start({
      detectors: { connectionAttempts: { perIp: 1000, perClientId: 3 } },
      responses: { rules: [{ detector: 'connection-attempts', keys: ['clientId'], actions: [{ action: 'ban-client', duration: '1m' }] }] },
    });
    for (let i = 0; i < 4; i++) {
      const c = await tryConnect(url, { clientId: 'flapper', username: 'alice', password: 'alice-password' });
      if (!isRefusal(c)) await c.endAsync();
    }
    await waitFor(() => actions(events, 'ban-client').length === 1, 5000, 'the ban');
    expect(detections(events, 'connection-attempts')[0]).toMatchObject({ clientId: 'flapper', detail: { key: 'clientId' } });
    const again = await tryConnect(url, { clientId: 'flapper', username: 'alice', password: 'alice-password' });
    expect(isRefusal(again) && again.code).toBe(5);
    await stillWorks(await legit(url, 'other-id'));
  });
});

describe('DE.NM-2 abnormal termination', () => {
  it('sockets dropped without DISCONNECT and a protocol error, per client id; the client id is banned', async () => {
    const { url, events } = await start({
      detectors: { abnormalTermination: { perClient: 2, perIp: 1000, fleet: 1000 } },
      responses: { rules: [{ detector: 'abnormal-termination', keys: ['clientId'], actions: [{ action: 'ban-client', duration: '1m' }] }] },
    });
    const good = await legit(url);
    for (let i = 0; i < 2; i++) {
      const c = await connect(url, { clientId: 'crashy', username: 'mallory', password: 'mallory-password' });
      c.stream.destroy(); // no DISCONNECT
      await waitFor(() => events.filter((e) => e.type === 'client.disconnected' && e.clientId === 'crashy').length === i + 1);
    }
    const c = await connect(url, { clientId: 'crashy', username: 'mallory', password: 'mallory-password' });
    c.stream.write(Buffer.from([0x00, 0x00])); // packet type 0 is reserved: a protocol error
    await waitFor(() => actions(events, 'ban-client').length === 1, 5000, 'the ban');
    const ends = events.filter((e) => e.type === 'client.disconnected' && e.clientId === 'crashy').map((e) => e.reason);
    expect(ends).toEqual(['socket-closed', 'socket-closed', 'protocol-error']);
    expect(detections(events, 'abnormal-termination')[0]).toMatchObject({ control: 'DE.NM-2', clientId: 'crashy', detail: { key: 'clientId', evidence: { count: 3, lastReason: 'protocol-error' } } });
    c.end(true);
    expect(isRefusal(await tryConnect(url, { clientId: 'crashy', username: 'mallory', password: 'mallory-password' }))).toBe(true);
    await stillWorks(good);
  });

  it('a fleet-wide spike (dropped sockets, a keepalive timeout) is raised once with key fleet', async () => {
    const { port, url, events } = await start({ detectors: { abnormalTermination: { perClient: 100, perIp: 100, fleet: 3 } } });
    // a raw client with a 1 s keepalive that never pings
    const raw = net.connect({ host: '127.0.0.1', port });
    sockets.push(raw);
    raw.write(connectPacket('sleeper', 1, 'alice', 'alice-password'));
    await waitFor(() => events.some((e) => e.type === 'client.connected' && e.clientId === 'sleeper'));
    for (let i = 0; i < 3; i++) {
      const c = await connect(url, { clientId: `dev-${i}`, username: 'alice', password: 'alice-password' });
      c.stream.destroy();
    }
    await waitFor(() => detections(events, 'abnormal-termination').length === 1, 5000, 'the fleet detection');
    expect(events.find((e) => e.type === 'client.disconnected' && e.clientId === 'sleeper')?.reason).toBe('keepalive-timeout');
    expect(detections(events, 'abnormal-termination')[0]).toMatchObject({ detail: { key: 'fleet', severity: 'high', evidence: { count: 4, threshold: 3 } } });
  });
});

describe('DE.PM-1 client availability', () => {
  it('an expected client that stops publishing is detected and disconnected; one that never came is detected; recovery clears', async () => {
    const { url, events } = await start({
      detectors: { availability: { expected: [{ clientId: 'plc-1', interval: '600ms' }, { clientId: 'plc-2', interval: '600ms' }, { pattern: 'sensor-*', interval: '600ms', publishes: false }] } },
      responses: { rules: [{ detector: 'availability', actions: ['disconnect'] }] },
    });
    const plc = await connect(url, { clientId: 'plc-1', username: 'alice', password: 'alice-password' });
    clients.push(plc);
    const sensor = await connect(url, { clientId: 'sensor-7', username: 'alice', password: 'alice-password' });
    clients.push(sensor);
    const plcClosed = closed(plc, 5000);
    plc.publish('plant/plc-1/heartbeat', '1');
    // plc-1 goes quiet but stays connected: detected as not publishing, and kicked by the rule
    // looked up by state: on a slow machine plc-1's login can outlast the interval, and its first
    // detection (and disconnect, of nobody) is then a not-connected one before it came
    const quiet = () => detections(events, 'availability').find((e) => e.clientId === 'plc-1' && (e.detail as { evidence?: { state?: string } }).evidence?.state === 'not-publishing');
    await waitFor(() => quiet() !== undefined, 5000, 'plc-1 detection');
    expect(quiet()).toMatchObject({ control: 'DE.PM-1', detail: { evidence: { state: 'not-publishing' } } });
    await plcClosed;
    // the action that detection caused
    const quietId = (quiet()!.detail as { id: string }).id;
    expect(actions(events, 'disconnect').find((e) => e.clientId === 'plc-1' && e.detail?.detection === quietId)).toMatchObject({ detail: { outcome: 'done', disconnected: 1 } });
    // plc-2 never connected
    await waitFor(() => detections(events, 'availability').some((e) => e.clientId === 'plc-2'), 5000, 'plc-2 detection');
    expect(detections(events, 'availability').find((e) => e.clientId === 'plc-2')).toMatchObject({ detail: { evidence: { state: 'not-connected' } } });
    // the pattern-matched sensor only has to stay connected: it is not reported
    expect(detections(events, 'availability').some((e) => e.clientId === 'sensor-7')).toBe(false);
    // plc-2 shows up and publishes: the detection clears
    const plc2 = await connect(url, { clientId: 'plc-2', username: 'alice', password: 'alice-password' });
    clients.push(plc2);
    plc2.publish('plant/plc-2/heartbeat', '1');
    await waitFor(() => events.some((e) => e.type === 'detection.cleared' && e.clientId === 'plc-2'), 3000, 'the clearing');
    // the sensor dropping off is reported
    sensor.end(true);
    await waitFor(() => detections(events, 'availability').some((e) => e.clientId === 'sensor-7'), 5000, 'sensor detection');
  });
});

describe('DE.ID-2 topic scanning', () => {
  it('publishing to many distinct topics disconnects the scanner; a client on few topics is untouched', async () => {
    const { url, events } = await start({
      detectors: { topicScanning: { maxTopics: 10, maxDenials: 1000, window: '1m' } },
      responses: { rules: [{ detector: 'topic-scanning', actions: ['disconnect'] }] },
    });
    const good = await legit(url);
    for (let i = 0; i < 20; i++) good.publish('legit/telemetry', String(i));
    const scanner = await connect(url, { clientId: 'scanner', username: 'mallory', password: 'mallory-password' });
    clients.push(scanner);
    for (let i = 0; i < 11; i++) scanner.publish(`plant/area-${i}/cmd`, 'probe');
    await closed(scanner, 5000);
    expect(detections(events, 'topic-scanning')).toHaveLength(1);
    expect(detections(events, 'topic-scanning')[0]).toMatchObject({ control: 'DE.ID-2', clientId: 'scanner', username: 'mallory', detail: { key: 'connection', evidence: { count: 11, threshold: 10, kind: 'distinct-topics' } } });
    expect(actions(events, 'disconnect')[0]).toMatchObject({ clientId: 'scanner', detail: { outcome: 'done', disconnected: 1 } });
    await stillWorks(good);
  });

  it('many subscribe denials from rotating client ids are counted per address and banned', async () => {
    const { port, url, events } = await start({
      detectors: { topicScanning: { maxTopics: 1000, maxDenials: 3 } },
      responses: { rules: [{ detector: 'DE.ID-2', keys: ['ip'], actions: ['ban'] }] },
    });
    const good = await legit(url);
    for (let i = 0; i < 4; i++) {
      const c = await tryConnectFrom(port, ATTACKER, { clientId: `probe-${i}`, username: 'mallory', password: 'mallory-password' });
      if (isRefusal(c)) break;
      await c.subscribeAsync(`$SYS/broker-${i}/#`).then(
        () => expect.unreachable('a $SYS subscription without a grant'),
        () => undefined, // SUBACK 0x80
      );
      c.end(true);
    }
    await waitFor(() => actions(events, 'ban').length === 1, 5000, 'the ban');
    expect(detections(events, 'topic-scanning').find((e) => (e.detail as { key: string }).key === 'ip')).toMatchObject({ remoteAddress: ATTACKER, detail: { evidence: { kind: 'denials' } } });
    expect(isRefusal(await tryConnectFrom(port, ATTACKER, { clientId: 'probe-x', username: 'mallory', password: 'mallory-password' }))).toBe(true);
    await stillWorks(good);
  });
});

describe('DE.ID-3 undeliverable messages', () => {
  it('publishing to a topic nobody subscribes to is detected; subscribed and retained topics are not', async () => {
    const { url, events } = await start({
      detectors: { undeliverable: { max: 20, window: '1m' } },
      responses: { rules: [{ detector: 'undeliverable', actions: ['disconnect'] }] },
    });
    const good = await legit(url);
    await good.subscribeAsync('legit/#');
    const tagged = await connect(url, { clientId: 'publisher', username: 'alice', password: 'alice-password' });
    clients.push(tagged);
    for (let i = 0; i < 50; i++) tagged.publish('legit/data', String(i)); // has a subscriber
    for (let i = 0; i < 50; i++) tagged.publish('archive/last', String(i), { retain: true }); // stored for later
    await tagged.publishAsync('legit/data', 'sync', { qos: 1 });
    const flooder = await connect(url, { clientId: 'flooder', username: 'mallory', password: 'mallory-password' });
    clients.push(flooder);
    for (let i = 0; i < 21; i++) flooder.publish('nobody/listens', String(i));
    await closed(flooder, 5000);
    expect(detections(events, 'undeliverable')).toHaveLength(1);
    expect(detections(events, 'undeliverable')[0]).toMatchObject({ control: 'DE.ID-3', clientId: 'flooder', topic: 'nobody/listens', detail: { evidence: { count: 21, threshold: 20 } } });
    expect(tagged.connected).toBe(true);
    // a subscription appearing makes the topic deliverable: no second detection for the next 21
    const flooder2 = await connect(url, { clientId: 'flooder-2', username: 'mallory', password: 'mallory-password' });
    clients.push(flooder2);
    await good.subscribeAsync('nobody/listens');
    for (let i = 0; i < 21; i++) flooder2.publish('nobody/listens', String(i));
    await flooder2.publishAsync('nobody/listens', 'sync', { qos: 1 });
    expect(detections(events, 'undeliverable')).toHaveLength(1);
    await stillWorks(good, 'legit/echo');
  });
});

describe('DE.ID-4 clients that connect but send no data', () => {
  it('a silent connection is detected and disconnected; a client that subscribed is not', async () => {
    const { port, url, events } = await start({
      detectors: { silentClients: { after: '1500ms' } },
      responses: { rules: [{ detector: 'silent-clients', actions: ['disconnect'] }] },
    });
    const good = await legit(url);
    await good.subscribeAsync('legit/#');
    const idle = await tryConnectFrom(port, ATTACKER, { clientId: 'idle', username: 'mallory', password: 'mallory-password', keepalive: 60 });
    if (isRefusal(idle)) throw new Error('idle client refused');
    await closed(idle, 10_000);
    expect(detections(events, 'silent-clients')).toHaveLength(1);
    expect(detections(events, 'silent-clients')[0]).toMatchObject({ control: 'DE.ID-4', clientId: 'idle', remoteAddress: ATTACKER, detail: { key: 'connection' } });
    expect(actions(events, 'disconnect')[0]).toMatchObject({ clientId: 'idle', detail: { outcome: 'done' } });
    await stillWorks(good);
  });
});

describe('bounded memory', () => {
  it('100,000 distinct client ids failing once each never hold more than the table capacity', async () => {
    const capacity = 1000;
    const { events } = await start({ detectors: { capacity, authFailures: { perIp: 10_000_000, perUsername: 10_000_000, perClientId: 5 }, connectionAttempts: { perIp: 10_000_000, perClientId: 5 } } });
    const det = broker!.controls.get<Detectors>('detectors')!;
    let maxSeen = 0;
    for (let i = 0; i < 100_000; i++) {
      broker!.events.emit({ type: 'auth.failed', time: Date.now(), control: 'PR.AC-3', source: 'passwords', clientId: `flood-${i}`, username: `user-${i % 50_000}`, remoteAddress: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, reason: 'bad-credentials' });
      if (i % 5000 === 0) maxSeen = Math.max(maxSeen, det.stats().tracked['auth-failures'] ?? 0);
    }
    const stats = det.stats();
    // three tables (address, username, client id), each bounded by the capacity
    expect(stats.tracked['auth-failures']).toBeLessThanOrEqual(3 * capacity);
    expect(stats.tracked['connection-attempts']).toBeLessThanOrEqual(2 * capacity);
    expect(maxSeen).toBeLessThanOrEqual(3 * capacity);
    expect(stats.evicted).toBeGreaterThan(100_000);
    expect(detections(events, 'auth-failures')).toHaveLength(0); // each id failed once: nothing to report

    // and over real sockets: 30 distinct client ids from one address fail once each
    const { port } = { port: broker!.addresses()['tcp']!.port };
    for (let i = 0; i < 30; i++) await tryConnectFrom(port, ATTACKER, { clientId: `sock-${i}`, username: 'nobody', password: 'x' });
    expect(det.stats().tracked['auth-failures']).toBeLessThanOrEqual(3 * capacity);
  }, 60_000);
});

describe('profile: tier defaults', () => {
  // the tier of the Detect and Respond categories only (other categories' floors are not under test here)
  const at = (tier: 1 | 2 | 3 | 4, extra: Partial<ProfileInput> = {}) =>
    resolveProfile(
      {
        version: 1,
        tier: 1,
        listeners: [{ protocol: 'mqtt', port: 1883 }],
        authentication: { passwords: { file: 'users.txt' } },
        ...extra,
        tiers: { 'DE.NM': tier, 'DE.ID': tier, 'DE.PM': tier, 'RS.RP': tier, ...extra.tiers },
      } as ProfileInput,
      { baseDir: '/b' },
    );

  it('tier 1: off unless configured; tier 2: lenient; tier 3+: standard thresholds and default response rules', () => {
    expect(at(1).detectors).toBeUndefined();
    expect(at(1).responses).toBeUndefined();
    expect(at(1, { detectors: { authFailures: { perIp: 3 } } }).detectors).toEqual({ capacity: 10_000, authFailures: { window: 300_000, perIp: 3, perUsername: 20, perClientId: 20 } });
    const t2 = at(2).detectors!;
    expect(t2.authFailures).toEqual({ window: 300_000, perIp: 20, perUsername: 20, perClientId: 20 });
    expect(t2.availability).toBeUndefined();
    expect(at(2).responses).toBeUndefined();
    const t3 = at(3);
    expect(t3.detectors).toMatchObject({
      connectionAttempts: { perIp: 60, perClientId: 10 },
      abnormalTermination: { perClient: 10, perIp: 30, fleet: 200 },
      authFailures: { perIp: 5, perUsername: 5, perClientId: 5 },
      topicScanning: { maxTopics: 200, maxDenials: 20 },
      undeliverable: { max: 500 },
      silentClients: { after: 120_000 },
    });
    expect(t3.responses!.rules.map((r) => r.detector)).toEqual(['auth-failures', 'connection-attempts', 'topic-scanning']);
    expect(at(2, { detectors: { undeliverable: { enabled: false } } }).detectors!.undeliverable).toBeUndefined();
    expect(at(3, { tiers: { 'DE.ID': 1 } }).detectors!.authFailures).toBeUndefined(); // the category's tier decides
  });

  it('rejects unknown detectors in rules and unknown actions, with the key path', () => {
    expect(() => at(1, { responses: { rules: [{ detector: 'auth-failure', actions: ['ban'] }] } } as Partial<ProfileInput>)).toThrow(/responses\.rules\[0\]\.detector: expected a detector/);
    expect(() => at(1, { responses: { rules: [{ detector: '*', actions: ['nuke'] }] } } as unknown as Partial<ProfileInput>)).toThrow(/responses\.rules\[0\]\.actions\[0\]/);
    expect(() => at(1, { detectors: { availability: { expected: [{ interval: '1m' }] } } } as Partial<ProfileInput>)).toThrow(/detectors\.availability\.expected\[0\]: give exactly one of clientId or pattern/);
  });
});
