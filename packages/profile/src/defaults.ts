import type { ProfileInput } from './schema.js';
import type { Profile, Tier } from './types.js';

/**
 * The embedded development profile: one mqtts listener on 127.0.0.1:8883 using the dev PKI in
 * `certs-dev/` (relative to the baseDir it is resolved with), client certificates optional,
 * password authentication from `certs-dev/users.txt`, no anonymous clients.
 *
 *     resolveProfile(defaultProfile(), { baseDir: projectRoot })
 */
export function defaultProfile(): ProfileInput {
  return {
    version: 1,
    tier: 1,
    listeners: [
      {
        protocol: 'mqtts',
        host: '127.0.0.1',
        port: 8883,
        tls: {
          cert: 'certs-dev/server.pem',
          key: 'certs-dev/server-key.pem',
          ca: 'certs-dev/ca.pem',
          clientCertificate: 'optional',
        },
      },
    ],
    authentication: {
      anonymous: false,
      passwords: { file: 'certs-dev/users.txt' },
    },
    // `bastion certs revoke --dir certs-dev` rewrites this CRL; the broker reloads it and kicks the holder.
    revocation: { crl: 'certs-dev/crl.pem' },
  };
}

/**
 * The tier that applies to a CSF category ('PR.AC') or subcategory ('PR.AC-3'): its entry in
 * `tiers`, else the profile-wide `tier`.
 */
export function tierFor(profile: Pick<Profile, 'tier' | 'tiers'>, category: string): Tier {
  return profile.tiers[category.slice(0, 5)] ?? profile.tier;
}
