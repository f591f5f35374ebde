import type { Profile } from '@bastion/profile';
import type { Bastion } from '../broker.js';
import type { ControlFactory } from '../controls.js';
import { identify } from '../identify/index.js';

const expectedOf = (profile: Profile) => profile.detectors?.availability?.expected.map((e) => ({ clientId: e.clientId, pattern: e.pattern })) ?? [];
const propertiesOf = (profile: Profile) => ({ profile: profile.name ?? profile.source, tier: String(profile.tier) });

/**
 * ID.AM-1/2/3, ID.IS-1/4: the inventory of devices, software, data flows and cryptography. Always
 * on (it only observes; its hot-path cost is one WeakMap and one Map lookup per PUBLISH). The
 * clients the profile expects come from `detectors.availability.expected`; a reload changes them in
 * place (the devices, flows and TLS counts seen so far stay). The SBOM names the profile and tier in
 * force when it is made, after any reload.
 */
export const identifyControl: ControlFactory = ({ profile }) => {
  const mw = identify({ expected: expectedOf(profile), properties: propertiesOf(profile) });
  const start = mw.start.bind(mw);
  const cyclonedx = mw.cyclonedx.bind(mw);
  let broker: Bastion | undefined;
  return {
    phase: 'observe',
    middleware: [mw],
    services: [
      Object.assign(mw, {
        start(b: Bastion) {
          broker = b;
          return start(b);
        },
        cyclonedx() {
          // a profile's name and tier are labels: a reload changing only them runs no hook
          if (broker !== undefined) mw.update({ expected: expectedOf(broker.profile), properties: propertiesOf(broker.profile) });
          return cyclonedx();
        },
        reconfigure(next: Profile) {
          mw.update({ expected: expectedOf(next), properties: propertiesOf(next) });
        },
      }),
    ],
  };
};
