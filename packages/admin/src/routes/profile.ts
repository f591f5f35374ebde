/**
 * The profile in force and its reload:
 *  - GET /v1/profile/effective — the configuration the broker runs (after any reload), secrets
 *    redacted, with the CSF controls each middleware and service implements: what
 *    `bastion profile assess --live` measures (ID.RM-3);
 *  - POST /v1/reload — re-read the profile and everything it points to, applied whole or not at
 *    all (`bastion reload --url`). 200 with `{ ok, source, changes, issues }` either way: a refused
 *    reload is a result, and `issues` says why.
 *
 * Both need a host that has them (Bastion from @bastion/broker): checked by shape, as for the
 * controls in host.ts; a core broker without them answers 404 not-enabled.
 */
import { HttpError } from '../http.js';
import type { AdminHost } from '../host.js';
import type { Route } from './route.js';

interface ProfileHost {
  effectiveProfile(): unknown;
  reload(): Promise<{ ok: boolean; source: string; changes: readonly string[]; issues: ReadonlyArray<{ path: string; message: string }> }>;
}

function profileHost(host: AdminHost): Partial<ProfileHost> {
  return host as unknown as Partial<ProfileHost>;
}

export const profileRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/profile/effective',
    action: 'profile.effective',
    control: 'ID.RM-3',
    handle(ctx) {
      const h = profileHost(ctx.host);
      if (typeof h.effectiveProfile !== 'function') throw new HttpError(404, 'not-enabled', 'this broker has no framework profile');
      return { status: 200, body: h.effectiveProfile(), message: 'effective profile read' };
    },
  },
  {
    method: 'POST',
    path: '/v1/reload',
    action: 'profile.reload',
    control: 'RC.RP-1',
    async handle(ctx) {
      const h = profileHost(ctx.host);
      if (typeof h.reload !== 'function') throw new HttpError(404, 'not-enabled', 'this broker cannot reload a profile');
      const result = await h.reload();
      return {
        status: 200,
        body: result,
        message: result.ok ? `profile reloaded from ${result.source}` : `profile reload refused: ${result.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
        detail: { ok: result.ok, changes: result.changes.length, issues: result.issues.length },
      };
    },
  },
];
