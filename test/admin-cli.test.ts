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
import { connect, tryConnect, isRefusal, closed, nextMessage } from './support/mqtt.js';

let dir: string;
let tokenFile: string;
let profile: string;
let running: Running | undefined;
let mqttPort: number;
let lbPort: number;
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
  writeFileSync(
    path.join(dir, 'users.txt'),
    serializeUsers([
      { username: 'alice', hash: await hashPassword('alice-password'), groups: [] },
      { username: 'dave', hash: await hashPassword('dave-password'), groups: [] },
      { username: 'ops-bot', hash: await hashPassword('ops-bot-password'), groups: [] },
    ]),
    { mode: 0o600 },
  );

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
      "  - { name: lb, protocol: mqtt, host: 127.0.0.1, port: 0, proxyProtocol: { trusted: ['127.0.0.1'] } }",
      'authentication:',
      '  passwords: { file: users.txt }',
      'responses:',
      '  allow: { usernames: [ops-bot] }',
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
  lbPort = Number((await running.waitFor(/lb listening on mqtt:\/\/127\.0\.0\.1:(\d+)/))[1]);
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

  it('users add --generate prints the device token alone on stdout; the device connects with it', async () => {
    const add = bastion(['admin', 'users', 'add', 'meter-3', '--generate', '--url', adminUrl, '--token-file', tokenFile]);
    expect(add.code, add.stderr).toBe(0);
    const token = add.stdout.trim();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(add.stderr).toContain('added user meter-3 with a device token');
    expect(readFileSync(path.join(dir, 'users.txt'), 'utf8')).toMatch(/^meter-3:\$sha256\$/m);
    clients.push(await connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'meter-3', username: 'meter-3', password: token }));
    expect(running!.output()).not.toContain(token);
    expect(bastion(['admin', 'users', 'remove', 'meter-3', '--url', adminUrl, '--token-file', tokenFile]).code).toBe(0);
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

/** An MQTT session through the `lb` listener, opened with the PROXY v1 header a TCP load balancer writes. */
async function behindBalancer(clientId: string, src: string, sport: number): Promise<mqtt.MqttClient> {
  const c = new mqtt.MqttClient(
    () => {
      const s = net.connect({ host: '127.0.0.1', port: lbPort });
      s.write(`PROXY TCP4 ${src} 192.0.2.1 ${sport} 1883\r\n`);
      return s;
    },
    { clientId, username: 'alice', password: 'alice-password', reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4 },
  );
  clients.push(c);
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
    c.once('close', () => reject(new Error(`${clientId} closed before CONNACK`)));
  });
  return c;
}

const admin = (...args: string[]) => bastion(['admin', ...args, '--url', adminUrl, '--token-file', tokenFile]);

describe('bastion admin clients behind a load balancer', () => {
  it('shows the address from the PROXY header as ADDRESS and the balancer as VIA (table) and proxy (JSON); a direct client has none', async () => {
    const lb = await behindBalancer('lb-1', '192.0.2.10', 40001);
    const direct = await connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'direct-1', username: 'alice', password: 'alice-password' });
    clients.push(direct);

    const json = admin('clients', '--json');
    expect(json.code).toBe(0);
    const list = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
    const viaLb = list.find((c) => c.id === 'lb-1');
    expect(viaLb).toMatchObject({ remoteAddress: '192.0.2.10', remotePort: 40001, listener: 'lb', proxy: { address: '127.0.0.1', port: expect.any(Number) } });
    expect(list.find((c) => c.id === 'direct-1')).toMatchObject({ remoteAddress: '127.0.0.1', listener: 'tcp', proxy: null });

    const table = admin('clients');
    expect(table.code).toBe(0);
    const [head, ...rows] = table.stdout.trim().split('\n');
    expect(head).toMatch(/^CLIENT ID\s+USERNAME\s+ADDRESS\s+VIA\s+LISTENER\s+PROTO/);
    const proxyPort = (viaLb!.proxy as { port: number }).port;
    expect(rows.find((r) => r.startsWith('lb-1'))).toMatch(new RegExp(`^lb-1\\s+alice\\s+192\\.0\\.2\\.10:40001\\s+127\\.0\\.0\\.1:${proxyPort}\\s+lb\\s+mqtt/4\\s`));
    expect(rows.find((r) => r.startsWith('direct-1'))).toMatch(/^direct-1\s+alice\s+127\.0\.0\.1:\d+\s+-\s+tcp\s+mqtt\/4\s/);

    const gone = [closed(lb), closed(direct)];
    expect(admin('kick', 'lb-1').code).toBe(0);
    expect(admin('kick', 'direct-1').code).toBe(0);
    await Promise.all(gone);
  });
});

describe('bastion admin responses', () => {
  it('history with nothing done yet; block-topic drops publishes to the filter and shows in history; unblock-topic lifts it', async () => {
    const empty = admin('responses');
    expect(empty.stderr).toBe('');
    expect(empty.code).toBe(0);
    expect(empty.stdout).toBe('lockdown: off\nblocked topics: none\nhistory: no actions yet\n');

    const sub = await connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'watch-1', username: 'alice', password: 'alice-password' });
    clients.push(sub);
    await sub.subscribeAsync('grid/#');
    const pub = await connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'pub-1', username: 'alice', password: 'alice-password' });
    clients.push(pub);

    const block = admin('responses', 'block-topic', 'grid/control/#', '--for', '15m', '--reason', 'compromised channel');
    expect(block.stderr).toBe('');
    expect(block.code).toBe(0);
    expect(block.stdout).toMatch(/^blocked topic grid\/control\/# until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n$/);
    // the blocked publish is dropped; the next one, from the same client, arrives first
    const first = nextMessage(sub);
    pub.publish('grid/control/open', 'x');
    pub.publish('grid/data/v', '120');
    expect((await first).topic).toBe('grid/data/v');

    const history = admin('responses', 'history');
    expect(history.code).toBe(0);
    const lines = history.stdout.trim().split('\n');
    expect(lines[0]).toBe('lockdown: off');
    expect(lines[1]).toBe('blocked topics:');
    expect(lines[2]).toMatch(/^TOPIC\s+UNTIL$/);
    expect(lines[3]).toMatch(/^grid\/control\/#\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    expect(lines[4]).toBe('history:');
    expect(lines[5]).toMatch(/^TIME\s+ACTION\s+CONTROL\s+OUTCOME\s+TARGET\s+FOR\s+BY\s+NOTE$/);
    expect(lines[6]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+block-topic\s+RS\.RP-4\s+done\s+topic:grid\/control\/#\s+15m\s+admin token:ops\s+-$/);

    const json = admin('responses', '--json');
    expect(json.code).toBe(0);
    const r = JSON.parse(json.stdout) as { lockedDown: boolean; blockedTopics: Array<{ topic: string; expiresAt: number }>; history: Array<Record<string, unknown>> };
    expect(r.lockedDown).toBe(false);
    expect(r.blockedTopics).toEqual([{ topic: 'grid/control/#', expiresAt: expect.any(Number) }]);
    expect(r.history.at(-1)).toMatchObject({ action: 'block-topic', outcome: 'done', target: { topic: 'grid/control/#' }, duration: 900_000, actor: 'admin token:ops' });

    const unblock = admin('responses', 'unblock-topic', 'grid/control/#');
    expect(unblock.code).toBe(0);
    expect(unblock.stdout).toBe('unblocked topic grid/control/#\n');
    const again = nextMessage(sub);
    pub.publish('grid/control/open', 'y');
    expect((await again).topic).toBe('grid/control/open');
    const twice = admin('responses', 'unblock-topic', 'grid/control/#');
    expect(twice.code).toBe(1);
    expect(twice.stderr).toBe('bastion: topic "grid/control/#" is not blocked (HTTP 404)\n');
    expect(running!.output()).toMatch(/"type":"admin.action"[^\n]*"action":"responses.block-topic"/);
  });

  it('lockdown on refuses new connections (with --disconnect-others it also closes the others), off lets them in; both are recorded', async () => {
    const on = admin('responses', 'lockdown', 'on', '--reason', 'drill');
    expect(on.stderr).toBe('');
    expect(on.code).toBe(0);
    expect(on.stdout).toBe('lockdown on until lifted (0 client(s) disconnected)\n');
    expect(isRefusal(await tryConnect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'late-1', username: 'alice', password: 'alice-password' }))).toBe(true);
    // the allow-listed identity (responses.allow) still gets in
    const bot = await connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'bot-1', username: 'ops-bot', password: 'ops-bot-password' });
    clients.push(bot);
    expect(admin('responses').stdout).toMatch(/^lockdown: on\n/);

    const off = admin('responses', 'lockdown', 'off');
    expect(off.code).toBe(0);
    expect(off.stdout).toBe('lockdown lifted\n');
    const dave = await connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'dave-1', username: 'dave', password: 'dave-password' });
    clients.push(dave);

    const gone = closed(dave);
    const kicking = admin('responses', 'lockdown', 'on', '--for', '10m', '--disconnect-others', '--json');
    expect(kicking.code).toBe(0);
    const record = JSON.parse(kicking.stdout) as Record<string, unknown>;
    expect(record).toMatchObject({ action: 'lockdown', control: 'RS.RP-5', outcome: 'done', duration: 600_000, actor: 'admin token:ops', detail: { disconnected: expect.any(Number) } });
    await gone;
    expect(bot.connected).toBe(true);
    expect(admin('responses', 'lockdown', 'off', '--json').stdout).toBe('{\n  "lockedDown": false\n}\n');
    const notLocked = admin('responses', 'lockdown', 'off');
    expect(notLocked.code).toBe(1);
    expect(notLocked.stderr).toBe('bastion: the broker is not in lockdown (HTTP 404)\n');
    expect(admin('responses', 'lockdown', 'maybe').code).toBe(2);
    const offWithFlags = admin('responses', 'lockdown', 'off', '--for', '5m');
    expect(offWithFlags.code).toBe(2);
    expect(offWithFlags.stderr).toBe('bastion: lockdown off takes no --for, --reason or --disconnect-others\n');
    const history = JSON.parse(admin('responses', '--json').stdout) as { history: Array<{ action: string }> };
    expect(history.history.map((h) => h.action).filter((a) => a === 'lockdown' || a === 'lift-lockdown')).toEqual(['lockdown', 'lift-lockdown', 'lockdown', 'lift-lockdown']);
  });

  it('revoke removes a password credential at once; an allow-listed user is not revoked (exit 1 with the why)', async () => {
    const dave = await connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'dave-2', username: 'dave', password: 'dave-password' });
    clients.push(dave);
    const gone = closed(dave);
    const revoke = admin('responses', 'revoke', 'dave', '--reason', 'leaked password');
    expect(revoke.stderr).toBe('');
    expect(revoke.code).toBe(0);
    expect(revoke.stdout).toBe('revoked the credential of dave: password removed\n');
    await gone;
    expect(isRefusal(await tryConnect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'dave-3', username: 'dave', password: 'dave-password' }))).toBe(true);

    const skipped = admin('responses', 'revoke', 'ops-bot', '--json');
    expect(skipped.code).toBe(1);
    expect(JSON.parse(skipped.stdout)).toMatchObject({ action: 'revoke', outcome: 'skipped', why: 'allow-listed' });
    expect(skipped.stderr).toBe('bastion: revoke not done (skipped): allow-listed\n');
    expect(admin('responses', 'revoke').code).toBe(2);
    noStack(skipped.stderr);
  });

  it('shutdown needs --confirm (exit 2, nothing sent); with it the broker closes and its process ends', async () => {
    const refused = admin('responses', 'shutdown');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe('bastion: shutting the broker down needs --confirm\n');
    expect(bastion(['admin', 'health', '--url', adminUrl, '--token-file', tokenFile]).code).toBe(0); // still up

    // a broker of its own, so the other tests keep theirs
    const port = await freePort();
    const own = path.join(dir, 'shutdown.yaml');
    writeFileSync(own, readFileSync(profile, 'utf8').replace(/port: \d+\n  tokens/, `port: ${port}\n  tokens`));
    const victim = bastionStart(['--profile', own], { cwd: dir });
    try {
      await victim.waitFor(/"msg":"admin API listening"/);
      const exited = new Promise<number | null>((resolve) => victim.child.once('exit', (code) => resolve(code)));
      const down = bastion(['admin', 'responses', 'shutdown', '--confirm', '--reason', 'compromised', '--url', `http://127.0.0.1:${port}`, '--token-file', tokenFile]);
      expect(down.stderr).toBe('');
      expect(down.code).toBe(0);
      expect(down.stdout).toBe('shutdown requested: the broker is closing\n');
      expect(await exited).toBe(0);
      expect(victim.output()).toMatch(/"response":\{[^\n]*"action":"shutdown"[^\n]*"actor":"admin token:ops","outcome":"done"\},"msg":"response.action"/);
    } finally {
      await victim.stop();
    }
  });
});
