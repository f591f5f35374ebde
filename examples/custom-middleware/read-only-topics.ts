import { deny, type Middleware } from '@bastion/core';

/** Nobody may publish under `prefix`; subscribing stays allowed. */
export function readOnlyTopics(prefix = 'readonly/'): Middleware {
  const refused = deny('not-authorized', `${prefix}* is read-only`, 'drop'); // made once: no allocation per message
  return {
    name: 'read-only-topics',
    controls: ['PR.AC-5'],
    authorizePublish: (_client, packet) => (packet.topic.startsWith(prefix) ? refused : undefined),
  };
}
