/** Test helpers around real mqtt.js clients. */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

export type Refusal = { refused: true; code: number | undefined; message: string };

/** Connect and resolve the client, or resolve the refusal (CONNACK code or closed socket). */
export function tryConnect(url: string, opts: IClientOptions = {}): Promise<MqttClient | Refusal> {
  return new Promise((resolve) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...opts });
    let settled = false;
    const settle = (v: MqttClient | Refusal) => {
      if (settled) return;
      settled = true;
      if ((v as Refusal).refused) client.end(true);
      resolve(v);
    };
    client.once('connect', () => settle(client));
    client.once('error', (err: Error & { code?: number }) => settle({ refused: true, code: typeof err.code === 'number' ? err.code : undefined, message: err.message }));
    client.once('close', () => settle({ refused: true, code: undefined, message: 'connection closed' }));
  });
}

export async function connect(url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const c = await tryConnect(url, opts);
  if ((c as Refusal).refused) throw new Error(`expected to connect to ${url}, was refused: ${(c as Refusal).message} (code ${(c as Refusal).code})`);
  return c as MqttClient;
}

export function isRefusal(v: unknown): v is Refusal {
  return typeof v === 'object' && v !== null && (v as Refusal).refused === true;
}

/** Resolve with the next message on `topic` (or any topic) within `ms`. */
export function nextMessage(client: MqttClient, ms = 3000): Promise<{ topic: string; payload: string; retain: boolean }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      client.off('message', on);
      reject(new Error(`no message within ${ms} ms`));
    }, ms);
    const on = (topic: string, payload: Buffer, packet: { retain?: boolean }) => {
      clearTimeout(t);
      client.off('message', on);
      resolve({ topic, payload: payload.toString(), retain: !!packet.retain });
    };
    client.on('message', on);
  });
}

/** Collect messages for `ms` milliseconds. */
export async function collect(client: MqttClient, ms: number): Promise<Array<{ topic: string; payload: string }>> {
  const out: Array<{ topic: string; payload: string }> = [];
  const on = (topic: string, payload: Buffer) => out.push({ topic, payload: payload.toString() });
  client.on('message', on);
  await new Promise((r) => setTimeout(r, ms));
  client.off('message', on);
  return out;
}

/**
 * Messages the client receives until `count` have arrived, plus `settleMs` more (so an extra one
 * still shows), or until `maxMs` (then whatever came). Unlike collect(), a slow machine only makes it
 * wait longer: the window ends on what arrived, not on a fixed time.
 */
export async function collectCount(client: MqttClient, count: number, maxMs = 10_000, settleMs = 200): Promise<Array<{ topic: string; payload: string }>> {
  const out: Array<{ topic: string; payload: string }> = [];
  await new Promise<void>((resolve) => {
    const max = setTimeout(done, maxMs);
    let settle: NodeJS.Timeout | undefined;
    function on(topic: string, payload: Buffer) {
      out.push({ topic, payload: payload.toString() });
      if (out.length === count) settle = setTimeout(done, settleMs);
    }
    function done() {
      clearTimeout(max);
      clearTimeout(settle);
      client.off('message', on);
      resolve();
    }
    client.on('message', on);
  });
  return out;
}

/** Resolve when the client's connection closes (or reject after ms). */
export function closed(client: MqttClient, ms = 3000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!client.connected && (client as unknown as { disconnected?: boolean }).disconnected) return resolve();
    const t = setTimeout(() => reject(new Error(`connection still open after ${ms} ms`)), ms);
    client.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

export async function waitFor(cond: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
