/**
 * Brokers under test, as a table. Each entry says how to start the broker inside
 * bench/broker-process.mjs (`start`, which runs in that child, pinned to its own CPU) and how a
 * client reaches it (`transport`, `auth`). `baseline` names the target whose median the entry is
 * divided by in the report (same transport, bare Aedes); `alsoVs` names further targets to
 * compare with when they were run too (listed under the table).
 *
 * To add a target add an entry here. A broker that is not Node (Mosquitto) has a `command(ctx)`
 * that returns the argv to spawn instead of `start` (run.mjs launches it with
 * process.mjs#launchExternal, its CPU and RSS read from /proc/<pid>); `available()` says whether it
 * can run here (a target that cannot is skipped with the reason printed).
 *
 * `mosquitto` names the Mosquitto target of the same transport: the report shows the ratio to it
 * as well. `tier` marks Bastion-from-a-profile targets (their profile is printed with the results).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { pristineEntry } from './pristine.mjs';
import net from 'node:net';
import tls from 'node:tls';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

export const BENCH_USER = { username: 'bench', password: 'bench-password' };

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

async function readTls(tlsDir) {
  if (!tlsDir) throw new Error('this target needs --tls-dir with cert.pem, key.pem and ca.pem');
  const [cert, key, ca] = await Promise.all(['cert.pem', 'key.pem', 'ca.pem'].map((f) => readFile(path.join(tlsDir, f), 'utf8')));
  return { cert, key, ca };
}

/**
 * Bare Aedes 1.2 exactly as an application would embed it. `noDelay` turns Nagle off on accepted
 * sockets, as Bastion's listeners do, to tell socket options apart from middleware cost.
 */
async function startAedes(transport, { tlsDir }, { noDelay = false, patched = false, mtls = false } = {}) {
  // upstream Aedes unless `patched`: the workspace's copy carries Bastion's patches (patches/)
  const { Aedes } = await import(patched ? 'aedes' : (await pristineEntry('aedes')).url);
  const aedes = await Aedes.createBroker();
  const handle = noDelay
    ? (socket) => {
        socket.setNoDelay(true);
        aedes.handle(socket);
      }
    : aedes.handle;
  let server;
  if (transport === 'tls') {
    const material = await readTls(tlsDir);
    // mtls: client certificates required and verified against the CA, as Bastion's tier 3 does
    server = tls.createServer(mtls ? { ...material, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' } : material, handle);
  } else {
    server = net.createServer(handle);
  }
  const port = await listen(server);
  return {
    port,
    async close() {
      await new Promise((resolve) => aedes.close(() => resolve()));
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Bastion core with password authentication (the same scrypt users a deployment would have). */
async function startBastion(transport, { tlsDir }) {
  const [{ createCoreBroker }, { passwordAuth, hashPassword }, { pino }] = await Promise.all([
    import('@bastion/core'),
    import('@bastion/middleware'),
    import('pino'),
  ]);
  const users = [{ username: BENCH_USER.username, hash: await hashPassword(BENCH_USER.password), groups: [] }];
  let listener;
  if (transport === 'tls') {
    const { cert, key, ca } = await readTls(tlsDir);
    listener = { transport: 'mqtts', host: '127.0.0.1', port: 0, tls: { cert, key, ca: [ca], clientCertificate: 'none' } };
  } else {
    listener = { transport: 'mqtt', host: '127.0.0.1', port: 0 };
  }
  const broker = await createCoreBroker({
    listeners: [listener],
    middleware: [passwordAuth({ users })],
    logger: pino({ level: 'silent' }),
  });
  const port = Object.values(broker.addresses())[0].port;
  return { port, close: () => broker.close() };
}

/**
 * The sections a profile may hold in this build (controls land over time): the tier-3 profile
 * includes each control whose section exists, and the run records which were included.
 */
async function profileKeys() {
  const { profileSchema } = await import('@bastion/profile');
  return new Set(Object.keys(profileSchema.shape));
}

/**
 * The bench's Bastion profiles, as objects. Tier 1: an mqtt listener and a passwords file, the
 * tier's defaults for everything else (rate limits with the publish budget raised: at tier 1 it
 * would cap one publisher at 5,000 msg/s).
 * Tier 3: mTLS (client certificate required, identity from its CN, plus the password), ACL, rate
 * limits, detectors and responses, audit log, encrypted persistence — each as far as this build has
 * it. Budgets are raised to what the load needs (one benchmark client publishes 50,000+ msg/s), so
 * the limiter runs on every packet without throttling; per-address connection limits keep the tier
 * defaults, which is why the bench spreads its clients over many loopback addresses.
 */
export async function benchProfile(tier, dir, tlsDir) {
  const keys = await profileKeys();
  const included = [];
  const profile = { version: 1, tier, name: `bench-tier-${tier}`, logging: { level: 'info' } };
  if (tier === 1) {
    profile.listeners = [{ name: 'bench', protocol: 'mqtt', host: '127.0.0.1', port: 0 }];
    profile.authentication = { passwords: { file: 'users.txt' } };
    included.push('passwords');
    if (keys.has('rateLimits')) {
      profile.rateLimits = { publish: { perClient: { messages: { rate: 10_000_000, burst: 10_000_000 }, bytes: { rate: 4_000_000_000, burst: 4_000_000_000 } } } };
      included.push('rateLimits (tier-1 connection limits per address; publish budget raised for the load)');
    }
    return { profile, included };
  }
  if (!tlsDir) throw new Error('tier 3 needs --tls-dir (server and client certificates)');
  profile.tls = { cert: `${tlsDir}/cert.pem`, key: `${tlsDir}/key.pem`, ca: `${tlsDir}/ca.pem`, clientCertificate: 'required', minVersion: 'TLSv1.3' }; // the tier-3 floor (PR.IP-1)
  profile.listeners = [{ name: 'bench', protocol: 'mqtts', host: '127.0.0.1', port: 0 }];
  profile.authentication = { passwords: { file: 'users.txt' }, certificates: { identity: 'cn' }, require: ['certificate', 'password'] };
  included.push('mTLS (client certificate required)', 'passwords (second factor)');
  if (keys.has('acl')) {
    profile.acl = {
      defaultEffect: 'deny',
      rules: [{ id: 'bench', effect: 'allow', users: [BENCH_USER.username], actions: ['publish', 'subscribe', 'read'], topics: ['bench/#'] }],
    };
    included.push('acl');
  }
  if (keys.has('rateLimits')) {
    profile.rateLimits = {
      publish: { perClient: { messages: { rate: 10_000_000, burst: 10_000_000 }, bytes: { rate: 4_000_000_000, burst: 4_000_000_000 } } },
    };
    included.push('rateLimits (tier-3 connection limits per address; publish budget raised for the load)');
  }
  if (keys.has('detectors')) {
    profile.detectors = {};
    included.push('detectors (tier-3 defaults)');
  }
  if (keys.has('responses')) {
    profile.responses = {};
    included.push('responses (tier-3 default rules: ban after repeated failures)');
  }
  if (keys.has('audit')) {
    profile.audit = { file: `${dir}/audit.log` };
    included.push('audit');
  }
  if (keys.has('persistence')) {
    const key = `${dir}/store.key`;
    await writeFile(key, (await import('node:crypto')).randomBytes(32).toString('hex'), { mode: 0o600 });
    profile.persistence = { store: 'memory', encryption: { keys: [{ file: key }] } };
    included.push('persistence (memory, AES-256-GCM sealed)');
  }
  return { profile, included };
}

/** Bastion from a profile object, as `createBroker({ profile })` builds it for a deployment. */
async function startBastionProfile(tier, { tlsDir }) {
  const [{ createBroker }, { hashPassword }, { pino }] = await Promise.all([import('@bastion/broker'), import('@bastion/middleware'), import('pino')]);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bastion-bench-profile-'));
  await writeFile(path.join(dir, 'users.txt'), `${BENCH_USER.username}:${await hashPassword(BENCH_USER.password)}\n`, { mode: 0o600 });
  const { profile, included } = await benchProfile(tier, dir, tlsDir);
  // info level, as deployed, into /dev/null: what the broker logs per connection or message is paid for
  const logger = pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: false }));
  let broker;
  try {
    broker = await createBroker({ profile, baseDir: dir, logger });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const port = Object.values(broker.addresses())[0].port;
  return {
    port,
    // what createBroker actually wired: the tier's default controls come on with it
    info: { included, middleware: broker.middleware.map((m) => m.name) },
    async close() {
      await broker.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Not a broker: the least a Node TCP server can do per MQTT connection — accept, read until the
 * CONNECT's fixed header and length are in, answer a 4-byte CONNACK, keep the socket. No parser, no
 * session, no authentication. Its µs per connection is the floor any broker on Node's net stack
 * starts from (socket objects, stream state, the syscalls, GC), against which Aedes' and
 * Bastion's own connection cost can be read.
 */
async function startNodeFloor() {
  const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00]);
  const open = new Set();
  const server = net.createServer((socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => {});
    let head = null;
    const onData = (chunk) => {
      head = head === null ? chunk : Buffer.concat([head, chunk]);
      // fixed header: type, then 1–4 length bytes; answer once the whole CONNECT is in
      let len = 0;
      let mult = 1;
      let i = 1;
      for (; i < head.length && i < 5; i++) {
        len += (head[i] & 127) * mult;
        mult *= 128;
        if ((head[i] & 128) === 0) break;
      }
      if (i >= head.length || head.length < i + 1 + len) return;
      if (head[0] >> 4 !== 1) return socket.destroy();
      socket.removeListener('data', onData);
      socket.on('data', () => {}); // keep reading (PINGREQ, DISCONNECT), nothing else
      socket.write(CONNACK);
    };
    socket.on('data', onData);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        // held connections would keep close() waiting
        for (const s of open) s.destroy();
      }),
  };
}

/** Where the mosquitto binary is (Debian puts it in /usr/sbin, often not on PATH). */
export function mosquittoPath() {
  for (const p of ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto', '/usr/local/bin/mosquitto']) if (existsSync(p)) return p;
  const r = spawnSync('sh', ['-c', 'command -v mosquitto'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
}

export const MOSQUITTO_INSTALL = 'Mosquitto is not installed, so its targets are skipped: on Debian/Ubuntu `apt-get install mosquitto` (as root), then run the bench again.';

/**
 * Mosquitto 2 as shipped, anonymous like bare Aedes, no persistence, no logging: a config file in
 * a private temp dir. Queue limits are raised so a fast publisher is not cut off (Aedes has none).
 */
async function mosquittoCommand(transport, { tlsDir, port }) {
  const bin = mosquittoPath();
  if (!bin) throw new Error(MOSQUITTO_INSTALL);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bastion-bench-mosquitto-'));
  const lines = [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'persistence false',
    'log_dest none',
    'max_queued_messages 1000000',
    'max_inflight_messages 0',
    'max_connections -1',
  ];
  // started as root, Mosquitto drops to the `mosquitto` user, which cannot read the bench's private
  // temp files (certificates): stay the user that started it
  if (process.getuid?.() === 0) lines.push('user root');
  if (transport === 'tls') {
    if (!tlsDir) throw new Error('this target needs --tls-dir');
    lines.push(`certfile ${tlsDir}/cert.pem`, `keyfile ${tlsDir}/key.pem`, `cafile ${tlsDir}/ca.pem`);
  }
  const conf = path.join(dir, 'mosquitto.conf');
  await writeFile(conf, `${lines.join('\n')}\n`);
  return { argv: [bin, '-c', conf], cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * `default: false` entries run only when named with --targets.
 */
export const TARGETS = [
  {
    name: 'aedes-tcp',
    description: 'bare Aedes 1.2 as published (patches reversed), net.createServer(aedes.handle)',
    transport: 'tcp',
    auth: null,
    baseline: null,
    mosquitto: 'mosquitto-tcp',
    start: (ctx) => startAedes('tcp', ctx),
  },
  {
    name: 'bastion-t1-tcp',
    description: 'Bastion, createBroker({ profile }): tier 1, mqtt listener, passwords file',
    transport: 'tcp',
    auth: BENCH_USER,
    tier: 1,
    baseline: 'aedes-tcp',
    mosquitto: 'mosquitto-tcp',
    alsoVs: ['aedes-patched-tcp'],
    start: (ctx) => startBastionProfile(1, ctx),
  },
  {
    name: 'mosquitto-tcp',
    description: 'Mosquitto 2 (Debian package), anonymous, no persistence',
    transport: 'tcp',
    auth: null,
    baseline: null,
    external: true,
    available: () => (mosquittoPath() ? true : MOSQUITTO_INSTALL),
    command: (ctx) => mosquittoCommand('tcp', ctx),
  },
  {
    name: 'aedes-tls',
    description: 'bare Aedes 1.2 as published (patches reversed), tls.createServer({cert,key}, aedes.handle)',
    transport: 'tls',
    auth: null,
    baseline: null,
    mosquitto: 'mosquitto-tls',
    start: (ctx) => startAedes('tls', ctx),
  },
  {
    name: 'bastion-t3-tls',
    description: 'Bastion, createBroker({ profile }): tier 3, mqtts with client certificates, passwords, ACL, rate limits, detectors, audit, sealed persistence',
    transport: 'tls',
    auth: BENCH_USER,
    clientCert: true,
    tier: 3,
    baseline: 'aedes-tls',
    mosquitto: 'mosquitto-tls',
    start: (ctx) => startBastionProfile(3, ctx),
  },
  {
    name: 'mosquitto-tls',
    description: 'Mosquitto 2 (Debian package) over TLS, anonymous, no persistence',
    transport: 'tls',
    auth: null,
    baseline: null,
    external: true,
    available: () => (mosquittoPath() ? true : MOSQUITTO_INSTALL),
    command: (ctx) => mosquittoCommand('tls', ctx),
  },
  {
    name: 'bastion-tcp',
    description: 'Bastion core (createCoreBroker) + passwordAuth, mqtt listener',
    transport: 'tcp',
    auth: BENCH_USER,
    baseline: 'aedes-tcp',
    mosquitto: 'mosquitto-tcp',
    alsoVs: ['aedes-tcp-nodelay'],
    default: false,
    start: (ctx) => startBastion('tcp', ctx),
  },
  {
    name: 'bastion-tls',
    description: 'Bastion core (createCoreBroker) + passwordAuth, mqtts listener',
    transport: 'tls',
    auth: BENCH_USER,
    baseline: 'aedes-tls',
    mosquitto: 'mosquitto-tls',
    alsoVs: ['aedes-tls-nodelay'],
    default: false,
    start: (ctx) => startBastion('tls', ctx),
  },
  {
    name: 'aedes-patched-tcp',
    description: "Aedes 1.2 with Bastion's patches (patches/), net.createServer(aedes.handle): what the patches alone change",
    transport: 'tcp',
    auth: null,
    baseline: 'aedes-tcp',
    default: false,
    start: (ctx) => startAedes('tcp', ctx, { patched: true }),
  },
  {
    name: 'node-floor-tcp',
    description: 'not a broker: a Node TCP server that answers each CONNECT with a CONNACK and does nothing else (the floor of Node\'s net stack per connection)',
    transport: 'tcp',
    auth: null,
    baseline: 'aedes-tcp',
    default: false,
    start: () => startNodeFloor(),
  },
  {
    name: 'aedes-mtls',
    description: 'bare Aedes 1.2 as published over mutual TLS: client certificate required and verified (requestCert, rejectUnauthorized, the CA, TLS 1.3), no other control — what OpenSSL itself keeps per mTLS connection',
    transport: 'tls',
    auth: null,
    clientCert: true,
    baseline: 'aedes-tls',
    default: false,
    start: (ctx) => startAedes('tls', ctx, { mtls: true }),
  },
  {
    name: 'aedes-tcp-nodelay',
    description: 'bare Aedes 1.2 over TCP with setNoDelay(true) on each socket',
    transport: 'tcp',
    auth: null,
    baseline: null,
    default: false,
    start: (ctx) => startAedes('tcp', ctx, { noDelay: true }),
  },
  {
    name: 'aedes-tls-nodelay',
    description: 'bare Aedes 1.2 over TLS with setNoDelay(true) on each socket',
    transport: 'tls',
    auth: null,
    baseline: null,
    default: false,
    start: (ctx) => startAedes('tls', ctx, { noDelay: true }),
  },
];

export const TARGET_NAMES = TARGETS.map((t) => t.name);
export const DEFAULT_TARGET_NAMES = TARGETS.filter((t) => t.default !== false).map((t) => t.name);

export function targetByName(name) {
  const t = TARGETS.find((x) => x.name === name);
  if (!t) throw new Error(`unknown target '${name}' (known: ${TARGET_NAMES.join(', ')})`);
  return t;
}

/** What the generator needs to reach a running target (plain data: it crosses IPC). */
export function connectionFor(target, port, tlsFiles) {
  return {
    target: target.name,
    host: '127.0.0.1',
    port,
    transport: target.transport,
    username: target.auth?.username,
    password: target.auth?.password,
    caFile: target.transport === 'tls' ? tlsFiles.caFile : undefined,
    certFile: target.clientCert ? tlsFiles.clientCertFile : undefined,
    keyFile: target.clientCert ? tlsFiles.clientKeyFile : undefined,
    servername: 'localhost',
    /**
     * Connection scenarios spread their clients over loopback source addresses (127.0.1.1 …) for
     * every target alike, as a fleet comes from many addresses: per-address limits (tier 3) then see
     * a few connections each, as in the field.
     */
    spreadSources: true,
  };
}
