import { isDeepStrictEqual } from 'node:util';
import { adminServer, trafficCounters } from '@bastion/admin';
import type { AdminServer, AdminServerOptions, AdminUpdate } from '@bastion/admin';
import type { ControlFactory, Reconfigurable, Service } from '../controls.js';
import { loadTls } from '../listeners.js';

/** The admin API as a broker service; `server.url` is where it listens once started. */
export interface AdminService extends Service {
  readonly server: AdminServer;
}

/** The options each admin service was built with (a reload reads the replacement's). */
const optionsOf = new WeakMap<object, AdminServerOptions>();

/**
 * The admin API (PR.AC-3 for its callers; its actions serve PR.AC-5, PR.SS-4, RS.RP-2, RS.RP-3,
 * ID.AM-1), from `admin`. Observe phase: its traffic counters run last, so they count what the
 * other controls let through. The server finds the acl, bans and passwords controls by name.
 *
 * A reload: the new options (tokens, certificates, TLS material re-read from its files, users file,
 * limits) are checked and, on a new address, a server is bound there while the reload is planned
 * (taken: the reload fails, the old address serves on); applied, they hold from the next request
 * and the old address stops listening (the request that asked for the reload is still answered).
 */
export const admin: ControlFactory = async ({ profile }) => {
  const a = profile.admin;
  if (!a) return undefined;
  const traffic = Object.assign(trafficCounters(), {
    reconfigure() {}, // counts whatever the settings: nothing to change
  });
  let options: AdminServerOptions = {
    host: a.host,
    port: a.port,
    tls: a.tls && (await loadTls(a.tls, 'admin')),
    tokens: a.tokens,
    certificates: { allow: a.certificates.allow },
    anonymous: a.anonymous,
    dev: a.dev,
    usersFile: profile.authentication.passwords?.file,
    traffic,
    maxBodySize: a.maxBodySize,
    authFailures: { perIp: a.authFailures.perIp ?? false, capacity: a.authFailures.capacity },
  };
  const server = adminServer(options);
  const next = (replacement: unknown): AdminServerOptions | undefined => {
    const o = typeof replacement === 'object' && replacement !== null ? optionsOf.get(replacement) : undefined;
    return o && { ...o, traffic }; // the counters in the broker's chain are this control's
  };
  const live: Reconfigurable = {
    // same settings, but the certificate, key, CA or CRL files changed on disk
    outdated(replacement) {
      const o = next(replacement);
      return o !== undefined && !isDeepStrictEqual(o.tls, options.tls);
    },
    async prepare(_next, change) {
      const o = next(change.replacement);
      return o && (await server.prepareUpdate(o));
    },
    async reconfigure(_next, change) {
      const o = next(change.replacement);
      await (change.prepared as AdminUpdate | undefined)?.commit();
      if (o) options = o;
    },
  };
  const service: AdminService & Reconfigurable = {
    name: 'admin',
    controls: ['PR.AC-3', 'ID.AM-1', 'PR.SS-4', 'RS.RP-2', 'RS.RP-3'],
    server,
    start: (broker) => server.start(broker),
    stop: () => server.close(),
    ...live,
  };
  optionsOf.set(service, options);
  return { phase: 'observe', middleware: [traffic], services: [service] };
};
