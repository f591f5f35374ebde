/** Connected clients (ID.AM-1) and kicking one (RS.RP-3). */
import type { ClientInfo } from '@bastion/core';
import { HttpError, parseBody } from '../http.js';
import { disconnectBody } from '../schemas.js';
import type { Route, RouteContext } from './route.js';

export interface ClientView {
  id: string;
  username: string | null;
  groups: readonly string[];
  remoteAddress: string;
  remotePort: number;
  /** The load balancer the client came through (a listener with `proxyProtocol`); null when direct. */
  proxy: { address: string; port: number } | null;
  listener: string;
  transport: string;
  protocolVersion: number;
  clean: boolean;
  keepalive: number;
  connectedAt: string | null;
  tls: { protocol: string | null; cipher: string } | null;
  certificate: {
    commonName: string | null;
    subject: Readonly<Record<string, string | string[]>>;
    issuer: Readonly<Record<string, string | string[]>>;
    serial: string;
    fingerprint256: string;
    validFrom: string;
    validTo: string;
  } | null;
  /** Topic filters and QoS; null when the broker cannot tell. */
  subscriptions: Array<{ topic: string; qos: number }> | null;
  messagesIn: number;
  bytesIn: number;
  messagesOut: number;
  bytesOut: number;
}

export function clientView(ctx: Pick<RouteContext, 'host' | 'traffic'>, c: ClientInfo): ClientView {
  const cert = c.certificate;
  const subs = ctx.host.subscriptionsOf?.(c.id);
  const t = ctx.traffic?.of(c) ?? { messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0 };
  return {
    id: c.id,
    username: c.username ?? null,
    groups: c.groups,
    remoteAddress: c.remoteAddress,
    remotePort: c.remotePort,
    proxy: c.proxy ? { address: c.proxy.address, port: c.proxy.port } : null,
    listener: c.listener,
    transport: c.transport,
    protocolVersion: c.protocolVersion,
    clean: c.clean,
    keepalive: c.keepalive,
    connectedAt: c.connectedAt > 0 ? new Date(c.connectedAt).toISOString() : null,
    tls: c.tls ? { protocol: c.tls.protocol, cipher: c.tls.cipher } : null,
    certificate: cert
      ? {
          commonName: cert.commonName ?? null,
          subject: cert.subject,
          issuer: cert.issuer,
          serial: cert.serial,
          fingerprint256: cert.fingerprint256,
          validFrom: cert.validFrom.toISOString(),
          validTo: cert.validTo.toISOString(),
        }
      : null,
    subscriptions: subs === undefined ? null : subs.map((s) => ({ topic: s.topic, qos: s.qos })),
    ...t,
  };
}

function connected(ctx: RouteContext): ClientInfo {
  const id = ctx.params.id as string;
  const c = ctx.host.client(id);
  if (!c) throw new HttpError(404, 'not-found', `no connected client with id "${id}"`);
  return c;
}

export const clientRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/clients',
    action: 'clients.list',
    control: 'ID.AM-1',
    handle(ctx) {
      const clients = [...ctx.host.clients()].map((c) => clientView(ctx, c));
      clients.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      return { status: 200, body: { clients }, detail: { count: clients.length } };
    },
  },
  {
    method: 'GET',
    path: '/v1/clients/:id',
    action: 'clients.get',
    control: 'ID.AM-1',
    handle(ctx) {
      return { status: 200, body: clientView(ctx, connected(ctx)), detail: { clientId: ctx.params.id } };
    },
  },
  {
    method: 'POST',
    path: '/v1/clients/:id/disconnect',
    action: 'clients.disconnect',
    control: 'RS.RP-3',
    body: true,
    handle(ctx) {
      const note = parseBody(disconnectBody, ctx.body)?.reason;
      const c = connected(ctx);
      const view = { id: c.id, username: c.username ?? null, remoteAddress: c.remoteAddress };
      const detail = `by admin ${ctx.actor.id}${note ? `: ${note}` : ''}`;
      if (!ctx.host.disconnect(c.id, 'kicked', detail)) throw new HttpError(404, 'not-found', `no connected client with id "${c.id}"`);
      return { status: 200, body: { disconnected: view }, message: `client ${c.id} disconnected`, detail: { clientId: c.id, username: c.username, remoteAddress: c.remoteAddress, note } };
    },
  },
];
