/**
 * Response actions for people (RS.RP-2..6): the same actions response policies run, through the
 * response engine, so each is recorded and audited alike.
 */
import { HttpError, parseBody } from '../http.js';
import { responsesOf } from '../host.js';
import type { ResponsesControl } from '../host.js';
import { blockTopicBody, lockdownBody, revokeBody, shutdownBody } from '../schemas.js';
import type { Route, RouteContext } from './route.js';

function responses(ctx: RouteContext): ResponsesControl {
  const r = responsesOf(ctx.host);
  if (!r) throw new HttpError(404, 'not-enabled', 'response actions are not available on this broker (no "responses" middleware)');
  return r;
}
const actor = (ctx: RouteContext) => `admin ${ctx.actor.id}`;

export const responseRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/responses',
    action: 'responses.list',
    control: 'RS.RP-3',
    handle(ctx) {
      const r = responses(ctx);
      return { status: 200, body: { lockedDown: r.lockedDown, blockedTopics: r.blockedTopics(), history: r.history() } };
    },
  },
  {
    method: 'POST',
    path: '/v1/responses/block-topic',
    action: 'responses.block-topic',
    control: 'RS.RP-4',
    body: true,
    handle(ctx) {
      const { topic, duration, reason } = parseBody(blockTopicBody, ctx.body);
      const record = responses(ctx).blockTopic(topic, { actor: actor(ctx), ...(reason === undefined ? {} : { reason }), ...(duration === undefined ? {} : { duration }) });
      return { status: 201, body: { action: record }, message: `blocked topic ${topic}`, detail: { topic } };
    },
  },
  {
    // topics hold '/', so the topic travels in the body rather than the path
    method: 'POST',
    path: '/v1/responses/unblock-topic',
    action: 'responses.unblock-topic',
    control: 'RS.RP-4',
    body: true,
    handle(ctx) {
      const { topic } = parseBody(blockTopicBody.pick({ topic: true }), ctx.body);
      if (!responses(ctx).unblockTopic(topic, { actor: actor(ctx) })) throw new HttpError(404, 'not-found', `topic "${topic}" is not blocked`);
      return { status: 200, body: { unblocked: topic }, message: `unblocked topic ${topic}`, detail: { topic } };
    },
  },
  {
    method: 'POST',
    path: '/v1/responses/lockdown',
    action: 'responses.lockdown',
    control: 'RS.RP-5',
    body: true,
    handle(ctx) {
      const b = parseBody(lockdownBody, ctx.body) ?? {};
      const record = responses(ctx).lockdown({
        actor: actor(ctx),
        ...(b.reason === undefined ? {} : { reason: b.reason }),
        ...(b.duration === undefined ? {} : { duration: b.duration }),
        ...(b.disconnectOthers === undefined ? {} : { disconnectOthers: b.disconnectOthers }),
      });
      return { status: 201, body: { action: record }, message: 'lockdown' };
    },
  },
  {
    method: 'DELETE',
    path: '/v1/responses/lockdown',
    action: 'responses.lift-lockdown',
    control: 'RS.RP-5',
    handle(ctx) {
      if (!responses(ctx).liftLockdown({ actor: actor(ctx) })) throw new HttpError(404, 'not-found', 'the broker is not in lockdown');
      return { status: 200, body: { lockedDown: false }, message: 'lockdown lifted' };
    },
  },
  {
    method: 'POST',
    path: '/v1/responses/revoke',
    action: 'responses.revoke',
    control: 'RS.RP-2',
    body: true,
    handle(ctx) {
      const { username, reason } = parseBody(revokeBody, ctx.body);
      const record = responses(ctx).revoke(username, { actor: actor(ctx), ...(reason === undefined ? {} : { reason }) });
      return { status: 201, body: { action: record }, message: `revoked the credential of ${username}`, detail: { username } };
    },
  },
  {
    method: 'POST',
    path: '/v1/responses/shutdown',
    action: 'responses.shutdown',
    control: 'RS.RP-6',
    body: true,
    handle(ctx) {
      const { reason } = parseBody(shutdownBody, ctx.body);
      const record = responses(ctx).shutdown({ actor: actor(ctx), ...(reason === undefined ? {} : { reason }) });
      return { status: 202, body: { action: record }, message: 'shutdown requested' };
    },
  },
];
