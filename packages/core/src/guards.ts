/**
 * Guards every Bastion broker runs first, whatever the profile says:
 * - `$SYS` topics: nobody publishes there (a client publishing `$SYS/…/new/subscribes` poisons
 *   Aedes' own bookkeeping), and only the profile's `$SYS` subscribers may subscribe;
 * - an empty client id with clean session off is refused [MQTT-3.1.3-8]; Aedes 1.2 accepts it.
 */
import type { ClientInfo, ConnectPacketInfo, Middleware, PublishPacket, Subscription, Verdict } from './contract.js';
import { deny } from './contract.js';

const SYS_PUBLISH = deny('not-authorized', '$SYS topics are reserved for the broker', 'disconnect');
const SYS_SUBSCRIBE = deny('not-authorized', '$SYS topics need a grant in the profile (sys.subscribers)');
const EMPTY_ID = deny('client-id-rejected', 'an empty client id needs clean session [MQTT-3.1.3-8]');

function isSys(topic: string): boolean {
  // '$' is 36: any topic starting with '$SYS'
  return topic.charCodeAt(0) === 36 && topic.startsWith('$SYS');
}

export function coreGuards(opts: { sysSubscribers: readonly string[] }): Middleware[] {
  const allowed = new Set(opts.sysSubscribers);
  const sysGuard: Middleware = {
    name: 'sys-topics',
    controls: ['PR.AC-5'],
    authorizePublish(_client: ClientInfo, packet: PublishPacket): Verdict {
      return isSys(packet.topic) ? SYS_PUBLISH : undefined;
    },
    authorizeSubscribe(client: ClientInfo, sub: Subscription): Verdict {
      if (!isSys(sub.topic)) return undefined;
      return client.username !== undefined && allowed.has(client.username) ? undefined : SYS_SUBSCRIBE;
    },
  };
  const clientId: Middleware = {
    name: 'client-id',
    controls: ['PR.SS-1'],
    onConnect(_client: ClientInfo, packet: ConnectPacketInfo): Verdict {
      return packet.clientId === '' && !packet.clean ? EMPTY_ID : undefined;
    },
  };
  return [clientId, sysGuard];
}
