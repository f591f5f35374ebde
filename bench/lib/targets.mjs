/**
 * Brokers under test, as a table. Each entry says how to start the broker inside
 * bench/broker-process.mjs (`start`, which runs in that child, pinned to its own CPU) and how a
 * client reaches it (`transport`, `auth`). `baseline` names the target whose median the entry is
 * divided by in the report (same transport, bare Aedes); `alsoVs` names further targets to
 * compare with when they were run too (listed under the table).
 *
 * To add a target (Bastion tier-3 profile, Mosquitto …) add an entry here. A broker that is not
 * Node (Mosquitto) would get a `command(ctx)` that returns the argv to spawn instead of `start`,
 * with its CPU read from /proc/<pid>/stat rather than process.cpuUsage(); process.mjs is where
 * that launcher would go.
 */
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
async function startAedes(transport, { tlsDir }, { noDelay = false } = {}) {
  const { Aedes } = await import('aedes');
  const aedes = await Aedes.createBroker();
  const handle = noDelay
    ? (socket) => {
        socket.setNoDelay(true);
        aedes.handle(socket);
      }
    : aedes.handle;
  const server = transport === 'tls' ? tls.createServer(await readTls(tlsDir), handle) : net.createServer(handle);
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
 * `default: false` entries run only when named with --targets.
 */
export const TARGETS = [
  {
    name: 'aedes-tcp',
    description: 'bare Aedes 1.2, net.createServer(aedes.handle)',
    transport: 'tcp',
    auth: null,
    baseline: null,
    start: (ctx) => startAedes('tcp', ctx),
  },
  {
    name: 'bastion-tcp',
    description: 'Bastion core + passwordAuth, mqtt listener',
    transport: 'tcp',
    auth: BENCH_USER,
    baseline: 'aedes-tcp',
    alsoVs: ['aedes-tcp-nodelay'],
    start: (ctx) => startBastion('tcp', ctx),
  },
  {
    name: 'aedes-tls',
    description: 'bare Aedes 1.2, tls.createServer({cert,key}, aedes.handle)',
    transport: 'tls',
    auth: null,
    baseline: null,
    start: (ctx) => startAedes('tls', ctx),
  },
  {
    name: 'bastion-tls',
    description: 'Bastion core + passwordAuth, mqtts listener',
    transport: 'tls',
    auth: BENCH_USER,
    baseline: 'aedes-tls',
    alsoVs: ['aedes-tls-nodelay'],
    start: (ctx) => startBastion('tls', ctx),
  },
  {
    name: 'aedes-tcp-nodelay',
    description: 'bare Aedes 1.2 over TCP with setNoDelay(true) on each socket, like Bastion\'s listener',
    transport: 'tcp',
    auth: null,
    baseline: null,
    default: false,
    start: (ctx) => startAedes('tcp', ctx, { noDelay: true }),
  },
  {
    name: 'aedes-tls-nodelay',
    description: 'bare Aedes 1.2 over TLS with setNoDelay(true) on each socket, like Bastion\'s listener',
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
    servername: 'localhost',
  };
}
