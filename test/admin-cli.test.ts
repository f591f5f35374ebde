/**
 * `bastion admin` against a running `bastion start` process, as an operator would use them: the
 * built CLI, a profile file with an `admin` section, a token file made by `bastion admin token`.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, writeFileSync, statSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import mqtt from 'mqtt';
import { hashPassword, serializeUsers } from '@bastion/middleware';
import { bastion, bastionStart, BIN, type Running } from './support/cli.js';
import { connect, tryConnect, isRefusal, closed } from './support/mqtt.js';

let dir: string;
let tokenFile: string;
let profile: string;
let running: Running | undefined;
let mqttPort: number;
let adminUrl: string;
const clients: mqtt.MqttClient[] = [];

const noStack = (s: string) => expect(s).not.toMatch(/\n\s+at .+:\d+:\d+/);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

beforeAll(async () => {
  // The CLI runs from the build, as users run it; tsc -b is incremental, so this is quick when up to date.
  // (A failing build elsewhere in the tree still leaves a usable one when this command was built before.)
  const r = spawnSync('npx', ['tsc', '-b', 'tsconfig.json'], { cwd: path.resolve(BIN, '../../../..'), encoding: 'utf8' });
  if (r.status !== 0 && !existsSync(path.resolve(BIN, '../../dist/commands/admin.js'))) throw new Error(`build failed:\n${r.stdout}${r.stderr}`);
  dir = mkdtempSync(path.join(tmpdir(), 'bastion-admin-cli-'));
  writeFileSync(path.join(dir, 'users.txt'), serializeUsers([{ username: 'alice', hash: await hashPassword('alice-password'), groups: [] }]), { mode: 0o600 });

  tokenFile = path.join(dir, 'ops.token');
  const t = bastion(['admin', 'token', '--name', 'ops', '--out', tokenFile]);
  expect(t.code).toBe(0);
  const hash = /hash: "(sha256:[0-9a-f]{64})"/.exec(t.stdout)?.[1];
  expect(hash).toBeDefined();
  expect(t.stdout).not.toContain(readFileSync(tokenFile, 'utf8').trim()); // with --out the token is only in the file

  const adminPort = await freePort();
  profile = path.join(dir, 'site.yaml');
  writeFileSync(
    profile,
    [
      'version: 1',
      'listeners:',
      '  - { name: tcp, protocol: mqtt, host: 127.0.0.1, port: 0 }',
      'authentication:',
      '  passwords: { file: users.txt }',
      'admin:',
      `  port: ${adminPort}`,
      '  tokens:',
      `    - { name: ops, hash: "${hash}" }`,
      '',
    ].join('\n'),
  );
  running = bastionStart(['--profile', profile], { cwd: dir });
  const m = await running.waitFor(/tcp listening on mqtt:\/\/127\.0\.0\.1:(\d+)/);
  mqttPort = Number(m[1]);
  adminUrl = (await running.waitFor(/"url":"(http:\/\/127\.0\.0\.1:\d+)"[^\n]*"msg":"admin API listening"/))[1] as string;
  expect(adminUrl).toBe(`http://127.0.0.1:${adminPort}`);
});

afterAll(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await running?.stop();
});

describe('bastion admin', () => {
  it('token: prints a hash line for the profile and writes the token file mode 0600; the token alone is shown once without --out', () => {
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(tokenFile, 'utf8')).toMatch(/^bst_[A-Za-z0-9_-]{43}\n$/);
    const again = bastion(['admin', 'token', '--name', 'ci', '--read-only']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/token \(shown only now.*\): bst_[A-Za-z0-9_-]{43}\n/);
    expect(again.stdout).toMatch(/- \{ name: ci, hash: "sha256:[0-9a-f]{64}", readOnly: true \}/);
    expect(bastion(['admin', 'token', '--out', tokenFile]).code).toBe(1); // never overwrites a token file
  });

  it('clients lists a connected mqtt.js client (table and --json), kick disconnects it', async () => {
    const c = await connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'alice-1', username: 'alice', password: 'alice-password' });
    clients.push(c);
    await c.subscribeAsync('plant/#');

    // the URL from the profile's admin section
    const table = bastion(['admin', 'clients', '--profile', profile, '--token-file', tokenFile], { cwd: dir });
    expect(table.stderr).toBe('');
    expect(table.code).toBe(0);
    const [head, row] = table.stdout.trim().split('\n');
    expect(head).toMatch(/^CLIENT ID\s+USERNAME\s+ADDRESS\s+LISTENER\s+PROTO/);
    expect(row).toMatch(/^alice-1\s+alice\s+127\.0\.0\.1:\d+\s+tcp\s+mqtt\/4\s/);

    const json = bastion(['admin', 'clients', '--url', adminUrl, '--json'], { env: { BASTION_ADMIN_TOKEN: readFileSync(tokenFile, 'utf8').trim() } });
    expect(json.code).toBe(0);
    const list = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ id: 'alice-1', username: 'alice', remoteAddress: '127.0.0.1', listener: 'tcp', subscriptions: [{ topic: 'plant/#', qos: 0 }] });

    const gone = closed(c);
    const kick = bastion(['admin', 'kick', 'alice-1', '--url', adminUrl, '--token-file', tokenFile, '--reason', 'maintenance']);
    expect(kick.code).toBe(0);
    expect(kick.stdout).toBe('disconnected alice-1\n');
    await gone;
    const after = bastion(['admin', 'clients', '--url', adminUrl, '--token-file', tokenFile]);
    expect(after.stdout).toBe('no clients connected\n');
    expect(running!.output()).toMatch(/"type":"admin.action"[^\n]*"actor":"token:ops"[^\n]*"action":"clients.disconnect"/);
  });

  it('users add reads the password from stdin, and the new user can connect at once', async () => {
    const add = bastion(['admin', 'users', 'add', 'carol', '-g', 'field', '--url', adminUrl, '--token-file', tokenFile], { input: 'carol-password\n' });
    expect(add.stderr).toBe('');
    expect(add.code).toBe(0);
    const c = await connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'carol-1', username: 'carol', password: 'carol-password' });
    clients.push(c);
    const list = bastion(['admin', 'users', 'list', '--url', adminUrl, '--token-file', tokenFile]);
    expect(list.stdout).toMatch(/carol\s+field\s+1/);
    expect(readFileSync(path.join(dir, 'users.txt'), 'utf8')).toMatch(/^carol:\$scrypt\$/m);
    const gone = closed(c);
    expect(bastion(['admin', 'users', 'remove', 'carol', '--url', adminUrl, '--token-file', tokenFile]).code).toBe(0);
    await gone;
    expect(isRefusal(await tryConnect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'carol-2', username: 'carol', password: 'carol-password' }))).toBe(true);
  });

  it('errors: no token → one line, exit 1; an API error → one line, exit 1; a bad flag or a missing argument → exit 2; there is no --token flag', () => {
    const none = bastion(['admin', 'clients', '--url', adminUrl], { env: { BASTION_ADMIN_TOKEN: '' } });
    expect(none.code).toBe(1);
    expect(none.stderr).toBe('bastion: authentication required (HTTP 401)\n');
    const missing = bastion(['admin', 'kick', 'nobody', '--url', adminUrl, '--token-file', tokenFile]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('bastion: no connected client with id "nobody" (HTTP 404)\n');
    const off = bastion(['admin', 'acl', 'list', '--url', adminUrl, '--token-file', tokenFile]);
    expect(off.code).toBe(1);
    expect(off.stderr).toMatch(/^bastion: the ACL is not enabled on this broker.*\(HTTP 404\)\n$/);
    const flag = bastion(['admin', 'clients', '--token', 'bst_x']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("unknown option '--token'");
    expect(bastion(['admin', 'kick']).code).toBe(2);
    const ban = bastion(['admin', 'ban', '--ip', '10.0.0.1', '--url', adminUrl, '--token-file', tokenFile]);
    expect(ban.code).toBe(2);
    expect(ban.stderr).toBe('bastion: give exactly one of --for <duration> and --permanent\n');
    const down = bastion(['admin', 'health', '--url', 'http://127.0.0.1:1', '--token-file', tokenFile]);
    expect(down.code).toBe(1);
    expect(down.stderr).toBe('bastion: cannot reach the admin API at http://127.0.0.1:1: ECONNREFUSED\n');
    for (const r of [none, missing, off, flag, ban, down]) noStack(r.stderr);
    const help = bastion(['admin', 'acl', 'replace', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: bastion admin acl replace/);
  });
});
