import { accessList, acl, bans } from '@bastion/middleware';
import { BANNED_AT_ACCEPT } from '@bastion/core';
import type { ControlFactory } from '../controls.js';

/** PR.SS-4 / RS.RP-3: static access lists and bans — gates before CONNECT is read. Bans are always on (responses and the admin API use them). */
export const gates: ControlFactory = ({ profile }) => {
  const lists = profile.accessLists;
  const banList = bans({ maxBans: profile.bans.maxBans, bans: profile.bans.initial });
  const list = lists ? accessList({ addresses: lists.addresses, clientIds: lists.clientIds }) : undefined;
  let removeAcceptCheck: (() => void) | undefined;
  return {
    phase: 'gate',
    middleware: [...(list ? [list] : []), banList],
    services: [
      {
        // Address lists and bans are judged at TCP accept (the socket is held in the tarpit, no TLS
        // handshake): a denied scanner or a banned flooder that reconnects at once would otherwise
        // cost a handshake per attempt. Their onConnection checks stay for what changes in between.
        name: 'gates-at-accept',
        controls: ['PR.SS-4'],
        start(broker) {
          removeAcceptCheck?.();
          removeAcceptCheck = broker.addAcceptCheck((ip) => list?.acceptCheck(ip) ?? (banList.bannedAddress(ip) ? BANNED_AT_ACCEPT : undefined));
        },
        stop() {
          removeAcceptCheck?.();
          removeAcceptCheck = undefined;
        },
        reconfigure() {}, // the ban list is live: nothing to change here
      },
    ],
  };
};

/** PR.AC-5: the ACL, from `acl` (and on by default from tier 2 with default deny). */
export const authorization: ControlFactory = ({ profile }) => {
  const a = profile.acl;
  if (!a) return undefined;
  return {
    phase: 'authorize',
    middleware: [
      acl({
        // the profile's $SYS subscribers keep their grant under a default-deny ACL
        rules: [
          ...(profile.sys.subscribers.length > 0
            ? [{ id: 'sys-subscribers', effect: 'allow' as const, priority: 1_000_000, users: profile.sys.subscribers, actions: ['subscribe' as const, 'read' as const], topics: ['$SYS/#'] }]
            : []),
          ...a.rules,
        ],
        ...(a.file === undefined ? {} : { file: a.file }),
        defaultEffect: a.defaultEffect,
        onRevoked: a.onRevoked,
        publishDenied: a.publishDenied,
      }),
    ],
  };
};
