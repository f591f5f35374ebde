import { certificateAuth, passwordAuth } from '@bastion/middleware';
import type { Middleware } from '@bastion/core';
import type { ControlFactory } from '../controls.js';

/** PR.AC-1/PR.AC-3/PR.CS-3: client certificates and passwords, from `authentication`. */
export const authentication: ControlFactory = ({ profile }) => {
  const auth = profile.authentication;
  const middleware: Middleware[] = [];
  if (auth.certificates) middleware.push(certificateAuth({ identity: auth.certificates.identity, clientIdMustMatch: auth.certificates.clientIdMustMatch }));
  if (auth.passwords) middleware.push(passwordAuth({ file: auth.passwords.file }));
  return { phase: 'authenticate', middleware };
};
