/** Hand-made MQTT 3.1.1 packets and raw sockets, for attackers that mqtt.js will not play. */
import net from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { isRefusal, type Refusal } from './mqtt.js';

function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 128;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

function str(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

function packet(firstByte: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([firstByte]), remainingLength(body.length), body]);
}

export function connectPacket(o: { clientId: string | Buffer; keepalive?: number; clean?: boolean; username?: string; password?: string }): Buffer {
  let flags = o.clean === false ? 0 : 0x02;
  if (o.username !== undefined) flags |= 0x80;
  if (o.password !== undefined) flags |= 0x40;
  const keepalive = Buffer.alloc(2);
  keepalive.writeUInt16BE(o.keepalive ?? 60);
  const parts = [str('MQTT'), Buffer.from([4, flags]), keepalive, str(o.clientId)];
  if (o.username !== undefined) parts.push(str(o.username));
  if (o.password !== undefined) parts.push(str(o.password));
  return packet(0x10, Buffer.concat(parts));
}

export function subscribePacket(messageId: number, subs: Array<{ topic: string | Buffer; qos: number }>): Buffer {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(messageId);
  return packet(0x82, Buffer.concat([id, ...subs.flatMap((s) => [str(s.topic), Buffer.from([s.qos])])]));
}

export function publishPacket(o: { topic: string | Buffer; payload?: Buffer | string; qos?: 0 | 1 | 2; messageId?: number }): Buffer {
  const qos = o.qos ?? 0;
  const parts = [str(o.topic)];
  if (qos > 0) {
    const id = Buffer.alloc(2);
    id.writeUInt16BE(o.messageId ?? 1);
    parts.push(id);
  }
  parts.push(typeof o.payload === 'string' ? Buffer.from(o.payload) : (o.payload ?? Buffer.alloc(0)));
  return packet(0x30 | (qos << 1), Buffer.concat(parts));
}

/** Open a TCP socket, optionally from a chosen local address (127.0.0.2 plays the attacker). */
export function rawSocket(port: number, localAddress?: string, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host, ...(localAddress ? { localAddress } : {}) });
    s.once('connect', () => {
      s.off('error', reject);
      s.on('error', () => {});
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Resolves when the socket is closed by the other side (or rejects after ms). */
export function socketClosed(s: net.Socket, ms = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (s.destroyed || s.readyState === 'closed') return resolve();
    const t = setTimeout(() => reject(new Error(`socket still open after ${ms} ms`)), ms);
    s.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** The first bytes the broker sends (e.g. a CONNACK). */
export function firstData(s: net.Socket, ms = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`nothing received within ${ms} ms`)), ms);
    s.once('data', (d: Buffer) => {
      clearTimeout(t);
      resolve(d);
    });
  });
}

/** An mqtt.js client whose TCP socket starts from `localAddress` (mqtt.js has no option for it). */
export function tryConnectFrom(port: number, localAddress: string, opts: IClientOptions = {}): Promise<MqttClient | Refusal> {
  return new Promise((resolve) => {
    const client = new mqtt.MqttClient(() => net.connect({ host: '127.0.0.1', port, localAddress }), { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...opts });
    let settled = false;
    const settle = (v: MqttClient | Refusal) => {
      if (settled) return;
      settled = true;
      if (isRefusal(v)) client.end(true);
      resolve(v);
    };
    client.once('connect', () => settle(client));
    client.once('error', (err: Error & { code?: number }) => settle({ refused: true, code: typeof err.code === 'number' ? err.code : undefined, message: err.message }));
    client.once('close', () => settle({ refused: true, code: undefined, message: 'connection closed' }));
  });
}
