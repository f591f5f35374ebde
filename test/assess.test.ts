/**
 * `bastion profile assess`: the Current Profile against a Target Profile, per CSF subcategory, from
 * the profile file (controls built without listening) or from a running broker's effective
 * configuration (admin API), with exit code 3 while a gap remains.
 */
import { describe, it, expect, afterEach, inject } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { createBroker, assess, implementationsOf, redactProfile, type Assessment, type Bastion, type SubcategoryAssessment } from '@bastion/broker';
import { resolveProfile } from '@bastion/profile';
import type { ProfileInput } from '@bastion/profile';
import { spawn } from 'node:child_process';
import { BIN, bastion, type CliResult } from './support/cli.js';
import { EXAMPLES, exampleSite, type Site } from './support/tier-site.js';

const silent = pino({ level: 'silent' });
/** These tests run the built CLI several times; a loaded machine needs the headroom (no timing is asserted). */
const CLI_TIMEOUT = 90_000;
const redisUrl = inject('redisUrl');

function find(a: Assessment, id: string): SubcategoryAssessment {
  const s = [...a.functions.flatMap((f) => f.categories.flatMap((c) => c.subcategories)), ...a.other].find((x) => x.id === id);
  if (!s) throw new Error(`no ${id} in the assessment`);
  return s;
}

const json = (stdout: string) => JSON.parse(stdout) as Assessment;

/** The CLI without blocking this process: the broker under test runs in it and must answer. */
function bastionAsync(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let sites: Site[] = [];
let broker: Bastion | undefined;
afterEach(async () => {
  await broker?.close();
  broker = undefined;
  for (const s of sites.splice(0)) await s.cleanup();
});
async function site(name: string) {
  const s = await exampleSite(name, redisUrl);
  sites.push(s);
  return s;
}

describe('the engine', () => {
  const profile = (input: Omit<ProfileInput, 'version'>) => resolveProfile({ version: 1, ...input } as ProfileInput, { baseDir: '/site' });

  it('reached: the highest tier whose floors the profile meets; 1 when nothing enforces it', async () => {
    const p = profile({ tier: 2, tls: { cert: 'c', key: 'k', ca: 'ca' }, authentication: { passwords: { file: 'u' } } });
    const a = assess({ profile: p, implementations: await implementationsOf(p) });
    const ac1 = find(a, 'PR.AC-1');
    expect(ac1).toMatchObject({ reached: 2, target: 2, status: 'met' }); // TLS, but no client certificates: the tier-3 floor is not met
    expect(ac1.floors.map((f) => [f.from, f.met])).toEqual([
      [2, true],
      [3, false],
    ]);
    expect(ac1.notes.join('\n')).toMatch(/tier-3 floor not met: listeners\[0\]\.tls\.clientCertificate/);
    expect(find(a, 'PR.AC-5')).toMatchObject({ reached: 4, implementedBy: ['sys-topics', 'acl'] });
    expect(find(a, 'PR.CS-3')).toMatchObject({ reached: 1, target: 2, status: 'gap' }); // one factor
    expect(find(a, 'PR.AT-1')).toMatchObject({ scope: 'organization', reached: 0, target: null, status: 'needs-attestation' });
    expect(a.summary.gaps).toBeGreaterThan(0);
  });

  it('an exception counts the floor as met, and is listed with the subcategory', async () => {
    const p = profile({
      tier: 2,
      listeners: [{ protocol: 'mqtt', host: '0.0.0.0', port: 1883 }],
      authentication: { passwords: { file: 'u' } },
      exceptions: [{ control: 'PR.AC-1', key: 'listeners[0]', reason: 'a VPN concentrator in front', approvedBy: 'ciso' }, { control: 'PR.AC-5', key: 'acl', reason: 'nothing to waive here', approvedBy: 'ciso' }],
    });
    const a = assess({ profile: p, implementations: await implementationsOf(p) });
    expect(find(a, 'PR.AC-1').exceptions).toEqual([expect.objectContaining({ key: 'listeners[0]', approvedBy: 'ciso' })]);
    expect(find(a, 'PR.AC-1').floors[0]).toMatchObject({ from: 2, met: true, excepted: ['listeners[0]: plaintext mqtt listener "mqtt:1883" on 0.0.0.0'] });
    expect(a.unusedExceptions.map((e) => e.control)).toEqual(['PR.AC-5']);
  });

  it('a target: its tiers, what it enables and what it attests; the current profile is measured against them', async () => {
    const current = profile({ tier: 1, listeners: [{ protocol: 'mqtt', port: 1883 }], authentication: { passwords: { file: 'u' } } });
    const target = profile({
      tier: 2,
      listeners: [{ protocol: 'mqtt', port: 1883 }],
      authentication: { passwords: { file: 'u' } },
      accessLists: { addresses: { allow: ['10.0.0.0/8'] } },
      attestations: [{ id: 'PR.AT-1', by: 'hr', date: '2025-01-10', evidence: 'https://intranet.example/t' }],
    });
    const a = assess({ profile: current, implementations: await implementationsOf(current), target });
    expect(find(a, 'PR.AC-5')).toMatchObject({ reached: 1, target: 2, status: 'gap' }); // no ACL at tier 1
    expect(find(a, 'PR.AT-1')).toMatchObject({ target: 2, status: 'gap' });
    expect(find(a, 'PR.AT-1').notes.join('\n')).toMatch(/the target has an attestation \(hr, 2025-01-10\); this profile has none/);
    // the same profile as its own target: tier 1 asks for nothing the broker does not have
    expect(assess({ profile: current, implementations: await implementationsOf(current) }).summary.gaps).toBe(0);
  });

  it('the effective profile of a broker hides secrets', () => {
    const r = redactProfile({ persistence: { redis: { url: 'redis://u:secret@h:1/0', password: 'pw' }, encryption: { keys: [{ value: 'k'.repeat(64) }, { file: '/k' }] } }, admin: { tokens: [{ name: 'ops', hash: 'sha256:ab' }] } });
    expect(JSON.stringify(r)).not.toMatch(/secret|pw"|kkkk|sha256:ab/);
    expect(r).toMatchObject({ persistence: { redis: { url: 'redis://h:1/0' }, encryption: { keys: [{ value: '[redacted]' }, { file: '/k' }] } } });
  });
});

describe('bastion profile assess', () => {
  it('tier 4 against itself: no gap, exit 0; every broker subcategory reaches tier 4', async () => {
    const s = await site('tier-4');
    const r = bastion(['profile', 'assess', '--profile', s.profile, '--target', s.profile, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const a = json(r.stdout);
    expect(a.summary.gaps).toBe(0);
    for (const sub of a.functions.flatMap((f) => f.categories.flatMap((c) => c.subcategories))) {
      if (sub.scope === 'broker') expect(sub.reached, sub.id).toBe(4);
    }
    expect(find(a, 'PR.AT-1')).toMatchObject({ status: 'attested', attestation: { by: 'plant security officer' } });
    expect(find(a, 'PR.PT-1')).toMatchObject({ scope: 'outside-catalog', reached: 4 });
    // the readable table
    const t = bastion(['profile', 'assess', '--profile', s.profile, '--target', s.profile]);
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/PR\.CS-3 +Two-factor authentication +broker +4 +4 +ok +authentication: two factors required: certificate \+ password/);
    expect(t.stdout).toMatch(/0 gaps/);
  }, CLI_TIMEOUT);

  it('every example assesses; a lower tier against a higher target shows its gaps and exits 3', async () => {
    const one = await site('tier-1');
    const own = bastion(['profile', 'assess', '--profile', one.profile]);
    expect(own.code).toBe(0); // tier 1 asks little of itself
    const up = bastion(['profile', 'assess', '--profile', one.profile, '--target', path.join(EXAMPLES, 'tier-2.yaml'), '--json']);
    expect(up.code).toBe(3);
    expect(up.stderr).toMatch(/^bastion: \d+ gaps to the target remain\n$/);
    const a = json(up.stdout);
    expect(find(a, 'PR.AC-1').notes[0]).toBe('reaches tier 1, target 2');
    expect(find(a, 'PR.AC-1').notes.join('\n')).toMatch(/plaintext mqtt listener "devices-plain" on 0\.0\.0\.0/);
    expect(find(a, 'PR.AC-5')).toMatchObject({ status: 'gap', reached: 1 });
    for (const n of [2, 3]) {
      const s = await site(`tier-${n}`);
      const r = bastion(['profile', 'assess', '--profile', s.profile, '--markdown']);
      expect([0, 3], `tier-${n}: ${r.stderr}`).toContain(r.code);
      expect(r.stdout).toContain('| Subcategory | Scope | Profile sets | Implemented by | Reached | Target | Status | Notes |');
    }
    // the tier-2 example records one exception: the assessment shows it
    const two = json(bastion(['profile', 'assess', '--profile', sites[1]!.profile, '--json']).stdout);
    expect(find(two, 'PR.AC-1').exceptions[0]).toMatchObject({ key: 'listeners[1]', approvedBy: 'plant security officer' });
  }, CLI_TIMEOUT);

  it('usage and failures: a missing --profile is a usage error; an unreadable profile fails', () => {
    expect(bastion(['profile', 'assess']).code).toBe(2);
    const missing = bastion(['profile', 'assess', '--profile', '/nonexistent/p.yaml']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/\/nonexistent\/p\.yaml:0:0 \(root\): file not found/);
  }, CLI_TIMEOUT);

  it('--live measures the running broker, not the file', async () => {
    const s = await site('tier-4');
    broker = await createBroker({ profile: s.profile, logger: silent });
    const admin = (broker.controls.services.find((x) => x.name === 'admin') as unknown as { server: { url: string } }).server.url;
    const tokenFile = path.join(s.dir, 'token');
    writeFileSync(tokenFile, s.token, { mode: 0o600 });
    const live = ['--live', '--url', admin, '--token-file', tokenFile, '--ca', s.pki.caCert];
    // the file changes after the start (revocation dropped, RS.RP lowered so it still loads) …
    const original = await s.read();
    await s.write(original.replace(/\nrevocation:\n  crl: [^\n]+\n  stale: refuse\n/, '\n').replace('tier: 4\n', 'tier: 4\ntiers:\n  RS.RP: 3\n'));
    const target = path.join(s.dir, 'target.yaml');
    writeFileSync(target, original);
    const fromFile = json(bastion(['profile', 'assess', '--profile', s.profile, '--target', target, '--json']).stdout);
    expect(find(fromFile, 'RS.RP-1').status).toBe('gap');
    // … the running broker still revokes: no gap
    const r = await bastionAsync(['profile', 'assess', '--target', target, '--json', ...live]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const a = json(r.stdout);
    expect(a.live).toBe(true);
    expect(find(a, 'RS.RP-1')).toMatchObject({ status: 'met', implementedBy: expect.arrayContaining(['revocation']) });
    expect(JSON.stringify(a)).not.toContain(s.token);
    // a wrong token is refused
    writeFileSync(tokenFile, 'bst_wrong', { mode: 0o600 });
    const refused = await bastionAsync(['profile', 'assess', ...live]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/401/);
  }, CLI_TIMEOUT);
});
