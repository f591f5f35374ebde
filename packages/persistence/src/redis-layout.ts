/**
 * Where aedes-persistence-redis 12 keeps sealed payloads, for the tools that walk a whole store
 * (`keys rotate`). Records are msgpack, encoded with the same library the store uses, so a
 * rewritten record is byte-for-byte what the store itself would write.
 *
 *   retained                      hash   topic → packet              sealed R + topic
 *   packet:<broker>:<counter>     string packet (shared by queues)   sealed O + topic
 *   outgoing:<client>:<b>:<c>     string packet or pubrel (QoS 2)    sealed O + topic
 *   incoming:<client>             hash   messageId → packet          sealed I + client + topic
 *   will:<broker>:<client>        string packet                      sealed W + client + topic
 *
 * Everything else (client:<id> subscriptions, the clients set, queue lists of key names, counters,
 * Bastion's own bastion-* keys) holds no payload.
 */
import { createRequire } from 'node:module';
import type { SealKind } from './seal.js';
import type { StoredPacket } from './records.js';

const require = createRequire(import.meta.url);
const msgpack = require('msgpack-lite') as { encode(value: unknown): Buffer; decode(buf: Buffer): unknown };

export function decodeRecord(buf: Buffer): StoredPacket | undefined {
  try {
    const v = msgpack.decode(buf);
    return v !== null && typeof v === 'object' && typeof (v as StoredPacket).topic === 'string' ? (v as StoredPacket) : undefined;
  } catch {
    return undefined;
  }
}

export function encodeRecord(packet: StoredPacket): Buffer {
  return msgpack.encode(packet);
}

export interface PayloadLocation {
  type: 'string' | 'hash';
  kind: SealKind;
  /** The client a record is bound to, from the key name; undefined for retained and queued records. */
  clientId: string | undefined;
}

/** Where a key (without prefix) holds sealed payloads, or undefined when it holds none. */
export function payloadLocation(key: string): PayloadLocation | undefined {
  if (key === 'retained') return { type: 'hash', kind: 'R', clientId: undefined };
  if (key.startsWith('packet:')) return key.endsWith(':offlineCount') ? undefined : { type: 'string', kind: 'O', clientId: undefined };
  if (key.startsWith('incoming:')) return { type: 'hash', kind: 'I', clientId: decodeURIComponent(key.slice('incoming:'.length)) };
  if (key.startsWith('will:')) {
    const rest = key.slice('will:'.length);
    const at = rest.indexOf(':');
    return at < 0 ? undefined : { type: 'string', kind: 'W', clientId: decodeURIComponent(rest.slice(at + 1)) };
  }
  // outgoing:<client> is the queue (a list of key names); outgoing:<client>:<broker>:<counter> a QoS 2 copy
  if (key.startsWith('outgoing:') && key.split(':').length >= 4) return { type: 'string', kind: 'O', clientId: undefined };
  return undefined;
}
