import { autoDisconnect } from '@bastion/middleware';
import type { ControlFactory, Reconfigurable } from '../controls.js';

/**
 * PR.SS-2 / PR.SS-7: keepalive cap, idle timeout and maximum connection age from `disconnect`.
 * A reload changes them in place; what that means for open connections is `update`'s (docs/reload.md).
 */
export const autoDisconnectControl: ControlFactory = ({ profile }) => {
  const d = profile.disconnect;
  if (!d) return undefined;
  const live: Reconfigurable = {
    reconfigure(next) {
      // the whole section: a key the new profile leaves out returns to its default
      if (next.disconnect) mw.update(next.disconnect, { replace: true });
    },
  };
  const mw = Object.assign(autoDisconnect(d), live);
  return { phase: 'limit', middleware: [mw] };
};
