/** One admin endpoint: method, path pattern, the CSF control its action serves, and its handler. */
import type { AdminHost } from '../host.js';
import type { Actor } from '../auth.js';
import type { TrafficCounters } from '../traffic.js';
import type { UsersStore } from '../users.js';

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface RouteContext {
  readonly host: AdminHost;
  readonly actor: Actor;
  /** Decoded `:name` segments of the path, by name. */
  readonly params: Readonly<Record<string, string>>;
  /** The parsed JSON body (undefined when there was none); validate before use. */
  readonly body: unknown;
  readonly traffic: TrafficCounters | undefined;
  readonly users: UsersStore | undefined;
  /** When the admin API started (epoch ms). */
  readonly startedAt: number;
}

export interface Reply {
  readonly status: number;
  readonly body?: unknown;
  /** What the `admin.action` event says about this action (never a secret). */
  readonly message?: string;
  readonly detail?: Readonly<Record<string, unknown>>;
}

export interface Route {
  readonly method: Method;
  /** `/v1/clients/:id/disconnect` */
  readonly path: string;
  /** Short action name for events: `clients.disconnect`. */
  readonly action: string;
  /** CSF subcategory the action serves, for the event. */
  readonly control: string;
  /** Reading the body is skipped for routes that take none. */
  readonly body?: boolean;
  /** No `admin.action` event (health checks are polled). */
  readonly quiet?: boolean;
  handle(ctx: RouteContext): Reply | Promise<Reply>;
}
