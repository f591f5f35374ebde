import { autoDisconnect } from '@bastion/middleware';
import type { ControlFactory } from '../controls.js';

/** PR.SS-2 / PR.SS-7: keepalive cap, idle timeout and maximum connection age from `disconnect`. */
export const autoDisconnectControl: ControlFactory = ({ profile }) =>
  profile.disconnect && {
    phase: 'limit',
    middleware: [autoDisconnect(profile.disconnect)],
  };
