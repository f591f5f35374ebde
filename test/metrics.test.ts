/**
 * Metrics over real sockets: the Prometheus endpoint (counters fed by the hot path and by the
 * security event bus, bearer token) and the $SYS security topics, readable by the profile's $SYS
 * subscribers only.
 */
import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import net from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion } from '@bastion/broker';
import { hashPassword, serializeUsers } from '@bastion/middleware';
import type { Metrics } from '@bastion/detect';
import type { ProfileInput } from '@bastion/profile';
import { connect, nextMessage, waitFor } from './support/mqtt.js';
import { makeTestPki, type TestPki } from './support/pki.js';

const silent = pino({ level: 'silent' });
const TOKEN = 'scrape-token-0123456789';
let pki: TestPki;
let broker: Bastion | undefined;
const clients: MqttClient[] = [];

beforeAll(async () => {
  process.env['BASTION_TEST_METRICS_TOKEN'] = TOKEN;
  pki = makeTestPki();
  pki.write(
    'users.txt',
    serializeUsers([
      { username: 'alice', hash: await hashPassword('alice-password'), groups: [] },
      { username: 'ops', hash: await hashPassword('ops-password'), groups: [] },
    ]),
  );
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
});

async function start(metrics: Record<string, unknown>) {
  broker = await createBroker({
    profile: {
      version: 1,
      listeners: [{ name: 'tcp', protocol: 'mqtt', port: 0 }],
      authentication: { passwords: { file: 'users.txt' } },
      sys: { subscribers: ['ops'] },
      detectors: { authFailures: { perIp: 2, perUsername: 100, perClientId: 100 } },
      responses: { rules: [{ detector: 'auth-failures', keys: ['ip'], actions: [{ action: 'ban', duration: '1m' }] }] },
      metrics,
    } as ProfileInput,
    baseDir: pki.dir,
    logger: silent,
  });
  return `mqtt://127.0.0.1:${broker.addresses()['tcp']!.port}`;
}

async function user(url: string, clientId: string, username = 'alice') {
  const c = await connect(url, { clientId, username, password: `${username}-password` });
  clients.push(c);
  return c;
}

/** A failed login from 127.0.0.2 (so the ban it earns does not touch the clients on 127.0.0.1). */
function failFrom127002(port: number, clientId: string): Promise<void> {
  return new Promise((resolve) => {
    const c = new mqtt.MqttClient(() => net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }), { clientId, username: 'alice', password: 'wrong', reconnectPeriod: 0, protocolVersion: 4 });
    const done = () => {
      c.end(true);
      resolve();
    };
    c.once('error', done);
    c.once('close', done);
  });
}

/** The value of one sample line, e.g. sample(text, 'bastion_denials_total{type="auth.failed"'). */
function sample(text: string, prefix: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('metrics', () => {
  it('serves Prometheus counters for connections, messages, bytes, denials, detections, actions and bans, behind a token', async () => {
    const url = await start({ endpoint: { port: 0, token: '${env:BASTION_TEST_METRICS_TOKEN}' }, sysTopics: false });
    const m = broker!.controls.get<Metrics>('metrics')!;
    const endpoint = `http://127.0.0.1:${m.endpoint!.port}/metrics`;
    const sub = await user(url, 'sub');
    await sub.subscribeAsync('data/#');
    const pub = await user(url, 'pub');
    const got = new Promise<void>((resolve) => {
      let n = 0;
      sub.on('message', () => ++n === 100 && resolve());
    });
    for (let i = 0; i < 100; i++) pub.publish('data/x', Buffer.alloc(10));
    await got;
    for (let i = 0; i < 3; i++) await failFrom127002(broker!.addresses()['tcp']!.port, `bad-${i}`);
    await waitFor(() => m.snapshot().responseActions >= 1, 5000, 'the ban');

    expect((await fetch(endpoint)).status).toBe(401);
    expect((await fetch(endpoint, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect((await fetch(endpoint.replace('/metrics', '/other'), { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(404);
    const res = await fetch(endpoint, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(sample(text, 'bastion_clients_connected')).toBe(2);
    expect(sample(text, 'bastion_connections_total')).toBe(2);
    expect(sample(text, 'bastion_messages_received_total')).toBe(100);
    expect(sample(text, 'bastion_bytes_received_total')).toBe(1000);
    expect(sample(text, 'bastion_messages_delivered_total')).toBe(100);
    expect(sample(text, 'bastion_bytes_delivered_total')).toBe(1000);
    expect(sample(text, 'bastion_denials_total{type="auth.failed",reason="bad-credentials",control="PR.AC-3"}')).toBe(3);
    expect(sample(text, 'bastion_detections_total{detector="auth-failures",control="DE.ID-1",severity="high"}')).toBe(1);
    expect(sample(text, 'bastion_response_actions_total{action="ban",outcome="done"}')).toBe(1);
    expect(sample(text, 'bastion_bans_total')).toBe(1);
    expect(sample(text, 'bastion_bans_active')).toBe(1);
    // counters only grow: a second scrape after more traffic
    pub.publish('data/x', 'more');
    await nextMessage(sub);
    const again = await (await fetch(endpoint, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    expect(sample(again, 'bastion_messages_received_total')).toBe(101);
  });

  it('publishes detections, actions and stats on $SYS for the profile\'s $SYS subscribers only', async () => {
    const url = await start({ sysInterval: '200ms' });
    const ops = await user(url, 'ops-console', 'ops');
    await ops.subscribeAsync('$SYS/bastion/security/#');
    const nosy = await user(url, 'nosy');
    await expect(nosy.subscribeAsync('$SYS/bastion/security/#')).rejects.toThrow();
    const seen: Array<{ topic: string; body: Record<string, unknown> }> = [];
    ops.on('message', (topic, payload) => seen.push({ topic, body: JSON.parse(payload.toString()) as Record<string, unknown> }));
    const nosySaw: string[] = [];
    nosy.on('message', (topic) => nosySaw.push(topic));
    for (let i = 0; i < 3; i++) await failFrom127002(broker!.addresses()['tcp']!.port, `bad-${i}`);
    await waitFor(() => seen.some((s) => s.topic.endsWith('/actions')) && seen.some((s) => s.topic.endsWith('/stats') && s.body['authFailures'] === 3), 5000, 'the $SYS messages');
    expect(seen.find((s) => s.topic === '$SYS/bastion/security/detections')?.body).toMatchObject({ type: 'detection.raised', control: 'DE.ID-1', detail: { detector: 'auth-failures' } });
    expect(seen.find((s) => s.topic === '$SYS/bastion/security/actions')?.body).toMatchObject({ type: 'response.action', detail: { action: 'ban', outcome: 'done' } });
    expect(seen.filter((s) => s.topic === '$SYS/bastion/security/stats').at(-1)?.body).toMatchObject({ clients: 2, authFailures: 3, detections: 1, responseActions: 1, bans: 1 });
    expect(nosySaw).toEqual([]);
  });
});
