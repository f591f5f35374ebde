/**
 * Per-client message and payload-byte counters for the admin API's client list (ID.AM-1).
 *
 * A middleware placed last (observe phase): `authorizePublish` counts what a client sent and the
 * broker accepted, `authorizeForward` what was delivered to it. Each hook is one WeakMap lookup and
 * integer additions: no allocation, never a denial. The record is made once per connection and goes
 * away with its ClientInfo.
 */
import type { ClientInfo, Middleware, PublishPacket } from '@bastion/core';

export interface TrafficCounts {
  messagesIn: number;
  bytesIn: number;
  messagesOut: number;
  bytesOut: number;
}

export interface TrafficCounters extends Middleware {
  /** A copy of the counts for a connection (zeros when nothing was counted). */
  of(client: ClientInfo): TrafficCounts;
}

const payloadBytes = (p: Buffer | string): number => (typeof p === 'string' ? Buffer.byteLength(p) : p.length);

export function trafficCounters(): TrafficCounters {
  const counts = new WeakMap<ClientInfo, TrafficCounts>();
  return {
    name: 'traffic-counters',
    controls: ['ID.AM-1'],
    onConnected(client: ClientInfo) {
      counts.set(client, { messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0 });
    },
    // Records exist from onConnected on; a will checked at CONNECT (before it) is not traffic.
    authorizePublish(client: ClientInfo, packet: PublishPacket) {
      const c = counts.get(client);
      if (c !== undefined) {
        c.messagesIn++;
        c.bytesIn += payloadBytes(packet.payload);
      }
      return undefined;
    },
    authorizeForward(client: ClientInfo, packet: PublishPacket) {
      const c = counts.get(client);
      if (c !== undefined) {
        c.messagesOut++;
        c.bytesOut += payloadBytes(packet.payload);
      }
      return true;
    },
    of(client) {
      const c = counts.get(client);
      return c === undefined ? { messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0 } : { ...c };
    },
  };
}
