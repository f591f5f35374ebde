/** Bans (PR.SS-4, RS.RP-3): list, add with an expiry ("15m", "24h", "permanent"), lift. */
import type { Ban } from '@bastion/middleware';
import { HttpError, parseBody } from '../http.js';
import { bansOf } from '../host.js';
import type { BansControl } from '../host.js';
import { banBody } from '../schemas.js';
import type { Route, RouteContext } from './route.js';

export function banView(b: Ban) {
  return {
    id: b.id,
    ip: b.ip ?? null,
    clientId: b.clientId ?? null,
    username: b.username ?? null,
    reason: b.reason ?? null,
    actor: b.actor ?? null,
    createdAt: new Date(b.createdAt).toISOString(),
    expiresAt: b.expiresAt === undefined ? null : new Date(b.expiresAt).toISOString(),
  };
}

function bans(ctx: RouteContext): BansControl {
  const b = bansOf(ctx.host);
  if (!b) throw new HttpError(404, 'not-enabled', 'bans are not enabled on this broker (no "bans" middleware)');
  return b;
}

export const banRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/bans',
    action: 'bans.list',
    control: 'PR.SS-4',
    handle(ctx) {
      const list = bans(ctx).list().map(banView);
      return { status: 200, body: { bans: list }, detail: { count: list.length } };
    },
  },
  {
    method: 'POST',
    path: '/v1/bans',
    action: 'bans.add',
    control: 'PR.SS-4',
    body: true,
    handle(ctx) {
      const control = bans(ctx);
      const { duration, reason, ip, clientId, username } = parseBody(banBody, ctx.body);
      const target = { ...(ip === undefined ? {} : { ip }), ...(clientId === undefined ? {} : { clientId }), ...(username === undefined ? {} : { username }) };
      let ban: Ban;
      try {
        ban = control.ban(target, { duration, reason, actor: `admin ${ctx.actor.id}` });
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'BASTION_ERR_BAN') throw new HttpError(400, 'bad-request', (err as Error).message);
        if (code === 'BASTION_ERR_BAN_LIMIT') throw new HttpError(409, 'conflict', (err as Error).message);
        throw err;
      }
      const view = banView(ban);
      return { status: 201, body: { ban: view }, message: `banned ${[ip, clientId, username].filter(Boolean).join(' ')}`, detail: { ban: view } };
    },
  },
  {
    method: 'DELETE',
    path: '/v1/bans/:id',
    action: 'bans.remove',
    control: 'PR.SS-4',
    handle(ctx) {
      const id = ctx.params.id as string;
      if (!bans(ctx).unban(id, `admin ${ctx.actor.id}`)) throw new HttpError(404, 'not-found', `no ban with id "${id}"`);
      return { status: 200, body: { removed: id }, message: `ban ${id} lifted`, detail: { banId: id } };
    },
  },
];
