/**
 * Tiers as presets and floors: the defaults a tier gives, the minimum it demands (an error with
 * file:line:key unless an exception records it), the generated table of docs/tiers.md, and the four
 * example profiles — each checked, and each started with a real client connecting the way its tier
 * asks for.
 */
import { describe, it, expect, afterEach, inject } from 'vitest';
import { readFile } from 'node:fs/promises';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import mqtt from 'mqtt';
import { createBroker, type Bastion } from '@bastion/broker';
import { ProfileError, loadProfile, resolveProfile, tierRows, tierTable, tlsPreset } from '@bastion/profile';
import type { ProfileInput } from '@bastion/profile';
import { bastion } from './support/cli.js';
import { connect, tryConnect, isRefusal } from './support/mqtt.js';
import { EXAMPLES, PASSWORDS, exampleSite, type Site } from './support/tier-site.js';

const repoRoot = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const REGENERATE = `npx tsc -b packages/profile && node --input-type=module -e "const m = await import('./packages/profile/dist/index.js'); m.writeTierTable('docs/tiers.md')"`;
const silent = pino({ level: 'silent' });
const TLS = { cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem' };

/** The issues of a profile that must not load, as `path: message` lines. */
function issuesOf(input: unknown): string[] {
  try {
    resolveProfile(input, { baseDir: '/site' });
  } catch (err) {
    expect(err).toBeInstanceOf(ProfileError);
    return (err as ProfileError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  return [];
}

const base = (extra: Omit<ProfileInput, 'version'>): ProfileInput => ({ version: 1, ...extra }) as ProfileInput;
const note = (control: string, key: string, more: Record<string, unknown> = {}) => ({ control, key, reason: 'compensated elsewhere, see ticket 42', approvedBy: 'ciso', ...more });

describe('presets', () => {
  it('a tier gives TLS listeners its defaults; explicit settings override them', () => {
    const at = (tier: 1 | 2 | 3 | 4, tls: Record<string, unknown> = {}) =>
      resolveProfile(base({ tier, tls: { ...TLS, ...tls }, authentication: { certificates: {}, passwords: { file: 'u' }, require: tier === 4 ? ['certificate', 'password'] : [] }, audit: { file: 'a.log' }, revocation: { crl: 'c.pem' } }), { baseDir: '/s' }).listeners[0];
    expect(at(1)).toMatchObject({ tls: { minVersion: 'TLSv1.2', clientCertificate: 'none' } });
    expect(at(2)).toMatchObject({ tls: { minVersion: 'TLSv1.2', clientCertificate: 'none' } });
    expect(at(3)).toMatchObject({ tls: { minVersion: 'TLSv1.3', clientCertificate: 'required' } });
    expect(at(4)).toMatchObject({ tls: { minVersion: 'TLSv1.3', clientCertificate: 'required' } });
    // explicit wins over the preset (here above it)
    expect(at(1, { minVersion: 'TLSv1.3', clientCertificate: 'optional' })).toMatchObject({ tls: { minVersion: 'TLSv1.3', clientCertificate: 'optional' } });
    // per category: PR.IP picks the version, PR.AC the client certificates
    const mixed = resolveProfile(base({ tier: 1, tiers: { 'PR.IP': 3 }, tls: TLS }), { baseDir: '/s' });
    expect(mixed.listeners[0]).toMatchObject({ tls: { minVersion: 'TLSv1.3', clientCertificate: 'none' } });
    expect(tlsPreset(() => 3)).toEqual({ minVersion: 'TLSv1.3', clientCertificate: 'required' });
  });

  it('sections apply their tier defaults (ACL default deny from tier 2, responses from tier 3)', () => {
    const p1 = resolveProfile(base({ tier: 1, listeners: [{ protocol: 'mqtt', port: 1883 }] }));
    const p2 = resolveProfile(base({ tier: 2, listeners: [{ protocol: 'mqtt', port: 1883 }] }));
    expect(p1.acl).toBeUndefined();
    expect(p2.acl?.defaultEffect).toBe('deny');
    expect(p2.responses).toBeUndefined();
    expect(resolveProfile(base({ tier: 3, listeners: [{ protocol: 'mqtt', port: 1883 }], audit: { file: 'a.log' } })).responses?.rules.length).toBeGreaterThan(0);
  });

  it('a default client-certificate requirement without a CA says it came from the tier', () => {
    expect(issuesOf(base({ tier: 3, tls: { cert: 'c', key: 'k' }, audit: { file: 'a.log' } }))).toEqual([
      'listeners[0].tls: listener "mqtts:8883" asks for client certificates (the default at tier 3 of PR.AC, docs/tiers.md) but has no tls.ca to verify them: set tls.ca',
    ]);
  });
});

describe('floors', () => {
  it('tier 2: no plaintext listener off loopback; loopback is fine; the error names file, line and key', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bastion-tiers-'));
    const file = path.join(dir, 'site.yaml');
    writeFileSync(file, ['version: 1', 'tier: 2', 'listeners:', '  - protocol: mqtt', '    host: 127.0.0.1', '    port: 1883', '  - protocol: ws', '    host: 0.0.0.0', '    port: 8080', 'authentication:', '  passwords: { file: users.txt }', ''].join('\n'));
    await expect(loadProfile(file)).rejects.toThrow(
      `${file}:7:5 listeners[1]: at tier 2 of PR.AC, plaintext ws listener "ws:8080" on 0.0.0.0 is below the floor of PR.AC-1 (listeners[]: no plaintext mqtt/ws listener off loopback): meet it, lower tiers.PR.AC, or record an exception { control: PR.AC-1, key: listeners[1], reason, approvedBy }`,
    );
    // the same at tier 1: allowed
    expect(issuesOf(base({ tier: 1, listeners: [{ protocol: 'ws', host: '0.0.0.0', port: 8080 }] }))).toEqual([]);
    expect(issuesOf(base({ tier: 2, listeners: [{ protocol: 'mqtt', host: '::1', port: 1883 }, { protocol: 'mqtt', host: '127.0.0.2', port: 1884 }] }))).toEqual([]);
  });

  it('tier 3: TLS listeners require client certificates and TLSv1.3', () => {
    const got = issuesOf(base({ tier: 3, tls: { ...TLS, minVersion: 'TLSv1.2', clientCertificate: 'optional' }, audit: { file: 'a.log' } }));
    expect(got).toHaveLength(2);
    expect(got[0]).toMatch(/^listeners\[0\]\.tls\.clientCertificate: at tier 3 of PR\.AC, TLS listener "mqtts:8883" with clientCertificate: optional is below the floor of PR\.AC-1/);
    expect(got[1]).toMatch(/^listeners\[0\]\.tls\.minVersion: at tier 3 of PR\.IP, TLS listener "mqtts:8883" accepting TLSv1\.2 is below the floor of PR\.IP-1/);
    // lower the tier of one category: only the other floor remains
    expect(issuesOf(base({ tier: 3, tiers: { 'PR.IP': 2 }, tls: { ...TLS, minVersion: 'TLSv1.2' }, audit: { file: 'a.log' } }))).toEqual([]);
  });

  it('authentication: no anonymous clients from tier 2, two factors at tier 4', () => {
    expect(issuesOf(base({ tier: 2, listeners: [{ protocol: 'mqtt', port: 1 }], authentication: { anonymous: true } }))[0]).toMatch(
      /^authentication\.anonymous: at tier 2 of PR\.AC, anonymous access \(anonymous: true\) is below the floor of PR\.AC-3/,
    );
    const four = issuesOf(base({ tier: 4, tls: TLS, authentication: { passwords: { file: 'u' } }, audit: { file: 'a.log' }, revocation: { crl: 'c.pem' } }));
    expect(four).toEqual([expect.stringMatching(/^authentication\.require: at tier 4 of PR\.CS, one-factor authentication \(require: \[\]\) is below the floor of PR\.CS-3/)]);
  });

  it('the ACL denies by default from tier 2', () => {
    expect(issuesOf(base({ tier: 2, listeners: [{ protocol: 'mqtt', port: 1 }], acl: { defaultEffect: 'allow' } }))).toEqual([
      expect.stringMatching(/^acl\.defaultEffect: at tier 2 of PR\.AC, default allow \(defaultEffect: allow\) is below the floor of PR\.AC-5/),
    ]);
    expect(issuesOf(base({ tier: 1, listeners: [{ protocol: 'mqtt', port: 1 }], acl: { defaultEffect: 'allow' } }))).toEqual([]);
  });

  it('sections declare their own floors: an audit log and every detector from tier 3', () => {
    const got = issuesOf(base({ tier: 3, listeners: [{ protocol: 'mqtt', port: 1 }], detectors: { silentClients: { enabled: false } } }));
    expect(got).toEqual([
      expect.stringMatching(/^detectors\.silentClients: at tier 3 of DE\.ID, the silentClients detector off is below the floor of DE\.ID-4/),
      expect.stringMatching(/^audit: at tier 3 of PR\.PT, no audit log is below the floor of PR\.PT-1/),
    ]);
  });
});

describe('exceptions', () => {
  const plain = { protocol: 'mqtt' as const, host: '0.0.0.0', port: 1883 };

  it('an exception for the floor and key waives it; a key covers what is below it; another control does not', () => {
    expect(issuesOf(base({ tier: 2, listeners: [plain], exceptions: [note('PR.AC-1', 'listeners[0]')] }))).toEqual([]);
    expect(issuesOf(base({ tier: 2, listeners: [plain], exceptions: [note('PR.AC-1', 'listeners')] }))).toEqual([]);
    expect(issuesOf(base({ tier: 2, listeners: [plain], exceptions: [note('PR.AC-5', 'listeners[0]')] }))).toHaveLength(1);
    expect(issuesOf(base({ tier: 2, listeners: [plain], exceptions: [note('PR.AC-1', 'listeners[1]')] }))).toHaveLength(1);
    // prefix on a segment boundary only
    expect(issuesOf(base({ tier: 2, listeners: [plain], exceptions: [note('PR.AC-1', 'listen')] }))).toHaveLength(1);
    const tls3 = base({ tier: 3, tls: { ...TLS, clientCertificate: 'none' }, audit: { file: 'a.log' }, exceptions: [note('PR.AC-1', 'listeners[0]')] });
    expect(issuesOf(tls3)).toEqual([]);
  });

  it('an expired exception no longer waives; at tier 4 an exception must expire; it must name a floor', () => {
    const expired = issuesOf(base({ tier: 2, listeners: [plain], exceptions: [note('PR.AC-1', 'listeners[0]', { expires: '2020-01-01' })] }));
    expect(expired).toEqual([expect.stringMatching(/listeners\[0\]: .*: its exception expired on 2020-01-01$/)]);
    const future = new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10);
    expect(issuesOf(base({ tier: 2, listeners: [plain], exceptions: [note('PR.AC-1', 'listeners[0]', { expires: future })] }))).toEqual([]);
    expect(issuesOf(base({ tier: 1, tiers: { 'PR.AC': 4 }, listeners: [{ protocol: 'mqtt', port: 1 }], exceptions: [note('PR.AC-1', 'listeners[0]')] }))).toEqual([
      'exceptions[0].expires: at tier 4 (Adaptive) of PR.AC an exception must say when it expires',
    ]);
    expect(issuesOf(base({ tier: 1, listeners: [{ protocol: 'mqtt', port: 1 }], exceptions: [note('PR.AT-1', 'x')] }))[0]).toMatch(/^exceptions\[0\]\.control: no tier floor protects PR\.AT-1/);
    expect(issuesOf(base({ tier: 1, listeners: [{ protocol: 'mqtt', port: 1 }], exceptions: [{ control: 'PR.AC-1', key: 'x', reason: 'short', approvedBy: 'me' }] }))[0]).toMatch(/^exceptions\[0\]\.reason: /);
  });
});

describe('attestations', () => {
  it('record evidence for what the broker cannot deliver, never for a broker-scope subcategory', () => {
    const ok = resolveProfile(base({ tier: 2, listeners: [{ protocol: 'mqtt', port: 1 }], attestations: [{ id: 'PR.AT-1', by: 'hr', date: '2025-01-10', evidence: 'https://intranet.example/t' }] }));
    expect(ok.attestations).toEqual([{ id: 'PR.AT-1', by: 'hr', date: '2025-01-10', evidence: 'https://intranet.example/t', tier: 2 }]);
    const bad = issuesOf(
      base({
        listeners: [{ protocol: 'mqtt', port: 1 }],
        attestations: [
          { id: 'PR.AC-5', by: 'x', date: '2025-01-10', evidence: 'https://e.example/' },
          { id: 'ZZ.ZZ-9', by: 'x', date: '2025-01-10', evidence: 'https://e.example/' },
          { id: 'PR.AT-2', by: 'x', date: '2999-01-01', evidence: 'https://e.example/' },
        ],
      }),
    );
    expect(bad).toEqual([
      'attestations[0].id: PR.AC-5 (Authorization of Clients by the Server) is delivered by the broker: assess measures it from the profile, it cannot be attested',
      'attestations[1].id: ZZ.ZZ-9 is not a subcategory of the catalog (bastion profile assess lists them)',
      'attestations[2].date: 2999-01-01 is in the future',
    ]);
    expect(issuesOf(base({ listeners: [{ protocol: 'mqtt', port: 1 }], attestations: [{ id: 'PR.AT-2', by: 'x', date: '2025-01-10', evidence: 'file:///etc/passwd' }] }))).toEqual([
      'attestations[0].evidence: expected an http(s) URL of the evidence, got "file:///etc/passwd"',
    ]);
  });
});

describe('docs/tiers.md', () => {
  it('contains the table generated from the sections and base keys', async () => {
    const docs = await readFile(path.join(repoRoot, 'docs/tiers.md'), 'utf8');
    expect(docs.includes(tierTable()), `docs/tiers.md table is out of date. Regenerate it from the repository root:\n  ${REGENERATE}`).toBe(true);
  });

  it('has a row per base key and control section, each floor at its tier', () => {
    const rows = tierRows();
    expect(rows.map((r) => r.key)).toEqual(expect.arrayContaining(['listeners', 'authentication', 'limits', 'acl', 'audit', 'detectors', 'responses', 'persistence']));
    expect(rows.map((r) => r.key)).not.toContain('exceptions');
    const table = tierTable();
    const acl = table.split('\n').find((l) => l.startsWith('| `acl`'))!;
    const cells = acl.split(' | ');
    expect(cells[2]).toBe('off: no topic authorization');
    expect(cells[3]).toContain('**floor PR.AC-5**: `acl.defaultEffect`: deny');
  });

  it('is linked from the README', async () => {
    expect(await readFile(path.join(repoRoot, 'README.md'), 'utf8')).toContain('docs/tiers.md');
  });
});

describe('the example profiles', () => {
  const redisUrl = inject('redisUrl');
  let site: Site | undefined;
  let broker: Bastion | undefined;
  const clients: mqtt.MqttClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true);
    await broker?.close();
    broker = undefined;
    await site?.cleanup();
    site = undefined;
  });

  it('all pass `bastion profile check`', () => {
    for (const n of [1, 2, 3, 4]) {
      const r = bastion(['profile', 'check', path.join(EXAMPLES, `tier-${n}.yaml`)]);
      expect(r.stderr, `tier-${n}`).toBe('');
      expect(r.code, `tier-${n}`).toBe(0);
      expect(r.stdout).toContain(`OK (tier ${n}`);
    }
  }, 60_000); // four runs of the built CLI: headroom on a loaded machine, no timing asserted

  async function start(name: string) {
    site = await exampleSite(name, redisUrl);
    broker = await createBroker({ profile: site.profile, logger: silent });
    const port = (listener: string) => broker!.addresses()[listener]!.port;
    const cert = (n: string) => ({ cert: readFileSync(path.join(site!.pki.clientsDir, `${n}.pem`)), key: readFileSync(path.join(site!.pki.clientsDir, `${n}-key.pem`)) });
    const ca = readFileSync(site.pki.caCert);
    return { port, cert, ca };
  }
  /** Re-reading the unchanged example is a clean reload (SIGHUP on a running site). */
  async function reloadsClean() {
    const r = await broker!.reload();
    expect(r.issues).toEqual([]);
    expect(r.ok).toBe(true);
  }
  const keep = (c: mqtt.MqttClient) => (clients.push(c), c);

  it('tier 1 starts: a password over plain MQTT works', async () => {
    const { port } = await start('tier-1');
    const c = keep(await connect(`mqtt://127.0.0.1:${port('devices-plain')}`, { username: 'device-1', password: PASSWORDS['device-1'] }));
    await c.subscribeAsync('anything/at/all'); // no ACL at tier 1
    await reloadsClean();
    expect(isRefusal(await tryConnect(`mqtt://127.0.0.1:${port('devices-plain')}`, { username: 'device-1', password: 'wrong' }))).toBe(true);
  });

  it('tier 2 starts: TLS with a password, the ACL denies by default', async () => {
    const { port, ca } = await start('tier-2');
    const c = keep(await connect(`mqtts://localhost:${port('devices')}`, { ca, username: 'device-1', password: PASSWORDS['device-1'] }));
    expect((await c.subscribeAsync('devices/device-1/#'))[0]!.qos).toBe(0);
    await expect(c.subscribeAsync('devices/device-2/#')).rejects.toThrow();
    await reloadsClean();
  });

  it('tier 3 starts: mutual TLS 1.3 with the client id bound to the certificate', async () => {
    const { port, cert, ca } = await start('tier-3');
    const url = `mqtts://localhost:${port('devices')}`;
    const c = keep(await connect(url, { ca, ...cert('device-1'), clientId: 'device-1' }));
    expect((c.stream as unknown as { getProtocol(): string }).getProtocol()).toBe('TLSv1.3');
    expect(isRefusal(await tryConnect(url, { ca, clientId: 'device-1', username: 'device-1', password: PASSWORDS['device-1'] }))).toBe(true); // no certificate
    expect(isRefusal(await tryConnect(url, { ca, ...cert('device-1'), clientId: 'device-2' }))).toBe(true);
    await reloadsClean();
  });

  it('tier 4 starts: certificate and password, both naming the client', async () => {
    const { port, cert, ca } = await start('tier-4');
    const url = `mqtts://localhost:${port('devices')}`;
    keep(await connect(url, { ca, ...cert('device-1'), clientId: 'device-1', username: 'device-1', password: PASSWORDS['device-1'] }));
    expect(isRefusal(await tryConnect(url, { ca, ...cert('device-1'), clientId: 'device-1' }))).toBe(true); // one factor
    expect(isRefusal(await tryConnect(url, { ca, ...cert('device-1'), clientId: 'device-1', username: 'device-2', password: PASSWORDS['device-2'] }))).toBe(true); // two identities
    expect(broker!.controls.get('revocation')).toBeDefined();
    await reloadsClean();
  });
});
