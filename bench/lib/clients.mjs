/**
 * mqtt.js (v5 library, MQTT 3.1.1 on the wire) clients for the load generator.
 */
import { readFileSync } from 'node:fs';
import mqtt from 'mqtt';

/** Connects and resolves after CONNACK; rejects on error or close before that. No reconnects. */
export function connectClient(conn, clientId) {
  const opts = {
    host: conn.host,
    port: conn.port,
    protocol: conn.transport === 'tls' ? 'mqtts' : 'mqtt',
    protocolVersion: 4,
    clientId,
    clean: true,
    keepalive: 60,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
  };
  if (conn.username !== undefined) {
    opts.username = conn.username;
    opts.password = conn.password;
  }
  if (conn.transport === 'tls') {
    opts.ca = readFileSync(conn.caFile, 'utf8');
    opts.rejectUnauthorized = true;
    opts.servername = conn.servername;
    if (conn.certFile) {
      opts.cert = readFileSync(conn.certFile, 'utf8');
      opts.key = readFileSync(conn.keyFile, 'utf8');
    }
  }
  const client = mqtt.connect(opts);
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      client.off('connect', onConnect);
      client.off('error', onError);
      client.off('close', onClose);
    };
    const onConnect = () => {
      cleanup();
      client.on('error', () => {}); // later errors surface as failed publishes/timeouts
      resolve(client);
    };
    const onError = (err) => {
      cleanup();
      client.end(true);
      reject(new Error(`${clientId}: connect to ${conn.target} failed: ${err.message}`));
    };
    const onClose = () => {
      cleanup();
      client.end(true);
      reject(new Error(`${clientId}: connection to ${conn.target} closed before CONNACK`));
    };
    client.on('connect', onConnect);
    client.on('error', onError);
    client.on('close', onClose);
  });
}

export function subscribe(client, topic, qos) {
  return new Promise((resolve, reject) => {
    client.subscribe(topic, { qos }, (err, granted) => {
      if (err) return reject(err);
      const g = granted?.[0];
      if (!g || g.qos !== qos) return reject(new Error(`subscription to ${topic} granted ${JSON.stringify(g)}, wanted QoS ${qos}`));
      resolve();
    });
  });
}

export function endClient(client) {
  return new Promise((resolve) => {
    if (!client) return resolve();
    client.end(false, {}, () => resolve());
    setTimeout(() => {
      client.end(true);
      resolve();
    }, 2_000).unref();
  });
}

/** Negotiated TLS protocol and cipher of a connected client (undefined over TCP). */
export function tlsInfo(client) {
  const s = client.stream;
  if (!s || typeof s.getProtocol !== 'function') return undefined;
  return { protocol: s.getProtocol(), cipher: s.getCipher?.()?.name };
}
