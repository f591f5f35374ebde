import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, writeFileSync, statSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { readUsersFile, verifyPassword } from '@bastion/middleware';
import { bastion, bastionStart, BIN } from './support/cli.js';
import { connect, tryConnect, isRefusal } from './support/mqtt.js';

let dir: string;
beforeAll(() => {
  // The CLI runs from the build, as users run it.
  if (!existsSync(BIN.replace('bin/bastion.js', 'dist/bin.js'))) {
    const r = spawnSync('npx', ['tsc', '-b', 'tsconfig.json'], { cwd: path.resolve(BIN, '../../../..'), stdio: 'inherit' });
    if (r.status !== 0) throw new Error('build failed');
  }
  dir = mkdtempSync(path.join(tmpdir(), 'bastion-cli-'));
});

const noStack = (s: string) => expect(s).not.toMatch(/\n\s+at .+:\d+:\d+/);

describe('bastion --help and errors', () => {
  it('every command has --help and exits 0', () => {
    for (const args of [[], ['start'], ['profile'], ['profile', 'check'], ['profile', 'schema'], ['passwd'], ['certs'], ['certs', 'init'], ['certs', 'issue', 'client'], ['certs', 'list']]) {
      const r = bastion([...args, '--help']);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^Usage: bastion/);
    }
  });

  it('a bad flag or command is a usage error (exit 2) with a clear line and no stack trace', () => {
    const r = bastion(['certs', 'init', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("error: unknown option '--bogus'");
    noStack(r.stderr);
    const c = bastion(['frobnicate']);
    expect(c.code).toBe(2);
    expect(c.stderr).toContain("unknown command 'frobnicate'");
  });

  it('a missing profile file is one clear line and exit 1', () => {
    const r = bastion(['start', '--profile', path.join(dir, 'missing.yaml')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('missing.yaml');
    expect(r.stderr).toContain('file not found');
    noStack(r.stderr);
  });
});

describe('bastion profile', () => {
  it('check names file, line and key for a typo and for a wrong type, exit 1', () => {
    const file = path.join(dir, 'site.yaml');
    writeFileSync(file, ['version: 1', 'listeners:', '  - protocol: mqtt', '    prot: 1883', '    port: "1883"', ''].join('\n'));
    const r = bastion(['profile', 'check', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${file}:4:5 listeners[0].prot: unknown key "prot" (did you mean "protocol"?)`);
    expect(r.stderr).toContain(`${file}:5:11 listeners[0].port: expected number, got string`);
    expect(r.stderr).toContain(`${file}: 2 errors`);
    noStack(r.stderr);
  });

  it('check accepts the shipped example profiles', () => {
    for (const f of ['default.yaml', 'tier-3-mtls.yaml']) {
      const r = bastion(['profile', 'check', path.resolve(BIN, '../../../../examples/profiles', f)]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(': OK');
    }
  });

  it('schema prints the JSON Schema', () => {
    const r = bastion(['profile', 'schema']);
    expect(r.code).toBe(0);
    const schema = JSON.parse(r.stdout);
    expect(schema.$id).toContain('profile');
    expect(Object.keys(schema.properties)).toEqual(expect.arrayContaining(['version', 'tier', 'listeners', 'authentication', 'limits']));
  });
});

describe('bastion passwd', () => {
  it('adds and changes users without echoing the password; the file is 0600', async () => {
    const file = path.join(dir, 'users.txt');
    const r = bastion(['passwd', file, 'alice', '--groups', 'ops,dms'], { input: 'first-password\n' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toContain('first-password');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = bastion(['passwd', file, 'alice'], { input: 'second-password\n' });
    expect(again.stdout).toContain('updated user alice');
    const users = await readUsersFile(file);
    const alice = users.get('alice')!;
    expect(alice.groups).toEqual(['ops', 'dms']);
    expect(await verifyPassword(alice.hash, 'second-password')).toBe(true);
    expect(await verifyPassword(alice.hash, 'first-password')).toBe(false);
    expect(bastion(['passwd', file, 'bad name'], { input: 'x\n' }).code).toBe(2);
    expect(bastion(['passwd', file, 'bob'], { input: 'short\n' }).code).toBe(1);
  });

  it('--generate makes a device token: printed once on stdout, only its fast hash kept', async () => {
    const file = path.join(dir, 'devices.txt');
    const r = bastion(['passwd', file, 'meter-17', '--generate', '--groups', 'meters']);
    expect(r.code, r.stderr).toBe(0);
    const token = r.stdout.trim();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(r.stderr).toContain('added user meter-17');
    expect(r.stderr).not.toContain(token);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).not.toContain(token);
    const meter = (await readUsersFile(file)).get('meter-17')!;
    expect(meter.hash).toMatch(/^\$sha256\$/);
    expect(meter.groups).toEqual(['meters']);
    expect(await verifyPassword(meter.hash, token)).toBe(true);
    // a near miss: the last character changed to one it is not (as in device-tokens.test.ts)
    expect(await verifyPassword(meter.hash, `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`)).toBe(false);
    // a second --generate replaces it: the old token stops working
    const next = bastion(['passwd', file, 'meter-17', '--generate']).stdout.trim();
    expect(next).not.toBe(token);
    const replaced = (await readUsersFile(file)).get('meter-17')!;
    expect(await verifyPassword(replaced.hash, token)).toBe(false);
    expect(await verifyPassword(replaced.hash, next)).toBe(true);
  });
});

describe('bastion certs', () => {
  it('init writes a dev PKI with 0600 keys, issue client adds one, list --json shows them', () => {
    const pki = path.join(dir, 'pki');
    expect(bastion(['certs', 'init', '--dir', pki]).code).toBe(0);
    for (const f of ['ca-key.pem', 'server-key.pem', 'clients/device-1-key.pem', 'clients/device-2-key.pem']) {
      expect(statSync(path.join(pki, f)).mode & 0o777, f).toBe(0o600);
    }
    const second = bastion(['certs', 'init', '--dir', pki]);
    expect(second.stdout).toContain('already holds a PKI');
    const issued = bastion(['certs', 'issue', 'client', 'meter-7', '--dir', pki, '--uri', 'urn:dev:meter-7', '--json']);
    expect(issued.code, issued.stderr).toBe(0);
    expect(JSON.parse(issued.stdout)).toMatchObject({ name: 'meter-7' });
    const list = JSON.parse(bastion(['certs', 'list', '--dir', pki, '--json']).stdout) as Array<{ name: string; kind: string; uris: string[] }>;
    expect(list.map((c) => c.name)).toEqual(expect.arrayContaining(['device-1', 'device-2', 'meter-7']));
    expect(list.find((c) => c.name === 'meter-7')!.uris).toEqual(['urn:dev:meter-7']);
    expect(bastion(['certs', 'issue', 'client', 'x', '--dir', pki, '--days', 'soon']).code).toBe(2);
    expect(bastion(['certs', 'list', '--dir', path.join(dir, 'nope')]).code).toBe(1);
  });
});

describe('bastion start', () => {
  it('with a profile: listens, serves, and stops cleanly on SIGTERM', async () => {
    const profile = path.join(dir, 'plain.yaml');
    writeFileSync(profile, ['version: 1', 'listeners:', '  - { protocol: mqtt, port: 0 }', 'authentication: { anonymous: true }', 'logging: { level: warn }', ''].join('\n'));
    const run = bastionStart(['--profile', profile]);
    const m = await run.waitFor(/listening on mqtt:\/\/127\.0\.0\.1:(\d+)/);
    const c = await connect(`mqtt://127.0.0.1:${m[1]}`);
    await c.endAsync();
    expect(await run.stop('SIGTERM')).toBe(0);
  });
});

describe('the embedded default (first start)', () => {
  let run: ReturnType<typeof bastionStart> | undefined;
  afterAll(async () => { await run?.stop(); });

  it('makes dev certificates and a first user, prints the password once, keeps it 0600, and needs TLS + the password', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'bastion-first-'));
    run = bastionStart([], { cwd });
    await run.waitFor(/listening on mqtts:\/\/127\.0\.0\.1:8883/);
    const printed = run.output().match(/first user "admin" with password: (\S+)/);
    expect(printed).not.toBeNull();
    const password = printed![1]!;
    const kept = path.join(cwd, 'certs-dev', 'initial-password.txt');
    expect(statSync(kept).mode & 0o777).toBe(0o600);
    expect(readFileSync(kept, 'utf8').trim()).toBe(`admin:${password}`);
    for (const f of ['ca-key.pem', 'server-key.pem', 'users.txt']) expect(statSync(path.join(cwd, 'certs-dev', f)).mode & 0o777).toBe(0o600);
    // the password never reaches a log line
    expect(run.output().split('\n').filter((l) => l.startsWith('{')).join('\n')).not.toContain(password);
    const ca = readFileSync(path.join(cwd, 'certs-dev', 'ca.pem'));
    const ok = await connect('mqtts://localhost:8883', { ca, username: 'admin', password });
    await ok.endAsync();
    const wrong = await tryConnect('mqtts://localhost:8883', { ca, username: 'admin', password: 'guess' });
    expect(isRefusal(wrong) && wrong.code).toBe(4);
    const plain = await tryConnect('mqtt://127.0.0.1:8883', { username: 'admin', password });
    expect(isRefusal(plain)).toBe(true);
    expect(await run.stop()).toBe(0);
    // second start: nothing new is made and no password is printed
    run = bastionStart([], { cwd });
    await run.waitFor(/listening on mqtts/);
    expect(run.output()).not.toContain('password:');
  });
});
