/**
 * Users of password authentication (PR.AC-3, RS.RP-2). Changes are written to the users file and
 * applied live; removing a user or changing their password ends their sessions at once.
 */
import type { ClientInfo } from '@bastion/core';
import { HttpError, parseBody } from '../http.js';
import { passwordsOf } from '../host.js';
import { newUserBody, passwordBody } from '../schemas.js';
import type { UsersStore } from '../users.js';
import type { Route, RouteContext } from './route.js';

function store(ctx: RouteContext): UsersStore {
  if (!ctx.users) throw new HttpError(404, 'not-enabled', 'password authentication with a users file is not enabled on this broker');
  return ctx.users;
}

function sessionsOf(ctx: RouteContext, username: string): number {
  let n = 0;
  for (const c of ctx.host.clients() as Iterable<ClientInfo>) if (c.username === username) n++;
  return n;
}

export const userRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/users',
    action: 'users.list',
    control: 'PR.AC-3',
    async handle(ctx) {
      const users = (await store(ctx).list()).map((u) => ({ username: u.username, groups: u.groups, sessions: sessionsOf(ctx, u.username) }));
      return { status: 200, body: { users }, detail: { count: users.length } };
    },
  },
  {
    method: 'POST',
    path: '/v1/users',
    action: 'users.add',
    control: 'PR.AC-3',
    body: true,
    async handle(ctx) {
      const s = store(ctx);
      const { username, password, token, groups } = parseBody(newUserBody, ctx.body);
      const generated = await s.add(username, token ? { token } : { password: password as string }, groups ?? [], passwordsOf(ctx.host));
      // a generated token is in this response only: never in the event, the log or the file
      return {
        status: 201,
        body: { user: { username, groups: groups ?? [] }, ...(generated === undefined ? {} : { token: generated }) },
        message: `user ${username} added`,
        detail: { username, groups: groups ?? [], credential: generated === undefined ? 'password' : 'device-token' },
      };
    },
  },
  {
    method: 'DELETE',
    path: '/v1/users/:name',
    action: 'users.remove',
    control: 'RS.RP-2',
    async handle(ctx) {
      const s = store(ctx);
      const username = ctx.params.name as string;
      const sessions = sessionsOf(ctx, username);
      await s.remove(username, passwordsOf(ctx.host));
      return { status: 200, body: { removed: username, disconnected: sessions }, message: `user ${username} removed`, detail: { username, disconnected: sessions } };
    },
  },
  {
    method: 'POST',
    path: '/v1/users/:name/password',
    action: 'users.password',
    control: 'RS.RP-2',
    body: true,
    async handle(ctx) {
      const s = store(ctx);
      const username = ctx.params.name as string;
      const { password, token } = parseBody(passwordBody, ctx.body);
      const sessions = sessionsOf(ctx, username);
      const generated = await s.setPassword(username, token ? { token } : { password: password as string }, passwordsOf(ctx.host));
      return {
        status: 200,
        body: { username, disconnected: sessions, ...(generated === undefined ? {} : { token: generated }) },
        message: `password of ${username} changed`,
        detail: { username, disconnected: sessions, credential: generated === undefined ? 'password' : 'device-token' },
      };
    },
  },
];
