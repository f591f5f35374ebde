/**
 * The hash-chained audit log: real brokers write it (events, detections, responses, receipts),
 * `bastion audit verify` (the built CLI) checks it, and every kind of tampering is found at the
 * line where it happened.
 */
import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import { createHash } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { createBroker, type Bastion } from '@bastion/broker';
import { hashPassword, serializeUsers } from '@bastion/middleware';
import { chainLine, parseLine } from '@bastion/detect';
import type { ProfileInput } from '@bastion/profile';
import { connect, tryConnect, isRefusal, waitFor } from './support/mqtt.js';
import { makeTestPki, type TestPki } from './support/pki.js';
import { bastion } from './support/cli.js';

const silent = pino({ level: 'silent' });
const KEY_ENV = 'BASTION_TEST_AUDIT_KEY';
const KEY = 'test-audit-key-0123456789abcdef';
let pki: TestPki;
let broker: Bastion | undefined;
const clients: MqttClient[] = [];
let dir: string;

beforeAll(async () => {
  process.env[KEY_ENV] = KEY;
  pki = makeTestPki();
  pki.write('users.txt', serializeUsers([{ username: 'alice', hash: await hashPassword('alice-password'), groups: [] }]));
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const tls = { cert: 'server.pem', key: 'server-key.pem', ca: 'ca.pem', clientCertificate: 'optional' as const };

async function start(audit: Record<string, unknown>, extra: Partial<ProfileInput> = {}) {
  broker = await createBroker({
    profile: {
      version: 1,
      listeners: [
        { name: 'tcp', protocol: 'mqtt', port: 0 },
        { name: 'tls', protocol: 'mqtts', port: 0, tls },
      ],
      authentication: { passwords: { file: 'users.txt' }, certificates: { identity: 'cn' } },
      audit,
      ...extra,
    } as ProfileInput,
    baseDir: pki.dir,
    logger: silent,
  });
  return { tcp: `mqtt://127.0.0.1:${broker.addresses()['tcp']!.port}`, tls: `mqtts://localhost:${broker.addresses()['tls']!.port}` };
}

const lines = (file: string) => readFileSync(file, 'utf8').trimEnd().split('\n');
const records = (file: string) => lines(file).map((l) => parseLine(l)!.record as Record<string, unknown> & { type: string; seq: number });

/** A copy of `file` with its lines changed by `edit`. */
function tampered(file: string, name: string, edit: (lines: string[]) => string[]): string {
  const out = path.join(dir, name);
  writeFileSync(out, `${edit(lines(file)).join('\n')}\n`);
  return out;
}

// these tests run the built CLI several times: slow on a loaded machine
describe('audit log', { timeout: 90_000 }, () => {
  it('records security events, detections, responses and publish receipts, hash-chained with an HMAC; verify passes', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'bastion-audit-'));
    const file = path.join(dir, 'audit.log');
    const url = await start(
      { file, hmacKey: { value: `\${env:${KEY_ENV}}` }, receipts: { topics: ['cmd/#'] } },
      { detectors: { authFailures: { perIp: 2, perUsername: 100, perClientId: 100 } }, responses: { rules: [{ detector: 'auth-failures', actions: [{ action: 'ban-client', duration: '1m' }] }] } },
    );
    const device = pki.client('device-1');
    const dev = await connect(url.tls, { clientId: 'device-1', ca: pki.ca.certPem, cert: device.certPem, key: device.keyPem, rejectUnauthorized: true });
    clients.push(dev);
    await dev.publishAsync('cmd/valve/7', 'open valve', { qos: 1 });
    await dev.publishAsync('telemetry/7', 'no receipt here', { qos: 1 });
    const fingerprint = broker!.client('device-1')!.certificate!.fingerprint256;
    for (let i = 0; i < 3; i++) expect(isRefusal(await tryConnect(url.tcp, { clientId: 'guesser', username: 'alice', password: 'wrong' }))).toBe(true);
    await waitFor(() => broker!.events && records(file).some((r) => r.type === 'response.action'), 5000, 'the response in the log');
    await broker!.close();
    broker = undefined;

    const recs = records(file);
    expect(recs.map((r) => r.seq)).toEqual(recs.map((_, i) => i + 1));
    const types = recs.map((r) => r.type);
    expect(types[0]).toBe('audit.started');
    expect(types.at(-1)).toBe('audit.stopped');
    expect(types).toEqual(expect.arrayContaining(['client.connected', 'auth.failed', 'detection.raised', 'response.action', 'ban.added', 'publish.receipt', 'client.disconnected']));
    const receipts = recs.filter((r) => r.type === 'publish.receipt');
    expect(receipts).toHaveLength(1);
    expect(receipts[0]).toMatchObject({
      control: 'PR.IP-4',
      clientId: 'device-1',
      username: 'device-1',
      topic: 'cmd/valve/7',
      detail: { certificateFingerprint: fingerprint, payloadSha256: createHash('sha256').update('open valve').digest('hex'), payloadBytes: 10, qos: 1 },
    });
    expect(lines(file).every((l) => /,"hmac":"[0-9a-f]{64}"\}$/.test(l))).toBe(true);
    expect(readFileSync(file, 'utf8')).not.toContain(KEY); // the key is never written

    const ok = bastion(['audit', 'verify', file, '--key-env', KEY_ENV]);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`^OK: ${recs.length} lines in 1 file, chain intact from the start \\(seq 1\\); head seq ${recs.length} hash [0-9a-f]{64}, HMACs valid\\n$`));
    const wrongKey = bastion(['audit', 'verify', file, '--key-env', 'PATH']);
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr).toContain(`${file}:1: hmac mismatch`);
  });

  it('a modified, deleted or reordered line is found by `bastion audit verify`, at that line', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'bastion-audit-'));
    const file = path.join(dir, 'audit.log');
    const url = await start({ file, hmacKey: { value: `\${env:${KEY_ENV}}` } });
    for (let i = 0; i < 4; i++) {
      const c = await connect(url.tcp, { clientId: `c-${i}`, username: 'alice', password: 'alice-password' });
      await c.endAsync();
    }
    await tryConnect(url.tcp, { clientId: 'x', username: 'alice', password: 'bad' });
    await broker!.close();
    broker = undefined;
    expect(lines(file).length).toBeGreaterThan(8);
    expect(bastion(['audit', 'verify', file]).code).toBe(0);

    const verify = (f: string, ...args: string[]) => bastion(['audit', 'verify', f, ...args]);
    // modified: an event's client id changed
    const modified = tampered(file, 'modified.log', (ls) => ls.map((l, i) => (i === 4 ? l.replace(/"clientId":"c-\d"/, '"clientId":"innocent"') : l)));
    expect(readFileSync(modified, 'utf8')).toContain('innocent');
    let r = verify(modified);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^${modified}:5: hash mismatch: the line was modified \\(seq 5\\)\\n`));
    // deleted
    r = verify(tampered(file, 'deleted.log', (ls) => ls.filter((_, i) => i !== 3)));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/deleted\.log:4: sequence break: expected seq 4, found 5 \(lines removed\)/);
    // reordered
    r = verify(tampered(file, 'reordered.log', (ls) => ls.map((l, i) => (i === 5 ? (ls[6] as string) : i === 6 ? (ls[5] as string) : l))));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/reordered\.log:6: sequence break: expected seq 6, found 7/);
    // modified and re-hashed by someone without the key: the next line's `prev` no longer matches,
    // and with the key the HMAC of the line itself is wrong
    const rehashed = tampered(file, 'rehashed.log', (ls) =>
      ls.map((l, i) => {
        if (i !== 4) return l;
        const p = parseLine(l)!;
        const { prev, ...rest } = p.record;
        return chainLine({ ...rest, clientId: 'innocent' }, prev as string, undefined).line;
      }),
    );
    r = verify(rehashed);
    expect(r.stderr).toMatch(/rehashed\.log:6: chain break: prev does not match/);
    r = verify(rehashed, '--key-env', KEY_ENV);
    expect(r.stderr).toMatch(/rehashed\.log:5: no hmac on this line/);
    // a line inserted by hand
    r = verify(tampered(file, 'inserted.log', (ls) => [...ls.slice(0, 2), '{"type":"nothing happened"}', ...ls.slice(2)]));
    expect(r.stderr).toMatch(/inserted\.log:3: not an audit line/);
  });

  it('rotates by size and keeps the chain across files and restarts; a missing file is found', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'bastion-audit-'));
    const file = path.join(dir, 'audit.log');
    let url = await start({ file, maxSize: '4KiB' });
    for (let i = 0; i < 12; i++) {
      const c = await connect(url.tcp, { clientId: `rot-${i}`, username: 'alice', password: 'alice-password' });
      await c.endAsync();
    }
    await broker!.close();
    broker = undefined;
    const lastSeq = records(file).at(-1)!.seq;
    // a restart continues the chain in the same file
    url = await start({ file, maxSize: '4KiB' });
    const c = await connect(url.tcp, { clientId: 'after-restart', username: 'alice', password: 'alice-password' });
    await c.endAsync();
    await broker!.close();
    broker = undefined;
    const all = readdirSync(dir).filter((f) => f.startsWith('audit.log')).map((f) => path.join(dir, f));
    expect(all.length).toBeGreaterThan(2);
    for (const f of all) expect(readFileSync(f).length).toBeLessThanOrEqual(4096);
    const restarted = all.flatMap(records).find((r) => r.type === 'audit.started' && r.seq > lastSeq);
    expect(restarted?.seq).toBe(lastSeq + 1);
    const rotated = records(`${file}.2`);
    expect(rotated[0]).toMatchObject({ type: 'audit.rotated', detail: { previousFile: `${file}.1` } });
    // any order on the command line: the files are put in chain order
    const ok = bastion(['audit', 'verify', ...[...all].reverse()]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`in ${all.length} files, chain intact from the start`));
    // one rotated file missing in the middle
    const missing = bastion(['audit', 'verify', ...all.filter((f) => !f.endsWith('.log.2'))]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/sequence break: expected seq \d+, found \d+ \(lines removed\)/);
  });

  it('a line torn by a crash is cut on the next start, recorded, and the chain goes on', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'bastion-audit-'));
    const file = path.join(dir, 'audit.log');
    await start({ file });
    await broker!.close();
    broker = undefined;
    const torn = '{"seq":99,"time":"2020-01-01T00:00:00.000Z","type":"client.conn';
    appendFileSync(file, torn);
    await start({ file });
    await broker!.close();
    broker = undefined;
    const recs = records(file);
    expect(recs.find((r) => r.type === 'audit.repaired')).toMatchObject({ detail: { discardedBytes: Buffer.byteLength(torn) } });
    expect(bastion(['audit', 'verify', file]).code).toBe(0);
    expect(bastion(['audit', 'verify', path.join(dir, 'nope.log')])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^bastion: cannot read .*nope\.log: ENOENT\n$/) });
  });
});
