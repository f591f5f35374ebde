import { adminServer, trafficCounters } from '@bastion/admin';
import type { AdminServer } from '@bastion/admin';
import type { ControlFactory, Service } from '../controls.js';
import { loadTls } from '../listeners.js';

/** The admin API as a broker service; `server.url` is where it listens once started. */
export interface AdminService extends Service {
  readonly server: AdminServer;
}

/**
 * The admin API (PR.AC-3 for its callers; its actions serve PR.AC-5, PR.SS-4, RS.RP-2, RS.RP-3,
 * ID.AM-1), from `admin`. Observe phase: its traffic counters run last, so they count what the
 * other controls let through. The server finds the acl, bans and passwords controls by name.
 */
export const admin: ControlFactory = async ({ profile }) => {
  const a = profile.admin;
  if (!a) return undefined;
  const traffic = trafficCounters();
  const server = adminServer({
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
  });
  const service: AdminService = { name: 'admin', controls: ['PR.AC-3', 'ID.AM-1', 'PR.SS-4', 'RS.RP-2', 'RS.RP-3'], server, start: (broker) => server.start(broker), stop: () => server.close() };
  return { phase: 'observe', middleware: [traffic], services: [service] };
};
