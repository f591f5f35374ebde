import { detectors, responses } from '@bastion/detect';
import type { ResponseCapabilities, Responses, ResponsesOptions } from '@bastion/detect';
import type { Bans, PasswordAuth, Revocation } from '@bastion/middleware';
import type { Profile } from '@bastion/profile';
import type { ControlFactory, Reconfigurable } from '../controls.js';

function responsesOptions(profile: Profile): ResponsesOptions {
  const r = profile.responses;
  return r === undefined
    ? {}
    : {
        dryRun: r.dryRun,
        rules: r.rules,
        allow: r.allow,
        ban: r.ban,
        lockdown: r.lockdown,
        blockTopicDuration: r.blockTopicDuration,
        capacity: profile.detectors?.capacity,
      };
}

/**
 * RS.RP-1…6 from `responses`: the response engine. Always present (its lockdown, topic blocks and
 * action methods serve the embedding and admin APIs); its rules come from the profile. Once the
 * broker listens it is given the bans, passwords and revocation controls and a graceful shutdown.
 * A reload swaps rules and policies in place (`update`): bans, blocked topics and a lockdown in
 * force stay.
 */
export const responsesControl: ControlFactory = ({ profile }) => {
  const live: Reconfigurable = {
    reconfigure(next) {
      mw.update(responsesOptions(next));
    },
  };
  const mw = Object.assign(responses(responsesOptions(profile)), live);
  return {
    phase: 'gate',
    middleware: [mw],
    services: [
      {
        name: 'responses',
        controls: ['RS.RP-1', 'RS.RP-2', 'RS.RP-3'],
        start(broker) {
          const caps: ResponseCapabilities = { shutdown: () => broker.close() };
          const bans = broker.controls.get<Bans>('bans');
          if (bans) caps.bans = bans;
          const passwords = broker.controls.get<PasswordAuth>('passwords');
          if (passwords && typeof passwords.revoke === 'function') caps.passwords = passwords;
          const revocation = broker.controls.get<Revocation>('revocation');
          if (revocation) caps.certificates = { revoke: (serial) => revocation.revoke(serial) };
          broker.controls.get<Responses>('responses')?.attach(caps);
        },
        stop() {},
        reconfigure() {}, // the middleware above takes the change
      },
    ],
  };
};

/**
 * DE.NM-1/2, DE.PM-1, DE.ID-1…4 (PR.SS-3) from `detectors`: observers at the end of the chain. A
 * reload swaps the detector set in place (`update`): detectors turned on start detecting, those
 * turned off stop, unchanged ones keep their windows.
 */
export const detectorsControl: ControlFactory = ({ profile, logger }) => {
  const d = profile.detectors;
  if (!d) return undefined;
  const live: Reconfigurable = {
    reconfigure(next) {
      if (next.detectors) mw.update(next.detectors); // turning every detector off is refused before (reload.ts)
    },
  };
  const mw = Object.assign(detectors(d), live);
  return {
    phase: 'observe',
    middleware: [mw],
    services: [
      {
        name: 'detectors',
        controls: ['DE.ID-3'],
        start(broker) {
          // kept by the middleware: undeliverable detection turned on by a reload reads it too
          if (!mw.attachSubscribers((broker.aedes as unknown as { mq: unknown }).mq)) {
            logger.warn('undeliverable-message detection (DE.ID-3) cannot read subscriptions from this message bus; it stays silent');
          }
        },
        stop() {},
        reconfigure() {}, // the middleware above takes the change
      },
    ],
  };
};
