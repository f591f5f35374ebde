import { protocolLimits } from '@bastion/middleware';
import type { QueuePersistence } from '@bastion/middleware';
import type { ControlFactory, Reconfigurable } from '../controls.js';

/**
 * PR.SS-1: protocol limits from `protocol` (tier defaults when absent). At start the in-flight and
 * slow-consumer limits go to the core, and the QoS 1/2 queues of the broker's persistence are
 * counted against `maxQueuedPerClient`. A reload changes them in place (`update`, which hands the
 * core its part again).
 */
export const protocolLimitsControl: ControlFactory = ({ profile }) => {
  const p = profile.protocol;
  if (!p) return undefined;
  const live: Reconfigurable = {
    reconfigure(next) {
      // the whole section: a client-id pattern the new profile drops is dropped
      if (next.protocol) mw.update(next.protocol, { replace: true });
    },
  };
  const mw = Object.assign(protocolLimits(p), live);
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
        reconfigure() {}, // the middleware above takes the change
      },
    ],
  };
};
