/**
 * A lean raw-socket MQTT 3.1.1 client side for the connection scenarios: a CONNECT is a few bytes
 * written straight to a socket, and the CONNACK is recognised from its four bytes. mqtt.js spends
 * ~150 µs of CPU per connection (stream setup, parser, option handling); this spends a few µs on
 * top of the socket itself, so the generator is not what limits a connection-rate measurement.
 */
import net from 'node:net';
import tls from 'node:tls';

/** CONNECT bytes (MQTT 3.1.1): clean session, keepalive seconds, optional username/password. */
export function connectPacket({ clientId, username, password, keepalive = 60, clean = true }) {
  const id = Buffer.from(clientId, 'utf8');
  const user = username === undefined ? undefined : Buffer.from(username, 'utf8');
  const pass = password === undefined ? undefined : Buffer.from(password, 'utf8');
  let flags = clean ? 0x02 : 0;
  let len = 10 + 2 + id.length;
  if (user) {
    flags |= 0x80;
    len += 2 + user.length;
  }
  if (pass) {
    flags |= 0x40;
    len += 2 + pass.length;
  }
  const lenBytes = [];
  let x = len;
  do {
    let b = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) b |= 128;
    lenBytes.push(b);
  } while (x > 0);
  const buf = Buffer.allocUnsafe(1 + lenBytes.length + len);
  let o = 0;
  buf[o++] = 0x10;
  for (const b of lenBytes) buf[o++] = b;
  o = buf.writeUInt16BE(4, o);
  o += buf.write('MQTT', o, 'latin1');
  buf[o++] = 4;
  buf[o++] = flags;
  o = buf.writeUInt16BE(keepalive, o);
  const field = (b) => {
    o = buf.writeUInt16BE(b.length, o);
    o += b.copy(buf, o);
  };
  field(id);
  if (user) field(user);
  if (pass) field(pass);
  return buf;
}

export const DISCONNECT = Buffer.from([0xe0, 0x00]);

/**
 * Opens one connection, sends CONNECT, resolves { socket, returnCode } at CONNACK (returnCode 0 =
 * accepted), or { socket: null, returnCode: -1, error } when the connection ends or fails first.
 * Never rejects: refused and failed attempts are counted, not thrown.
 */
export function rawConnect(conn, packet, { localAddress, timeoutMs = 30_000, tlsOpts } = {}) {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (result) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      resolve(result);
    };
    const socket =
      conn.transport === 'tls'
        ? tls.connect({ host: conn.host, port: conn.port, localAddress, ...tlsOpts }, () => socket.write(packet))
        : net.connect({ host: conn.host, port: conn.port, localAddress }, () => socket.write(packet));
    const timer = setTimeout(() => {
      socket.destroy();
      finish({ socket: null, returnCode: -1, error: 'timeout' });
    }, timeoutMs);
    let head = null;
    const onData = (chunk) => {
      head = head ? Buffer.concat([head, chunk]) : chunk;
      if (head.length < 4) return;
      if (head[0] !== 0x20) {
        socket.destroy();
        return finish({ socket: null, returnCode: -1, error: `unexpected packet 0x${head[0].toString(16)}` });
      }
      const rc = head[3];
      if (rc !== 0) {
        socket.destroy();
        return finish({ socket: null, returnCode: rc });
      }
      finish({ socket, returnCode: 0 });
    };
    socket.on('data', onData);
    socket.on('error', (err) => finish({ socket: null, returnCode: -1, error: err.code ?? err.message }));
    socket.on('close', () => finish({ socket: null, returnCode: -1, error: 'closed' }));
  });
}

/**
 * Opens `count` connections with at most `window` handshakes in flight; each is held open after its
 * CONNACK (as after an outage, when a fleet reconnects and stays). Resolves with the sockets held,
 * the number refused/failed and the time the last CONNACK arrived.
 */
export function connectMany(conn, count, { window, clientId, username, password, keepalive = 60, localAddress, tlsOpts, timeoutMs }) {
  // localAddress: one address, or a function of the connection number (a fleet spread over many)
  const source = typeof localAddress === 'function' ? localAddress : () => localAddress;
  return new Promise((resolve) => {
    const sockets = [];
    const errors = new Map();
    let started = 0;
    let settled = 0;
    let failed = 0;
    const t0 = performance.now();
    let lastAt = t0;
    const pump = () => {
      while (started - settled < window && started < count) {
        const i = started++;
        const packet = connectPacket({ clientId: clientId(i), username, password, keepalive });
        rawConnect(conn, packet, { localAddress: source(i), tlsOpts, timeoutMs }).then((r) => {
          settled++;
          if (r.socket) {
            sockets.push(r.socket);
            r.socket.on('error', () => {});
            lastAt = performance.now();
          } else {
            failed++;
            const key = r.error ?? `returnCode ${r.returnCode}`;
            errors.set(key, (errors.get(key) ?? 0) + 1);
          }
          if (settled === count) resolve({ sockets, failed, errors: Object.fromEntries(errors), elapsedMs: lastAt - t0 });
          else pump();
        });
      }
    };
    if (count === 0) resolve({ sockets, failed, errors: {}, elapsedMs: 0 });
    else pump();
  });
}

/** Sends DISCONNECT on every socket, ends it, and resolves when all are closed (or after timeoutMs). */
export function closeAll(sockets, timeoutMs = 10_000) {
  return new Promise((resolve) => {
    let open = 0;
    const timer = setTimeout(() => {
      for (const s of sockets) s.destroy();
      resolve();
    }, timeoutMs);
    timer.unref();
    const done = () => {
      if (--open === 0) {
        clearTimeout(timer);
        resolve();
      }
    };
    for (const s of sockets) {
      if (s.destroyed) continue;
      open++;
      s.once('close', done);
      s.end(DISCONNECT);
    }
    if (open === 0) {
      clearTimeout(timer);
      resolve();
    }
  });
}

/**
 * A counting subscriber: CONNECT, SUBSCRIBE (QoS 0) to one filter, then only counts the PUBLISH
 * packets going by (fixed header and length, nothing parsed or copied). For fan-out, where 100
 * mqtt.js subscribers in one process would be the bottleneck instead of the broker.
 * Resolves { socket, count() } once the SUBACK arrived.
 */
export function rawSubscriber(conn, { clientId, topic, username, password, localAddress, tlsOpts, onPublish }) {
  return new Promise((resolve, reject) => {
    const socket =
      conn.transport === 'tls'
        ? tls.connect({ host: conn.host, port: conn.port, localAddress, ...tlsOpts })
        : net.connect({ host: conn.host, port: conn.port, localAddress });
    socket.write(connectPacket({ clientId, username, password }));
    const t = Buffer.from(topic, 'utf8');
    const sub = Buffer.allocUnsafe(2 + 2 + 2 + t.length + 1);
    sub[0] = 0x82;
    sub[1] = 2 + 2 + t.length + 1; // topics here are short (< 128 bytes)
    sub.writeUInt16BE(1, 2);
    sub.writeUInt16BE(t.length, 4);
    t.copy(sub, 6);
    sub[6 + t.length] = 0;
    let state = 0; // 0 CONNACK, 1 SUBACK, 2 counting
    let count = 0;
    // frame scanner state
    let skip = 0;
    let inLen = false;
    let type = 0;
    let len = 0;
    let mult = 1;
    let pending = null;
    const fail = (msg) => {
      socket.destroy();
      reject(new Error(`${clientId}: ${msg}`));
    };
    socket.on('error', (err) => {
      if (state < 2) fail(err.message);
    });
    socket.on('close', () => {
      if (state < 2) fail('closed before SUBACK');
    });
    socket.on('data', (chunk) => {
      if (state < 2) {
        pending = pending ? Buffer.concat([pending, chunk]) : chunk;
        if (state === 0) {
          if (pending.length < 4) return;
          if (pending[0] !== 0x20 || pending[3] !== 0) return fail(`CONNACK refused (${pending[3]})`);
          pending = pending.subarray(4);
          state = 1;
          socket.write(sub);
        }
        if (state === 1) {
          if (pending.length < 5) return;
          if (pending[0] !== 0x90 || pending[4] > 2) return fail(`SUBACK refused (${pending[4]})`);
          chunk = pending.subarray(5);
          pending = null;
          state = 2;
          resolve({ socket, count: () => count });
        }
      }
      const n = chunk.length;
      let i = 0;
      while (i < n) {
        if (skip > 0) {
          const take = n - i < skip ? n - i : skip;
          skip -= take;
          i += take;
          continue;
        }
        const b = chunk[i++];
        if (!inLen) {
          type = b >> 4;
          inLen = true;
          len = 0;
          mult = 1;
          continue;
        }
        len += (b & 127) * mult;
        mult *= 128;
        if ((b & 128) === 0) {
          inLen = false;
          skip = len;
          if (type === 3) {
            count++;
            onPublish?.();
          }
        }
      }
    });
  });
}

/** Loopback source address number i of a spread fleet: 127.0.1.1 … 127.0.4.250 (1,000 addresses). */
export function spreadAddress(i) {
  const k = i % 1000;
  return `127.0.${1 + Math.floor(k / 250)}.${1 + (k % 250)}`;
}
