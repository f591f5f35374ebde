/**
 * Identify (ID.AM-1/2/3, ID.IS-1/4) over real sockets: devices connect over mqtt and mqtts (with
 * client certificates made by @bastion/pki), publish and subscribe; the device inventory, the
 * data-flow map (JSON, Mermaid, DOT), the crypto report and the CycloneDX SBOM reflect them — from
 * the embedding API, the admin API and the `bastion identify` command.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createBroker, Devices, TopicTree, filterReaches, type Bastion, type Identify, type SecurityEvent } from '@bastion/broker';
import { AdminClient, hashToken, newToken, type AdminServer } from '@bastion/admin';
import { normalizeSerial, type Issued } from '@bastion/pki';
import type { ProfileInput } from '@bastion/profile';
import { connect, closed, nextMessage, waitFor } from './support/mqtt.js';
import { makeTestPki, type TestPki } from './support/pki.js';
import { bastion } from './support/cli.js';

const silent = pino({ level: 'silent' });
const TOKEN = newToken();
let pki: TestPki;
let broker: Bastion | undefined;
const clients: mqtt.MqttClient[] = [];

beforeAll(() => {
  pki = makeTestPki();
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
});

async function start(extra: Partial<ProfileInput> = {}) {
  broker = await createBroker({
    profile: {
      version: 1,
      name: 'identify-test',
      listeners: [
        { name: 'tcp', protocol: 'mqtt', port: 0 },
        { name: 'tls', protocol: 'mqtts', port: 0 },
      ],
      tls: { cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem', clientCertificate: 'optional' },
      authentication: { anonymous: true, certificates: { identity: 'cn' } },
      // the ACL refuses one topic, so the map has a refused flow; everything else is allowed
      acl: {
        defaultEffect: 'allow',
        publishDenied: 'drop',
        rules: [{ id: 'no-secrets', effect: 'deny', users: ['*'], actions: ['publish'], topics: ['secret/#'] }],
      },
      detectors: {
        availability: {
          expected: [
            { clientId: 'meter-1', interval: '1h', publishes: false },
            { clientId: 'never-came', interval: '1h', publishes: false },
            { pattern: 'fleet-*', interval: '1h', publishes: false },
          ],
        },
      },
      admin: { port: 0, tokens: [{ name: 'ops', hash: hashToken(TOKEN) }] },
      ...extra,
    } as ProfileInput,
    baseDir: pki.dir,
    logger: silent,
  });
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  const url = (name: string) => {
    const a = broker!.addresses()[name]!;
    return `${a.transport}://localhost:${a.port}`;
  };
  const id = broker.controls.get<Identify>('identify');
  expect(id, 'the identify control is wired by default').toBeDefined();
  const api = (broker.controls.services.find((s) => s.name === 'admin') as unknown as { server: AdminServer }).server.url;
  return { url, events, id: id!, api };
}

const tlsOpts = (cert: Issued, extra: Partial<mqtt.IClientOptions> = {}): mqtt.IClientOptions => ({
  ca: pki.ca.certPem,
  cert: cert.certPem,
  key: cert.keyPem,
  rejectUnauthorized: true,
  ...extra,
});

async function client(url: string, opts: mqtt.IClientOptions) {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

describe('topic generalisation (the method behind the data-flow map)', () => {
  it('collapses a level to + once it has more distinct values than the threshold, merging what was below', () => {
    const t = new TopicTree({ generalizeAfter: 3 });
    expect(t.add('plant/a/temp')).toBe('plant/a/temp');
    expect(t.add('plant/b/temp')).toBe('plant/b/temp');
    expect(t.add('plant/c/hum')).toBe('plant/c/hum');
    const before = t.generation;
    expect(t.add('plant/d/temp')).toBe('plant/+/temp'); // the 4th distinct value: the level varies per device
    expect(t.generation).toBeGreaterThan(before);
    expect(t.resolve('plant/a/temp')).toBe('plant/+/temp');
    expect(t.resolve('plant/c/hum')).toBe('plant/+/hum');
    expect(t.add('plant/zzz/hum')).toBe('plant/+/hum');
    // # is not a value: it stays beside +
    expect(t.add('plant/#')).toBe('plant/#');
    expect(t.resolve('plant/#')).toBe('plant/#');
  });

  it('keeps the first level, collapses nested levels that vary after merging, and stays bounded', () => {
    const t = new TopicTree({ generalizeAfter: 2 });
    for (const root of ['a', 'b', 'c', 'd', 'e']) expect(t.add(`${root}/x`)).toBe(`${root}/x`);
    const n = new TopicTree({ generalizeAfter: 2 });
    n.add('s/1/k/a');
    n.add('s/2/k/b');
    expect(n.add('s/3/k/c')).toBe('s/+/k/+'); // merging 1, 2, 3 under + gives k three values: it collapses too
    const bounded = new TopicTree({ generalizeAfter: 1000, maxNodes: 50 });
    for (let i = 0; i < 500; i++) bounded.add(`flood/${i}/x/${i}`);
    expect(bounded.size).toBeLessThanOrEqual(50);
  });

  it('knows which filter receives which pattern', () => {
    expect(filterReaches('fleet/#', 'fleet/+/temp')).toBe(true);
    expect(filterReaches('fleet/+/temp', 'fleet/+/temp')).toBe(true);
    expect(filterReaches('fleet/7/temp', 'fleet/+/temp')).toBe(true); // some of the messages
    expect(filterReaches('fleet/+/hum', 'fleet/+/temp')).toBe(false);
    expect(filterReaches('#', '$SYS/broker')).toBe(false);
  });
});

describe('the device inventory bound', () => {
  const info = (id: string) => ({ id, username: undefined, groups: [], remoteAddress: '127.0.0.1', remotePort: 1, listener: 'tcp', transport: 'mqtt', certificate: undefined, tls: undefined, protocolVersion: 4, clean: true, keepalive: 60, connectedAt: 0 }) as unknown as Parameters<Devices['connected']>[0];
  const ids = (d: Devices) => d.toJSON().devices.map((v) => `${v.clientId}:${v.status}`);

  it('forgets the longest-disconnected device first, never a connected one', () => {
    const d = new Devices({ capacity: 3 });
    const rec = new Map(['a', 'b', 'c', 'd'].map((id, i) => [id, d.connected(info(id), i)]));
    expect(d.size).toBe(4); // all connected: the bound gives way rather than forget a live device
    d.disconnected(rec.get('b')!, 'client-disconnect', 10);
    d.disconnected(rec.get('a')!, 'client-disconnect', 11);
    d.disconnected(rec.get('c')!, 'client-disconnect', 12);
    d.connected(info('a'), 13); // back: no longer a candidate
    d.connected(info('e'), 14); // needs room: b (disconnected longest), then c
    expect(ids(d)).toEqual(['a:connected', 'd:connected', 'e:connected']); // listed by client id
    expect(d.toJSON().evicted).toBe(2);
  });
});

describe('identify on a running broker', () => {
  it('inventories devices over mqtt and mqtts with certificates, last seen and the expected ones (ID.AM-1)', async () => {
    const { url, id } = await start();
    const meterCert = pki.client('meter-1');
    const meter = await client(url('tls'), { clientId: 'meter-1', ...tlsOpts(meterCert) });
    const panel = await client(url('tcp'), { clientId: 'panel' });
    await meter.publishAsync('grid/meter-1/voltage', '230', { qos: 1 });
    await panel.subscribeAsync('grid/#');
    const before = Date.now();
    await panel.endAsync();
    await waitFor(() => id.devices().devices.find((d) => d.clientId === 'panel')?.status === 'disconnected', 3000, 'panel disconnected');

    const inv = id.devices();
    expect(inv.connected).toBe(1);
    expect(inv.known).toBe(2);
    const m = inv.devices.find((d) => d.clientId === 'meter-1')!;
    expect(m).toMatchObject({ identity: 'meter-1', status: 'connected', expected: true, listener: 'tls', transport: 'mqtts', remoteAddress: '127.0.0.1', messagesIn: 1, connections: 1 });
    expect(m.tls?.protocol).toBe('TLSv1.3');
    expect(m.certificate).toMatchObject({ commonName: 'meter-1', serial: normalizeSerial(meterCert.serial), key: { type: 'RSA', bits: 2048 } });
    expect(m.certificate!.issuer).toMatchObject({ CN: 'Test CA' });
    expect(new Date(m.certificate!.validTo).getTime()).toBeGreaterThan(Date.now());
    const p = inv.devices.find((d) => d.clientId === 'panel')!;
    expect(p).toMatchObject({ identity: null, status: 'disconnected', expected: false, lastDisconnect: 'client-disconnect', transport: 'mqtt', tls: null, certificate: null, subscriptions: 1 });
    expect(new Date(p.lastSeen!).getTime()).toBeGreaterThanOrEqual(before - 5);
    // the profile expects never-came: listed, never seen
    expect(inv.devices.find((d) => d.clientId === 'never-came')).toMatchObject({ status: 'expected', expected: true, lastSeen: null });
    expect(inv.expected).toEqual([
      { clientId: 'meter-1', pattern: null, seen: 1, connected: 1 },
      { clientId: 'never-came', pattern: null, seen: 0, connected: 0 },
      { clientId: null, pattern: 'fleet-*', seen: 0, connected: 0 },
    ]);
    // a device that comes back is the same record, connected again
    const again = await client(url('tcp'), { clientId: 'panel' });
    await waitFor(() => id.devices().devices.find((d) => d.clientId === 'panel')?.status === 'connected');
    expect(id.devices().devices.find((d) => d.clientId === 'panel')!.connections).toBe(2);
    expect(again.connected).toBe(true);
  });

  it('maps data flows: identities, generalised topic patterns, routes and refused attempts (ID.AM-3, ID.IS-1), as JSON, Mermaid and DOT', async () => {
    const { url, id, events } = await start();
    const dashboard = await client(url('tcp'), { clientId: 'dashboard' });
    await dashboard.subscribeAsync('fleet/#', { qos: 1 });
    const meter = await client(url('tls'), { clientId: 'meter-1', ...tlsOpts(pki.client('meter-1')) });
    // twelve devices, each on its own topic level: more than the default threshold of 10 distinct values
    for (let n = 0; n < 12; n++) {
      const dev = await client(url('tcp'), { clientId: `fleet-${n}` });
      const got = nextMessage(dashboard);
      await dev.publishAsync(`fleet/${n}/temp`, String(20 + n), { qos: 1 });
      expect((await got).topic).toBe(`fleet/${n}/temp`);
    }
    await meter.publishAsync('grid/meter-1/voltage', '230', { qos: 0 });
    await meter.publishAsync('grid/meter-1/voltage', '231', { qos: 1 });
    await meter.publishAsync('secret/keys', 'x', { qos: 1 }); // refused by the ACL (dropped)
    await waitFor(() => events.some((e) => e.type === 'publish.denied' && e.topic === 'secret/keys'));
    await waitFor(() => id.flows().flows.some((f) => f.identity === 'meter-1' && f.direction === 'publish' && f.pattern === 'grid/meter-1/voltage' && f.count === 2));

    const map = id.flows();
    expect(map.method).toMatchObject({ generalizeAfter: 10, firstLevelKept: true });
    // every fleet device is one identity publishing to the same generalised pattern
    for (let n = 0; n < 12; n++) {
      expect(map.flows).toContainEqual(expect.objectContaining({ identity: `fleet-${n}`, direction: 'publish', pattern: 'fleet/+/temp', count: 1, denied: 0, qos: [1] }));
    }
    expect(map.flows).toContainEqual(expect.objectContaining({ identity: 'dashboard', direction: 'subscribe', pattern: 'fleet/#', count: 1, qos: [1] }));
    expect(map.flows).toContainEqual(expect.objectContaining({ identity: 'meter-1', direction: 'publish', pattern: 'grid/meter-1/voltage', count: 2, qos: [0, 1] }));
    expect(map.flows).toContainEqual(expect.objectContaining({ identity: 'meter-1', direction: 'publish', pattern: 'secret/keys', count: 0, denied: 1 }));
    expect(map.topics.map((t) => t.pattern)).toEqual(['fleet/#', 'fleet/+/temp', 'grid/meter-1/voltage', 'secret/keys']);
    expect(map.topics.find((t) => t.pattern === 'fleet/+/temp')!.publishers).toHaveLength(12);
    expect(map.topics.find((t) => t.pattern === 'secret/keys')).toMatchObject({ publishers: [], denied: ['meter-1'] });
    expect(map.routes).toEqual([{ topic: 'fleet/+/temp', filter: 'fleet/#' }]);
    expect(map.identities.find((i) => i.identity === 'dashboard')).toEqual({ identity: 'dashboard', publishes: [], subscribes: ['fleet/#'] });

    const mermaid = id.flowsAs('mermaid');
    const lines = mermaid.split('\n');
    expect(lines[0]).toBe('flowchart LR');
    const node = (label: string) => lines.find((l) => l.includes(`"${label}"`))!.trim().split(/[[(]/)[0]!;
    const fleet = node('fleet/+/temp');
    const filter = node('fleet/#35;'); // '#' written as a Mermaid entity
    const meterNode = node('meter-1');
    const secret = node('secret/keys');
    expect(lines).toContain(`  ${fleet}[/"fleet/+/temp"/]`);
    expect(lines).toContain(`  ${node('fleet-3')} -->|"publish 1"| ${fleet}`);
    expect(lines).toContain(`  ${fleet} -->|"matches"| ${filter}`);
    expect(lines).toContain(`  ${filter} -->|"subscribe"| ${node('dashboard')}`);
    expect(lines).toContain(`  ${meterNode} -.->|"publish denied 1"| ${secret}`);
    expect(mermaid).toMatch(/linkStyle \d+ stroke:#c00/);

    const dot = id.flowsAs('dot');
    expect(dot.startsWith('digraph bastion_data_flows {\n')).toBe(true);
    expect(dot.trimEnd().endsWith('}')).toBe(true);
    expect(dot).toContain('"t:fleet/+/temp" [label="fleet/+/temp", shape=parallelogram];');
    expect(dot).toContain('"i:fleet-11" -> "t:fleet/+/temp" [label="publish 1"];');
    expect(dot).toContain('"t:fleet/+/temp" -> "t:fleet/#" [label="matches"];');
    expect(dot).toContain('"t:fleet/#" -> "i:dashboard" [label="subscribe"];');
    expect(dot).toContain('"i:meter-1" -> "t:secret/keys" [label="publish denied 1", style=dashed, color=red, fontcolor=red];');
    expect(JSON.parse(id.flowsAs('json'))).toMatchObject({ flows: map.flows });
  });

  it('reports TLS versions and suites per listener and per client (ID.IS-4)', async () => {
    const { url, id } = await start({ tls: { cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem', clientCertificate: 'optional', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-SHA384' } });
    await client(url('tls'), { clientId: 'modern', ...tlsOpts(pki.client('modern')) });
    await client(url('tls'), { clientId: 'legacy', ...tlsOpts(pki.client('legacy'), { maxVersion: 'TLSv1.2' } as Partial<mqtt.IClientOptions>) });
    await client(url('tcp'), { clientId: 'local' });
    const r = await id.crypto();
    expect(r.runtime).toEqual({ node: process.versions.node, openssl: process.versions.openssl });
    const tls = r.listeners.find((l) => l.name === 'tls')!;
    expect(tls).toMatchObject({ transport: 'mqtts', encrypted: true, now: { clients: 2, protocols: { 'TLSv1.3': 1, 'TLSv1.2': 1 } } });
    expect(tls.port).toBe(broker!.addresses().tls!.port);
    expect(tls.tls).toMatchObject({
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.3',
      cipherSource: 'profile',
      ciphers: ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-SHA384'],
      clientCertificate: 'optional',
      certificate: { key: { type: 'RSA', bits: 2048 }, serial: normalizeSerial(pki.server.serial) },
    });
    expect(r.listeners.find((l) => l.name === 'tcp')).toMatchObject({ transport: 'mqtt', encrypted: false, tls: null, now: { clients: 1 } });
    expect(r.clients.find((c) => c.clientId === 'modern')).toMatchObject({ listener: 'tls', protocol: 'TLSv1.3', cipher: expect.stringMatching(/^TLS_/), certificate: { commonName: 'modern', key: { type: 'RSA', bits: 2048 } } });
    expect(r.clients.find((c) => c.clientId === 'legacy')).toMatchObject({ protocol: 'TLSv1.2', cipher: 'ECDHE-RSA-AES128-GCM-SHA256' });
    expect(r.clients.find((c) => c.clientId === 'local')).toMatchObject({ listener: 'tcp', protocol: null, cipher: null, certificate: null });
    expect(r.negotiated.map((n) => [n.listener, n.protocol, n.connections])).toEqual(expect.arrayContaining([['tls', 'TLSv1.3', 1], ['tls', 'TLSv1.2', 1]]));
    const messages = r.findings.map((f) => f.message);
    expect(messages).toContain('cipher list has suites without forward secrecy or AEAD: ECDHE-RSA-AES256-SHA384');
    expect(messages).toContain('client legacy negotiated TLSv1.2');
    expect(messages).toContain('accepts TLSv1.2; set tls.minVersion: TLSv1.3 where every client supports it');
    expect(messages).toContain('mqtt on loopback: no encryption (local clients only)');
  });

  it('inventories the software and exports a CycloneDX 1.5 SBOM of a valid shape (ID.AM-2)', async () => {
    const { id } = await start();
    const inv = await id.software();
    const require = createRequire(fileURLToPath(new URL('../packages/core/package.json', import.meta.url)));
    const aedesVersion = (JSON.parse(readFileSync(path.join(path.dirname(require.resolve('aedes')), 'package.json'), 'utf8')) as { version: string }).version;
    expect(inv.bastion.version).toBe('0.1.0');
    expect(inv.runtime).toMatchObject({ node: process.versions.node, openssl: process.versions.openssl });
    const names = inv.components.map((c) => c.name);
    expect(names).toEqual(expect.arrayContaining(['bastion', 'node', 'openssl', '@bastion/broker', '@bastion/core', 'aedes', 'mqtt-packet', 'pino', 'node-forge', 'zod']));
    expect(inv.components.find((c) => c.name === 'aedes')).toMatchObject({ version: aedesVersion, kind: 'npm', ref: `pkg:npm/aedes@${aedesVersion}` });
    expect(inv.components.find((c) => c.name === '@bastion/core')!.dependsOn).toContain(`pkg:npm/aedes@${aedesVersion}`);
    expect(inv.truncated).toBe(false);

    const bom = JSON.parse(JSON.stringify(await id.cyclonedx())) as Record<string, any>;
    assertCycloneDx15(bom);
    expect(bom.metadata.component).toMatchObject({ type: 'application', name: 'bastion', version: '0.1.0' });
    expect(bom.metadata.properties).toContainEqual({ name: 'bastion:profile', value: 'identify-test' });
    const byRef = new Map((bom.components as any[]).map((c) => [c['bom-ref'], c]));
    expect(byRef.get(`pkg:npm/aedes@${aedesVersion}`)).toMatchObject({ type: 'library', name: 'aedes', version: aedesVersion, purl: `pkg:npm/aedes@${aedesVersion}`, licenses: [{ license: { id: 'MIT' } }] });
    expect(byRef.get('pkg:npm/%40bastion/core@0.1.0')).toMatchObject({ type: 'library', group: '@bastion', name: 'core', version: '0.1.0' });
    expect(byRef.get(`pkg:generic/node@${process.versions.node}`)).toMatchObject({ type: 'platform', name: 'node', version: process.versions.node });
    expect(byRef.get(`pkg:generic/openssl@${encodeURIComponent(process.versions.openssl)}`)).toMatchObject({ type: 'library', name: 'openssl', version: process.versions.openssl });
    expect((await id.cyclonedx()).serialNumber).not.toBe(bom.serialNumber); // a new BOM, a new serial
  });

  it('serves the same reports on the admin API and the bastion identify command', async () => {
    const { url, id, api, events } = await start();
    const meter = await client(url('tls'), { clientId: 'meter-1', ...tlsOpts(pki.client('meter-1')) });
    await meter.publishAsync('grid/meter-1/voltage', '230', { qos: 1 });
    await waitFor(() => id.flows().flows.length === 1);
    const admin = new AdminClient({ url: api, token: TOKEN });
    const devices = await admin.request<{ devices: Array<{ clientId: string; status: string; certificate: { commonName: string } | null }> }>('GET', '/v1/identify/devices');
    expect(devices.devices.find((d) => d.clientId === 'meter-1')).toMatchObject({ status: 'connected', certificate: { commonName: 'meter-1' } });
    const mermaid = await admin.request<{ format: string; text: string }>('GET', '/v1/identify/flows/mermaid');
    expect(mermaid.format).toBe('mermaid');
    expect(mermaid.text.split('\n').slice(2)).toEqual(id.flowsAs('mermaid').split('\n').slice(2)); // all but the timestamp line
    const crypto = await admin.request<{ clients: Array<{ clientId: string; protocol: string }> }>('GET', '/v1/identify/crypto');
    expect(crypto.clients).toEqual([expect.objectContaining({ clientId: 'meter-1', protocol: 'TLSv1.3' })]);
    assertCycloneDx15(await admin.request<Record<string, any>>('GET', '/v1/identify/software/cyclonedx'));
    await expect(admin.request('GET', '/v1/identify/flows/svg')).rejects.toMatchObject({ status: 404 });
    await expect(new AdminClient({ url: api }).request('GET', '/v1/identify/devices')).rejects.toMatchObject({ status: 401 });
    expect(events).toContainEqual(expect.objectContaining({ type: 'admin.action', control: 'ID.AM-1', detail: expect.objectContaining({ action: 'identify.devices', actor: 'token:ops' }) }));

    // the CLI (built) asks the same API; its child process does not block this broker's event loop
    const env = { BASTION_ADMIN_TOKEN: TOKEN };
    const dot = await runCli(['identify', 'flows', '--url', api, '--format', 'dot'], env);
    expect(dot.code, dot.stderr).toBe(0);
    expect(dot.stdout).toContain('"i:meter-1" -> "t:grid/meter-1/voltage" [label="publish 1"];');
    const list = await runCli(['identify', 'devices', '--url', api], env);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/meter-1 \*\s+meter-1\s+connected\s+tls\s+127\.0\.0\.1:\d+\s+TLSv1\.3\s+meter-1/);
    const cryptoText = await runCli(['identify', 'crypto', '--url', api], env);
    expect(cryptoText.stdout).toMatch(/tls\s+mqtts\s+127\.0\.0\.1:\d+\s+TLSv1\.2\s+optional\s+RSA 2048\s+1\s+TLSv1\.3×1/);
    await meter.endAsync();
    await closed(meter).catch(() => undefined);
  });

  it('bastion identify software --local --cyclonedx writes an SBOM of this installation without a broker', () => {
    const r = bastion(['identify', 'software', '--local', '--cyclonedx']);
    expect(r.code, r.stderr).toBe(0);
    const bom = JSON.parse(r.stdout) as Record<string, any>;
    assertCycloneDx15(bom);
    expect((bom.components as any[]).some((c) => c.name === 'aedes')).toBe(true);
    const text = bastion(['identify', 'software', '--local']);
    expect(text.stdout).toMatch(new RegExp(`^Bastion 0\\.1\\.0 on Node\\.js ${process.versions.node.replace(/\./g, '\\.')}`));
  });
});

/** The CLI as a child process, asynchronously (the broker under test lives in this process). */
async function runCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { spawn } = await import('node:child_process');
  const { BIN } = await import('./support/cli.js');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * The shape CycloneDX 1.5 requires (bom-1.5.schema.json): required keys, formats, enums, unique
 * bom-refs, dependency refs that resolve. Written out here because the schema's validator (with its
 * SPDX and JSF sub-schemas) is not a dependency of this project.
 */
function assertCycloneDx15(bom: Record<string, any>): void {
  const TYPES = ['application', 'framework', 'library', 'container', 'platform', 'operating-system', 'device', 'device-driver', 'firmware', 'file', 'machine-learning-model', 'data'];
  expect(bom.bomFormat).toBe('CycloneDX');
  expect(bom.specVersion).toBe('1.5');
  expect(bom.$schema).toBe('http://cyclonedx.org/schema/bom-1.5.schema.json');
  expect(bom.serialNumber).toMatch(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  expect(Number.isInteger(bom.version) && bom.version >= 1).toBe(true);
  expect(Object.keys(bom).every((k) => ['$schema', 'bomFormat', 'specVersion', 'serialNumber', 'version', 'metadata', 'components', 'dependencies'].includes(k))).toBe(true);
  expect(new Date(bom.metadata.timestamp).toISOString()).toBe(bom.metadata.timestamp);
  expect(Array.isArray(bom.metadata.tools.components)).toBe(true);
  for (const p of bom.metadata.properties) expect(Object.keys(p).sort()).toEqual(['name', 'value']);
  const all = [bom.metadata.component, ...bom.metadata.tools.components, ...bom.components];
  const refs = new Set<string>();
  for (const c of all) {
    expect(TYPES, `component type of ${c.name}`).toContain(c.type);
    expect(typeof c.name === 'string' && c.name.length > 0).toBe(true);
    expect(typeof c.version).toBe('string');
    expect(typeof c['bom-ref']).toBe('string');
    expect(refs.has(c['bom-ref']), `bom-ref ${c['bom-ref']} is unique`).toBe(false);
    refs.add(c['bom-ref']);
    if (c.purl !== undefined) expect(c.purl).toMatch(/^pkg:[a-z]+\/[^@\s]+@[^\s@]+$/);
    if (c.group !== undefined) expect(c.group).toMatch(/^@[a-z0-9-._~]+$/);
    for (const l of c.licenses ?? []) {
      const keys = Object.keys(l);
      expect(keys.length).toBe(1);
      if (keys[0] === 'license') expect(typeof (l.license.id ?? l.license.name)).toBe('string');
      else expect(keys[0]).toBe('expression');
    }
    const allowed = ['type', 'bom-ref', 'group', 'name', 'version', 'description', 'purl', 'licenses'];
    expect(Object.keys(c).filter((k) => !allowed.includes(k))).toEqual([]);
  }
  expect(bom.components.length).toBeGreaterThan(10);
  for (const d of bom.dependencies) {
    expect(refs.has(d.ref), `dependency ref ${d.ref}`).toBe(true);
    for (const on of d.dependsOn) expect(refs.has(on), `dependsOn ${on}`).toBe(true);
  }
}
