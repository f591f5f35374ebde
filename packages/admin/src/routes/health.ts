/** Liveness and what the API can do on this broker. */
import { aclOf, bansOf, passwordsOf } from '../host.js';
import type { Route } from './route.js';

export const healthRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/health',
    action: 'health',
    control: 'ID.AM-1',
    quiet: true,
    handle(ctx) {
      let clients = 0;
      for (const _ of ctx.host.clients()) clients++;
      return {
        status: 200,
        body: {
          status: 'ok',
          uptimeSeconds: Math.round((Date.now() - ctx.startedAt) / 1000),
          clients,
          controls: { acl: aclOf(ctx.host) !== undefined, bans: bansOf(ctx.host) !== undefined, users: ctx.users !== undefined, passwords: passwordsOf(ctx.host) !== undefined },
          actor: ctx.actor.id,
        },
      };
    },
  },
];
