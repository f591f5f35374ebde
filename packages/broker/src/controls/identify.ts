import type { ControlFactory } from '../controls.js';
import { identify } from '../identify/index.js';

/**
 * ID.AM-1/2/3, ID.IS-1/4: the inventory of devices, software, data flows and cryptography. Always
 * on (it only observes; its hot-path cost is one WeakMap and one Map lookup per PUBLISH). The
 * clients the profile expects come from `detectors.availability.expected`.
 */
export const identifyControl: ControlFactory = ({ profile }) => {
  const mw = identify({
    expected: profile.detectors?.availability?.expected.map((e) => ({ clientId: e.clientId, pattern: e.pattern })) ?? [],
    properties: { profile: profile.name ?? profile.source, tier: String(profile.tier) },
  });
  return { phase: 'observe', middleware: [mw], services: [mw] };
};
