/**
 * Sealing and opening stored MQTT packets: the payload (and MQTT 5 properties, when present) go
 * into an envelope in the `payload` field; everything Aedes routes and counts on — cmd, topic,
 * qos, retain, messageId, brokerId, brokerCounter — stays as it is. Packets are copied, never
 * changed: Aedes hands the same object to the store and to every subscriber.
 */
import v8 from 'node:v8';
import type { Context, SealKind, Sealer } from './seal.js';

/** An Aedes packet as the store sees it. */
export interface StoredPacket {
  cmd?: string;
  topic: string;
  payload?: Buffer | string;
  properties?: unknown;
  clientId?: string;
  messageId?: number;
  [field: string]: unknown;
}

const FLAG_PROPERTIES = 1;
const EMPTY = Buffer.alloc(0);

const own = Object.prototype.hasOwnProperty;

/**
 * A copy with the fields an Aedes packet record has (those aedes-packet's Packet keeps), built in
 * one fixed shape: fast to make and to read, and without what rides along on a packet in flight
 * (Aedes' QoSPacket carries a write callback). Optional fields are copied only when present, as
 * aedes-packet does; `messageId` keeps its presence (aedes-persistence-redis tests `'messageId' in`).
 */
export function copyPacket(p: StoredPacket): StoredPacket {
  const out: StoredPacket = {
    cmd: p.cmd,
    brokerId: p['brokerId'],
    brokerCounter: p['brokerCounter'],
    topic: p.topic,
    payload: p.payload,
    qos: p['qos'],
    retain: p['retain'],
    dup: p['dup'],
  };
  if ('messageId' in p) out.messageId = p.messageId;
  if (own.call(p, 'clientId')) out.clientId = p.clientId;
  if (own.call(p, 'nl')) out['nl'] = p['nl'];
  if (own.call(p, 'properties')) out.properties = p.properties;
  if (own.call(p, 'messageExpiry')) out['messageExpiry'] = p['messageExpiry'];
  return out;
}

function payloadBytes(payload: Buffer | string | undefined): Buffer {
  if (payload === undefined) return EMPTY;
  return typeof payload === 'string' ? Buffer.from(payload) : payload;
}

export class PacketCipher {
  readonly sealer: Sealer;
  readonly #ctx: Context = { kind: 'R', clientId: undefined, topic: undefined };

  constructor(sealer: Sealer) {
    this.sealer = sealer;
  }

  #context(kind: SealKind, clientId: string | undefined, topic: string): Context {
    const c = this.#ctx; // reused: Sealer reads it synchronously
    c.kind = kind;
    c.clientId = clientId;
    c.topic = topic;
    return c;
  }

  /** The sealed payload of `packet` (its properties inside when it has any). */
  sealPayload(packet: StoredPacket, kind: SealKind, clientId: string | undefined): Buffer {
    const payload = payloadBytes(packet.payload);
    const ctx = this.#context(kind, clientId, packet.topic);
    if (packet.properties === undefined) return this.sealer.seal(payload, ctx);
    const props = v8.serialize(packet.properties);
    const plain = Buffer.allocUnsafe(4 + payload.length + props.length);
    plain.writeUInt32BE(payload.length, 0);
    payload.copy(plain, 4);
    props.copy(plain, 4 + payload.length);
    return this.sealer.seal(plain, ctx, FLAG_PROPERTIES);
  }

  /** A copy of `packet` whose payload is sealed for (kind, client id, topic). */
  seal(packet: StoredPacket, kind: SealKind, clientId: string | undefined, sealedPayload?: Buffer): StoredPacket {
    const out = copyPacket(packet);
    out.payload = sealedPayload ?? this.sealPayload(packet, kind, clientId);
    if (packet.properties !== undefined) delete out.properties;
    return out;
  }

  /** A copy of a stored record with its payload opened, or undefined when it does not open (see `sealer.failure`). */
  open(record: StoredPacket, kind: SealKind, clientId: string | undefined): StoredPacket | undefined {
    const envelope = record.payload;
    const plain = this.sealer.open(envelope, this.#context(kind, clientId, record.topic));
    if (plain === undefined) return undefined;
    const out = copyPacket(record);
    if (((envelope as Buffer)[2] ?? 0) & FLAG_PROPERTIES) {
      const n = plain.readUInt32BE(0);
      out.payload = plain.subarray(4, 4 + n);
      out.properties = v8.deserialize(plain.subarray(4 + n));
    } else {
      out.payload = plain;
    }
    return out;
  }
}
