/**
 * Turns a resolved profile into the middleware list, in the order the data plane runs them:
 * gates before CONNECT, then authentication, then authorization.
 */
import type { Middleware } from '@bastion/core';
import type { Profile } from '@bastion/profile';
import { certificateAuth, passwordAuth } from '@bastion/middleware';
import type { PasswordAuth } from '@bastion/middleware';

export interface Controls {
  readonly middleware: Middleware[];
  readonly passwords?: PasswordAuth;
}

export function controlsFromProfile(profile: Profile): Controls {
  const middleware: Middleware[] = [];
  const auth = profile.authentication;
  let passwords: PasswordAuth | undefined;
  if (auth.certificates) {
    middleware.push(certificateAuth({ identity: auth.certificates.identity, clientIdMustMatch: auth.certificates.clientIdMustMatch }));
  }
  if (auth.passwords) {
    passwords = passwordAuth({ file: auth.passwords.file });
    middleware.push(passwords);
  }
  return { middleware, passwords };
}
