/**
 * `bastion certs` end to end, as an operator runs it (the built CLI in a subprocess): the PKI
 * lifecycle (init, issue server/client, renew, revoke, crl, list), EC keys, an encrypted CA key,
 * an existing CA, and a revocation reaching a running `bastion start`.
 */
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import mqtt from 'mqtt';
import { createCA, issueClientCert, parseCRL, verifyCRL } from '@bastion/pki';
import { bastion, bastionStart, type Running } from './support/cli.js';
import { connect, closed, tryConnect, isRefusal } from './support/mqtt.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'bastion-certs-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NO_PASSPHRASE = { BASTION_CA_PASSPHRASE: '' };
/** Every `bastion` call is a fresh Node process: room for a loaded two-core machine. */
const SLOW = 180_000;
const mode = (f: string) => statSync(f).mode & 0o777;
function ok(args: string[], env: NodeJS.ProcessEnv = NO_PASSPHRASE) {
  const r = bastion(args, { env });
  expect(r.code, `bastion ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}
const json = <T = Record<string, unknown>>(args: string[], env?: NodeJS.ProcessEnv): T => JSON.parse(ok([...args, '--json'], env).stdout) as T;

type Listed = { name: string; kind: string; serial: string; status: string; publicKey: string; dnsNames: string[]; ipAddresses: string[]; uris: string[]; subject: string; archived?: boolean; revocation?: { reason?: string } };

/** A mutual-TLS handshake against a plain Node TLS server: does OpenSSL accept this client? */
function mtls(server: { cert: string; key: string; ca: string }, client: { cert: string; key: string }): Promise<string> {
  return new Promise((resolve) => {
    const srv = tls.createServer({ ...server, requestCert: true, rejectUnauthorized: true }, (s) => s.end(`hello ${s.getCipher().name}`));
    srv.listen(0, '127.0.0.1', () => {
      const c = tls.connect({ host: '127.0.0.1', port: (srv.address() as { port: number }).port, servername: 'localhost', ca: server.ca, ...client });
      let out = '';
      c.on('data', (d) => (out += d));
      c.on('error', (e) => (out = `error ${e.message}`));
      c.on('close', () => {
        srv.close();
        resolve(out);
      });
    });
  });
}

describe('bastion certs: issuing', () => {
  it('issue server writes servers/<name>.pem with its SANs; issue client takes EC P-256 keys that work in a real handshake', { timeout: SLOW }, async () => {
    const pki = path.join(dir, 'issue');
    expect(json(['certs', 'init', '--dir', pki])).toMatchObject({ created: true, clients: ['device-1', 'device-2'] });
    const edge = json(['certs', 'issue', 'server', 'edge', '--dir', pki, '--dns', 'mqtt.example.com,edge.local', '--ip', '10.0.0.5,::1', '--days', '90']);
    expect(edge).toMatchObject({ name: 'edge', cert: path.join(pki, 'servers', 'edge.pem') });
    expect(mode(path.join(pki, 'servers', 'edge-key.pem'))).toBe(0o600);
    const main = bastion(['certs', 'issue', 'server', '--dir', pki, '--dns', 'broker.local'], { env: NO_PASSPHRASE });
    expect(main.code).toBe(1);
    expect(main.stderr).toMatch(/already exists.*--force/);
    expect(bastion(['certs', 'issue', 'server', '--dir', pki]).code).toBe(2); // no names at all

    const ec = json<{ serial: string }>(['certs', 'issue', 'client', 'sensor-ec', '--dir', pki, '--key-type', 'ec-p256', '--uri', 'urn:dev:sensor-ec']);
    expect(bastion(['certs', 'issue', 'client', 'x', '--dir', pki, '--key-type', 'dsa-1024']).code).toBe(2);
    const list = json<Listed[]>(['certs', 'list', '--dir', pki]);
    const byName = Object.fromEntries(list.map((c) => [c.name, c]));
    expect(byName.edge).toMatchObject({ kind: 'server', dnsNames: ['mqtt.example.com', 'edge.local'], ipAddresses: ['10.0.0.5', '::1'], status: 'valid', publicKey: 'RSA 2048' });
    expect(byName['sensor-ec']).toMatchObject({ kind: 'client', serial: ec.serial, publicKey: 'EC P-256', uris: ['urn:dev:sensor-ec'] });
    expect(new X509Certificate(readFileSync(path.join(pki, 'clients', 'sensor-ec.pem'))).verify(new X509Certificate(readFileSync(path.join(pki, 'ca.pem'))).publicKey)).toBe(true);

    const read = (f: string) => readFileSync(path.join(pki, f), 'utf8');
    const reply = await mtls({ cert: read('server.pem'), key: read('server-key.pem'), ca: read('ca.pem') }, { cert: read('clients/sensor-ec.pem'), key: read('clients/sensor-ec-key.pem') });
    expect(reply).toMatch(/^hello /);
    const text = ok(['certs', 'list', '--dir', pki]).stdout;
    expect(text.split('\n')[0]).toMatch(/KIND\s+NAME\s+SUBJECT\s+SERIAL\s+KEY\s+EXPIRES\s+STATUS/);
  });

  it('renew gives a new key and serial for the same names, archives the old certificate, and --revoke-old revokes it', { timeout: SLOW }, () => {
    const pki = path.join(dir, 'renew');
    ok(['certs', 'init', '--dir', pki]);
    ok(['certs', 'issue', 'client', 'gw-1', '--dir', pki, '--dns', 'gw-1.plant', '--email', 'ops@plant.example', '--ou', 'gateways', '--days', '30']);
    const before = json<Listed[]>(['certs', 'list', '--dir', pki]);
    const oldGw = before.find((c) => c.name === 'gw-1')!;
    const oldKey = readFileSync(path.join(pki, 'clients', 'gw-1-key.pem'), 'utf8');

    const r = json<{ serial: string; previous: { serial: string; archived: string }; notAfter: string }>(['certs', 'renew', 'gw-1', '--dir', pki]);
    expect(r.serial).not.toBe(oldGw.serial);
    expect(r.previous.serial).toBe(oldGw.serial);
    expect(readFileSync(path.join(pki, 'clients', 'gw-1-key.pem'), 'utf8')).not.toBe(oldKey);
    expect(mode(path.join(pki, 'clients', 'gw-1-key.pem'))).toBe(0o600);
    expect(Math.round((new Date(r.notAfter).getTime() - Date.now()) / 86_400_000)).toBe(30); // same lifetime
    expect(existsSync(r.previous.archived)).toBe(true);
    const after = json<Listed[]>(['certs', 'list', '--dir', pki, '--all']);
    const gw = after.find((c) => c.name === 'gw-1')!;
    expect(gw).toMatchObject({ subject: oldGw.subject, dnsNames: ['gw-1.plant'], serial: r.serial });
    expect(after.find((c) => c.archived && c.serial === oldGw.serial)).toMatchObject({ kind: 'client', status: 'valid' });

    const oldServer = before.find((c) => c.name === 'server')!;
    const s = json<{ revoked: { serial: string; reason: string } }>(['certs', 'renew', 'server', '--dir', pki, '--revoke-old', 'keyCompromise', '--key-type', 'ec-p256']);
    expect(s.revoked).toMatchObject({ serial: oldServer.serial, reason: 'keyCompromise' });
    const listed = json<Listed[]>(['certs', 'list', '--dir', pki, '--all']);
    expect(listed.find((c) => c.name === 'server')).toMatchObject({ publicKey: 'EC P-256', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'], status: 'valid' });
    expect(listed.find((c) => c.archived && c.serial === oldServer.serial)).toMatchObject({ status: 'revoked', revocation: { reason: 'keyCompromise' } });
    expect(parseCRL(readFileSync(path.join(pki, 'crl.pem'))).revoked.map((e) => e.serial)).toEqual([oldServer.serial]);
    expect(bastion(['certs', 'renew', 'ca', '--dir', pki]).code).toBe(1);
    expect(bastion(['certs', 'renew', 'nobody', '--dir', pki]).stderr).toContain('No certificate named "nobody"');
  });
});

describe('bastion certs: revocation and CRLs', () => {
  it('revokes by name, serial and file with a reason code; crl sets nextUpdate and writes DER; list shows the status', { timeout: SLOW }, () => {
    const pki = path.join(dir, 'revoke');
    ok(['certs', 'init', '--dir', pki, '--clients', 'a,b,c']);
    const list0 = json<Listed[]>(['certs', 'list', '--dir', pki]);
    const serial = (n: string) => list0.find((c) => c.name === n)!.serial;

    expect(json(['certs', 'revoke', 'a', '--dir', pki, '--reason', 'key-compromise'])).toMatchObject({ serial: serial('a'), reason: 'keyCompromise', alreadyRevoked: false });
    expect(json(['certs', 'revoke', 'a', '--dir', pki])).toMatchObject({ alreadyRevoked: true });
    const colons = serial('b').toUpperCase().replace(/(..)(?!$)/g, '$1:');
    expect(json(['certs', 'revoke', colons, '--dir', pki, '--reason', '4'])).toMatchObject({ serial: serial('b'), reason: 'superseded' });
    expect(json(['certs', 'revoke', path.join(pki, 'clients', 'c.pem'), '--dir', pki, '--reason', 'cessationOfOperation'])).toMatchObject({ serial: serial('c') });

    const foreign = path.join(dir, 'foreign.pem');
    writeFileSync(foreign, issueClientCert(createCA({ commonName: 'Other CA' }), { commonName: 'x' }).certPem);
    const refused = bastion(['certs', 'revoke', foreign, '--dir', pki], { env: NO_PASSPHRASE });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("not by this directory's CA");
    expect(bastion(['certs', 'revoke', 'a', '--dir', pki, '--reason', 'bored']).code).toBe(2);

    const out = path.join(dir, 'crl.der');
    const crl = json<{ nextUpdate: string; crlNumber: number; revoked: unknown[] }>(['certs', 'crl', '--dir', pki, '--days', '2', '--out', out, '--der']);
    expect(Math.round((new Date(crl.nextUpdate).getTime() - Date.now()) / 3_600_000)).toBe(48);
    const der = readFileSync(out);
    expect(der[0]).toBe(0x30); // DER, not PEM
    const ca = readFileSync(path.join(pki, 'ca.pem'), 'utf8');
    expect(verifyCRL(der, ca)).toBe(true);
    expect(parseCRL(der).revoked.map((e) => [e.serial, e.reason])).toEqual([
      [serial('a'), 'keyCompromise'],
      [serial('b'), 'superseded'],
      [serial('c'), 'cessationOfOperation'],
    ]);
    expect(parseCRL(der).crlNumber).toBe(crl.crlNumber);
    const statuses = Object.fromEntries(json<Listed[]>(['certs', 'list', '--dir', pki]).map((c) => [c.name, c.status]));
    expect(statuses).toMatchObject({ a: 'revoked', b: 'revoked', c: 'revoked', server: 'valid', ca: 'valid' });
  });
});

describe('bastion certs: the CA key', () => {
  it('an encrypted CA key needs BASTION_CA_PASSPHRASE, and a wrong one is reported as such', { timeout: SLOW }, () => {
    const pki = path.join(dir, 'encrypted');
    expect(bastion(['certs', 'init', '--dir', pki, '--encrypt-ca-key'], { env: NO_PASSPHRASE }).code).toBe(2);
    const env = { BASTION_CA_PASSPHRASE: 'correct horse battery staple' };
    ok(['certs', 'init', '--dir', pki, '--encrypt-ca-key'], env);
    const key = readFileSync(path.join(pki, 'ca-key.pem'), 'utf8');
    expect(key).toContain(`-----BEGIN ENCRYPTED PRIVATE ${'KEY'}-----`); // split so no tracked file looks like a key
    expect(mode(path.join(pki, 'ca-key.pem'))).toBe(0o600);

    const none = bastion(['certs', 'issue', 'client', 'd3', '--dir', pki], { env: NO_PASSPHRASE });
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/encrypted.*BASTION_CA_PASSPHRASE/);
    const wrong = bastion(['certs', 'revoke', 'device-1', '--dir', pki], { env: { BASTION_CA_PASSPHRASE: 'wrong passphrase' } });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('passphrase is wrong');
    for (const r of [none, wrong]) expect(r.stderr).not.toMatch(/PRIVATE KEY|at .*\.js/);
    ok(['certs', 'issue', 'client', 'd3', '--dir', pki], env);
    ok(['certs', 'revoke', 'd3', '--dir', pki, '--reason', 'affiliationChanged'], env);
  });

  it('init uses an existing CA given as files (here an EC P-256 CA) and refuses a certificate that is not a CA', { timeout: SLOW }, () => {
    const ca = createCA({ commonName: 'Corporate Issuing CA', organization: 'Example', keyType: 'ec-p256' });
    const caCert = path.join(dir, 'corp-ca.pem');
    const caKey = path.join(dir, 'corp-ca-key.pem');
    writeFileSync(caCert, ca.certPem);
    writeFileSync(caKey, ca.keyPem, { mode: 0o600 });
    const pki = path.join(dir, 'corp');
    ok(['certs', 'init', '--dir', pki, '--ca-cert', caCert, '--ca-key', caKey, '--clients', 'meter-1']);
    expect(readFileSync(path.join(pki, 'ca.pem'), 'utf8')).toBe(ca.certPem);
    const caX = new X509Certificate(ca.certPem);
    for (const f of ['server.pem', 'clients/meter-1.pem']) expect(new X509Certificate(readFileSync(path.join(pki, f))).checkIssued(caX), f).toBe(true);
    expect(verifyCRL(readFileSync(path.join(pki, 'crl.pem')), ca.certPem)).toBe(true);

    const leaf = issueClientCert(ca, { commonName: 'leaf' });
    writeFileSync(path.join(dir, 'leaf.pem'), leaf.certPem);
    writeFileSync(path.join(dir, 'leaf-key.pem'), leaf.keyPem);
    const bad = bastion(['certs', 'init', '--dir', path.join(dir, 'bad'), '--ca-cert', path.join(dir, 'leaf.pem'), '--ca-key', path.join(dir, 'leaf-key.pem')], { env: NO_PASSPHRASE });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('not a CA');
    expect(bastion(['certs', 'init', '--dir', path.join(dir, 'bad'), '--ca-cert', caCert]).code).toBe(2);
  });
});

describe('bastion certs revoke reaches a running bastion start', () => {
  let run: Running | undefined;
  const clients: mqtt.MqttClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true);
    await run?.stop('SIGTERM');
    run = undefined;
  });

  it('the revoked client is disconnected, cannot reconnect, and the other client stays', { timeout: SLOW }, async () => {
    const cwd = path.join(dir, 'deploy');
    ok(['certs', 'init', '--dir', path.join(cwd, 'pki')]);
    const profile = path.join(cwd, 'bastion.yaml');
    writeFileSync(
      profile,
      [
        'version: 1',
        'listeners:',
        '  - { name: field, protocol: mqtts, port: 0 }',
        'tls: { cert: pki/server.pem, key: pki/server-key.pem, ca: pki/ca.pem, clientCertificate: required }',
        'authentication: { certificates: { identity: cn, clientIdMustMatch: true } }',
        'revocation: { crl: pki/crl.pem }',
        'logging: { level: warn }',
        '',
      ].join('\n'),
    );
    run = bastionStart(['--profile', profile], { cwd, env: NO_PASSPHRASE });
    const m = await run.waitFor(/listening on mqtts:\/\/127\.0\.0\.1:(\d+)/);
    const url = `mqtts://localhost:${m[1]}`;
    const creds = (name: string) => ({
      clientId: name,
      ca: readFileSync(path.join(cwd, 'pki', 'ca.pem')),
      cert: readFileSync(path.join(cwd, 'pki', 'clients', `${name}.pem`)),
      key: readFileSync(path.join(cwd, 'pki', 'clients', `${name}-key.pem`)),
    });
    const d1 = await connect(url, creds('device-1'));
    const d2 = await connect(url, creds('device-2'));
    clients.push(d1, d2);
    const gone = closed(d1, 10_000);
    const t0 = Date.now();
    const r = bastion(['certs', 'revoke', 'device-1', '--dir', path.join(cwd, 'pki'), '--reason', 'keyCompromise'], { env: NO_PASSPHRASE });
    const t1 = Date.now();
    expect(r.code, r.stderr).toBe(0);
    await gone;
    console.log(`[figure] bastion certs revoke (process ${t1 - t0} ms) -> running broker disconnected the client ${Date.now() - t1} ms after the command returned`);
    await run.waitFor(/"type":"certificate\.revoked".*"serial":"[0-9a-f]+"/); // the broker's own log line names it
    const back = await tryConnect(url, creds('device-1'));
    expect(isRefusal(back)).toBe(true);
    expect(d2.connected).toBe(true);
    await d2.subscribeAsync('x');
  });
});
