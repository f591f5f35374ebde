import { protocolLimits } from '@bastion/middleware';
import type { QueuePersistence } from '@bastion/middleware';
import type { ControlFactory } from '../controls.js';

/**
 * PR.SS-1: protocol limits from `protocol` (tier defaults when absent). At start the in-flight and
 * slow-consumer limits go to the core, and the QoS 1/2 queues of the broker's persistence are
 * counted against `maxQueuedPerClient`.
 */
export const protocolLimitsControl: ControlFactory = ({ profile }) => {
  const p = profile.protocol;
  if (!p) return undefined;
  const mw = protocolLimits(p);
  return {
    phase: 'limit',
    middleware: [mw],
    services: [
      {
        name: 'protocol-limits',
        controls: ['PR.SS-1'],
        start(broker) {
          mw.bindCore(broker);
          mw.limitQueues((broker.aedes as unknown as { persistence: QueuePersistence }).persistence);
        },
        stop() {},
      },
    ],
  };
};
