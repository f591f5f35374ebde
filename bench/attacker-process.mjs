#!/usr/bin/env node
/**
 * The attacker of the latency-flood scenario, in its own process (started by the load generator,
 * so on the generator's CPU, under SCHED_IDLE (else nice 19) so it does not take that CPU from the
 * legitimate client).
 * From one address (params.floodAddress, 127.0.0.2) it
 *   - guesses passwords: `floodWindow` CONNECTs in flight, user `bench`, a random wrong password
 *     each, reconnecting as soon as the broker answers or drops it;
 *   - floods connections: keeps up to `floodIdle` sockets open that never send CONNECT.
 * IPC: start({ conn, params }) → stats() … → stop.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { connectPacket, rawConnect } from './lib/raw-mqtt.mjs';
import { serve } from './lib/process.mjs';

if (!process.send) {
  process.stderr.write('attacker-process.mjs is started by the bench (it needs an IPC channel)\n');
  process.exit(2);
}

const stats = { attempts: 0, refused: 0, badCredentials: 0, accepted: 0, idleOpened: 0, idleOpen: 0, errors: {} };
let running = false;
const idle = new Set();

function tlsOptsOf(conn) {
  if (conn.transport !== 'tls') return undefined;
  const o = { ca: readFileSync(conn.caFile, 'utf8'), servername: conn.servername, rejectUnauthorized: true };
  // the strongest attacker: a valid device certificate (stolen), guessing the password factor
  if (conn.certFile) {
    o.cert = readFileSync(conn.certFile, 'utf8');
    o.key = readFileSync(conn.keyFile, 'utf8');
  }
  return o;
}

function guessLoop(conn, params, tlsOpts) {
  if (!running) return;
  stats.attempts++;
  const packet = connectPacket({ clientId: `x${randomBytes(4).toString('hex')}`, username: conn.username ?? 'bench', password: randomBytes(8).toString('hex') });
  rawConnect(conn, packet, { localAddress: params.floodAddress, tlsOpts, timeoutMs: 5_000 }).then((r) => {
    if (r.socket) {
      stats.accepted++;
      r.socket.destroy();
    } else if (r.returnCode > 0) stats.badCredentials++;
    else {
      stats.refused++;
      if (r.error) stats.errors[r.error] = (stats.errors[r.error] ?? 0) + 1;
    }
    // a refused attacker retries at once, but not in a tight loop when the port itself refuses
    if (r.error === 'ECONNREFUSED') setTimeout(() => guessLoop(conn, params, tlsOpts), 10);
    else setImmediate(() => guessLoop(conn, params, tlsOpts));
  });
}

function idleLoop(conn, params, tlsOpts) {
  if (!running || idle.size >= params.floodIdle) return;
  const s = conn.transport === 'tls'
    ? tls.connect({ host: conn.host, port: conn.port, localAddress: params.floodAddress, ...tlsOpts })
    : net.connect({ host: conn.host, port: conn.port, localAddress: params.floodAddress });
  idle.add(s);
  stats.idleOpened++;
  stats.idleOpen = idle.size;
  s.on('error', () => {});
  s.on('close', () => {
    idle.delete(s);
    stats.idleOpen = idle.size;
    setTimeout(() => idleLoop(conn, params, tlsOpts), 5);
  });
  setImmediate(() => idleLoop(conn, params, tlsOpts));
}

serve({
  start({ conn, params }) {
    running = true;
    const tlsOpts = tlsOptsOf(conn);
    for (let i = 0; i < params.floodWindow; i++) guessLoop(conn, params, tlsOpts);
    idleLoop(conn, params, tlsOpts);
    return {};
  },
  stats() {
    const cpu = process.cpuUsage();
    return { ...stats, errors: { ...stats.errors }, at: performance.now(), cpuUs: cpu.user + cpu.system };
  },
  stop() {
    running = false;
    for (const s of idle) s.destroy();
  },
});

process.send({ type: 'ready', pid: process.pid });
