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

/** Loopback source address number i of a spread fleet: 127.0.1.1 … 127.0.4.250 (1,000 addresses). */
export function spreadAddress(i) {
  const k = i % 1000;
  return `127.0.${1 + Math.floor(k / 250)}.${1 + (k % 250)}`;
}

/** Opens a socket, sends CONNECT and resolves it at an accepted CONNACK (rejects otherwise). */
function rawSession(conn, { clientId, username, password, localAddress, tlsOpts }) {
  return new Promise((resolve, reject) => {
    const socket =
      conn.transport === 'tls'
        ? tls.connect({ host: conn.host, port: conn.port, localAddress, ...tlsOpts })
        : net.connect({ host: conn.host, port: conn.port, localAddress });
    socket.write(connectPacket({ clientId, username, password }));
    let head = null;
    const fail = (msg) => {
      socket.destroy();
      reject(new Error(`${clientId}: ${msg}`));
    };
    const onData = (chunk) => {
      head = head ? Buffer.concat([head, chunk]) : chunk;
      if (head.length < 4) return;
      socket.off('data', onData).off('close', onClose);
      if (head[0] !== 0x20 || head[3] !== 0) return fail(`CONNACK refused (${head[3]})`);
      if (head.length > 4) socket.unshift(head.subarray(4));
      resolve(socket);
    };
    const onClose = () => fail('closed before CONNACK');
    socket.on('data', onData).on('close', onClose).on('error', () => {});
  });
}

/**
 * A counting subscriber without mqtt.js: CONNECT, SUBSCRIBE to one filter at `qos`, then it only
 * scans frames — fixed header and length, and for a QoS 1 PUBLISH the packet id, which it
 * acknowledges (all the PUBACKs of one read in one write); nothing is parsed or copied. For fan-out
 * (100 mqtt.js subscribers in one process would be the bottleneck) and QoS 1 throughput (an
 * mqtt.js pair saturated the generator's CPU before the broker's). Resolves { socket } once the
 * SUBACK arrived; `onPublish` is called per PUBLISH.
 */
export async function rawSubscriber(conn, { clientId, topic, qos = 0, username, password, localAddress, tlsOpts, onPublish }) {
  const socket = await rawSession(conn, { clientId, username, password, localAddress, tlsOpts });
  const t = Buffer.from(topic, 'utf8');
  const sub = Buffer.allocUnsafe(2 + 2 + 2 + t.length + 1);
  sub[0] = 0x82;
  sub[1] = 2 + 2 + t.length + 1; // short topics (< 128 bytes)
  sub.writeUInt16BE(1, 2);
  sub.writeUInt16BE(t.length, 4);
  t.copy(sub, 6);
  sub[6 + t.length] = qos;
  socket.write(sub);
  return new Promise((resolve, reject) => {
    let subscribed = false;
    // frame scanner: fixed header, then the variable header's packet id (QoS 1 PUBLISH) at pos 2+topic length
    let inLen = false;
    let type = 0;
    let flags = 0;
    let len = 0;
    let mult = 1;
    let pos = 0; // bytes of the current frame's body consumed
    let topicLen = 0;
    let pid = 0;
    let inBody = false;
    const acks = Buffer.allocUnsafe(4 * 4096);
    socket.on('close', () => {
      if (!subscribed) reject(new Error(`${clientId}: closed before SUBACK`));
    });
    socket.on('data', (chunk) => {
      const n = chunk.length;
      let nAcks = 0;
      let i = 0;
      while (i < n) {
        if (inBody) {
          if (type === 3 && (flags & 0x06) !== 0 && pos < 4 + topicLen) {
            const b = chunk[i++];
            if (pos === 0) topicLen = b << 8;
            else if (pos === 1) topicLen |= b;
            else if (pos === 2 + topicLen) pid = b << 8;
            else if (pos === 3 + topicLen) {
              pid |= b;
              if (nAcks * 4 + 4 > acks.length) {
                socket.write(Buffer.from(acks.subarray(0, nAcks * 4)));
                nAcks = 0;
              }
              const o = nAcks++ * 4;
              acks[o] = 0x40;
              acks[o + 1] = 2;
              acks[o + 2] = pid >> 8;
              acks[o + 3] = pid & 0xff;
            }
            pos++;
          } else {
            const take = Math.min(n - i, len - pos);
            if (type === 9 && !subscribed) {
              if (chunk[i + take - 1] > 2) {
                socket.destroy();
                return reject(new Error(`${clientId}: SUBACK refused`));
              }
            }
            pos += take;
            i += take;
          }
          if (pos === len) {
            inBody = false;
            if (type === 3) onPublish?.();
            else if (type === 9 && !subscribed) {
              subscribed = true;
              resolve({ socket });
            }
          }
          continue;
        }
        const b = chunk[i++];
        if (!inLen) {
          type = b >> 4;
          flags = b & 0x0f;
          inLen = true;
          len = 0;
          mult = 1;
          continue;
        }
        len += (b & 127) * mult;
        mult *= 128;
        if ((b & 128) === 0) {
          inLen = false;
          pos = 0;
          inBody = len > 0;
          if (!inBody && type === 3) onPublish?.();
        }
      }
      if (nAcks > 0) socket.write(Buffer.from(acks.subarray(0, nAcks * 4)));
    });
  });
}

/**
 * A raw QoS 1 publisher: `publish(n, window)` keeps `window` PUBLISHes awaiting PUBACK, written in
 * batches, and resolves when all n were acknowledged.
 */
export async function rawQoS1Publisher(conn, { clientId, topic, payload, username, password, localAddress, tlsOpts }) {
  const socket = await rawSession(conn, { clientId, username, password, localAddress, tlsOpts });
  const t = Buffer.from(topic, 'utf8');
  const body = 2 + t.length + 2 + payload.length;
  const lenBytes = [];
  for (let x = body; ; ) {
    let b = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) b |= 128;
    lenBytes.push(b);
    if (x === 0) break;
  }
  const frameLen = 1 + lenBytes.length + body;
  const template = Buffer.allocUnsafe(frameLen);
  let o = 0;
  template[o++] = 0x32; // PUBLISH, QoS 1
  for (const b of lenBytes) template[o++] = b;
  o = template.writeUInt16BE(t.length, o);
  o += t.copy(template, o);
  const pidAt = o;
  payload.copy(template, o + 2);
  let nextPid = 1;
  let acked = 0;
  let target = 0;
  let onAcked = () => {};
  let pump = () => {};
  // the publisher subscribes to nothing, so all it gets are PUBACKs, 4 bytes each (0x40 0x02 id id);
  // a read may split one
  let carry = 0;
  socket.on('data', (chunk) => {
    const total = carry + chunk.length;
    const whole = Math.floor(total / 4);
    carry = total % 4;
    acked += whole;
    if (acked >= target) onAcked();
    else pump();
  });
  return {
    socket,
    publish(n, window) {
      acked = 0;
      target = n;
      let sent = 0;
      return new Promise((resolve, reject) => {
        socket.once('error', reject);
        onAcked = () => {
          socket.off('error', reject);
          resolve();
        };
        pump = () => {
          const room = Math.min(window - (sent - acked), n - sent);
          if (room <= 0) return;
          const batch = Buffer.allocUnsafe(room * frameLen);
          for (let k = 0; k < room; k++) {
            const at = k * frameLen;
            template.copy(batch, at);
            batch.writeUInt16BE(nextPid, at + pidAt);
            nextPid = nextPid === 65535 ? 1 : nextPid + 1;
          }
          sent += room;
          socket.write(batch);
        };
        pump();
      });
    },
  };
}
