/**
 * The admin API server: HTTP on loopback by default, HTTPS (optionally mutual TLS) with the core's
 * hardened TLS settings, every request authenticated (token or client certificate), every action a
 * security event with the caller's identity (`admin.action`), every refusal too (`admin.denied`).
 *
 * Not for browsers: no CORS headers, a request carrying `Origin` is refused, and on loopback the
 * Host header must name a loopback host (DNS rebinding).
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { BastionError, normalizeAddress, secureContextOptions } from '@bastion/core';
import type { SecurityEvent, TlsOptions } from '@bastion/core';
import { authenticate } from './auth.js';
import type { Actor, AuthConfig } from './auth.js';
import { HttpError, readJson, sendError, sendJson } from './http.js';
import type { AdminHost } from './host.js';
import { Router } from './router.js';
import type { Route } from './routes/route.js';
import { aclRoutes } from './routes/acl.js';
import { banRoutes } from './routes/bans.js';
import { clientRoutes } from './routes/clients.js';
import { healthRoutes } from './routes/health.js';
import { userRoutes } from './routes/users.js';
import { profileRoutes } from './routes/profile.js';
import { identifyRoutes } from './routes/identify.js';
import { responseRoutes } from './routes/responses.js';
import { TokenVerifier } from './tokens.js';
import type { AdminTokenSpec } from './tokens.js';
import type { TrafficCounters } from './traffic.js';
import { UsersStore } from './users.js';

export const DEFAULT_ADMIN_HOST = '127.0.0.1';
/** Next to MQTT over TLS (8883); not a port Bastion's listeners use by default. */
export const DEFAULT_ADMIN_PORT = 8884;
export const DEFAULT_MAX_BODY = 1024 * 1024;
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export interface AdminServerOptions {
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** Port (default 8884; 0 = any free port). */
  port?: number;
  /** HTTPS with these settings (certificate, key, and `ca` + `clientCertificate` for mutual TLS). */
  tls?: TlsOptions;
  /** Bearer tokens, by their sha256 hash. */
  tokens?: readonly AdminTokenSpec[];
  /** Client-certificate CNs allowed in (needs `tls` asking for client certificates). */
  certificates?: { allow: readonly string[] };
  /** No credentials needed: only with `dev: true` on a loopback host. */
  anonymous?: boolean;
  dev?: boolean;
  /** The users file of password authentication, for the /v1/users endpoints. */
  usersFile?: string;
  /** Per-client message and byte counters (the `trafficCounters()` middleware, which must be in the broker). */
  traffic?: TrafficCounters;
  /** Largest request body in bytes (default 1 MiB). */
  maxBodySize?: number;
  /** Logger; default the broker's. */
  logger?: Logger;
}

const ROUTES: readonly Route[] = [...healthRoutes, ...clientRoutes, ...banRoutes, ...aclRoutes, ...userRoutes, ...identifyRoutes, ...profileRoutes, ...responseRoutes];

function configError(message: string): BastionError {
  return new BastionError('BASTION_ERR_ADMIN_CONFIG', `admin API: ${message}`);
}

/** A socket's host part of a Host header: `[::1]:8884` → `::1`, `localhost:8884` → `localhost`. */
function hostName(header: string): string {
  if (header.startsWith('[')) return header.slice(1, header.indexOf(']'));
  const colon = header.lastIndexOf(':');
  return (colon === -1 ? header : header.slice(0, colon)).toLowerCase();
}

export class AdminServer {
  readonly #opts: AdminServerOptions;
  readonly #auth: AuthConfig;
  readonly #router = new Router(ROUTES);
  readonly #users: UsersStore | undefined;
  readonly #bindHost: string;
  readonly #loopback: boolean;
  #server: http.Server | undefined;
  #host: AdminHost | undefined;
  #logger: Logger | undefined;
  #startedAt = 0;

  constructor(opts: AdminServerOptions) {
    this.#opts = opts;
    this.#bindHost = opts.host ?? DEFAULT_ADMIN_HOST;
    this.#loopback = LOOPBACK.has(this.#bindHost);
    const tokens = new TokenVerifier(opts.tokens ?? []);
    const allow = new Set(opts.certificates?.allow ?? []);
    const asksCerts = opts.tls !== undefined && (opts.tls.clientCertificate ?? 'none') !== 'none';
    if (allow.size > 0 && !asksCerts) throw configError('certificates.allow needs tls with clientCertificate optional or required (and a ca)');
    if (opts.anonymous) {
      if (!opts.dev) throw configError('anonymous access needs an explicit dev: true (development only)');
      if (!this.#loopback) throw configError(`anonymous access is only allowed on a loopback host (127.0.0.1, ::1), not ${this.#bindHost}`);
    } else if (tokens.size === 0 && allow.size === 0) {
      throw configError('no way in: add a token (`bastion admin token` makes one) or certificates.allow');
    }
    if (!this.#loopback && opts.tls === undefined) throw configError(`host ${this.#bindHost} is not loopback: the admin API needs tls there (tokens and passwords must not cross a network in clear text)`);
    this.#auth = { tokens, allowCns: allow, anonymous: opts.anonymous === true };
    this.#users = opts.usersFile === undefined ? undefined : new UsersStore(opts.usersFile);
  }

  /** Start serving for this broker. */
  async start(host: AdminHost): Promise<void> {
    if (this.#server) throw new BastionError('BASTION_ERR_CLOSED', 'the admin API is already started');
    this.#host = host;
    this.#logger = this.#opts.logger ?? host.logger;
    const limits: http.ServerOptions = { requestTimeout: 30_000, headersTimeout: 10_000, keepAliveTimeout: 5_000, maxHeaderSize: 16 * 1024 };
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.#handle(req, res);
    const server = this.#opts.tls ? https.createServer({ ...secureContextOptions(this.#opts.tls), ...limits }, handler) : http.createServer(limits, handler);
    server.maxConnections = 128;
    server.on('clientError', (_err, socket) => socket.destroy());
    if (server instanceof https.Server) {
      // a failed handshake (no or a bad client certificate under mutual TLS) is a refusal too
      server.on('tlsClientError', (err, socket) => {
        this.#denied({ control: 'PR.AC-1', reason: 'certificate-rejected', message: `TLS handshake failed: ${err.message}`, remoteAddress: normalizeAddress(socket.remoteAddress), detail: {} });
      });
    }
    const port = this.#opts.port ?? DEFAULT_ADMIN_PORT;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => reject(new BastionError('BASTION_ERR_LISTEN', `admin API cannot listen on ${this.#bindHost}:${port}: ${err.code ?? err.message}`, { cause: err }));
      server.once('error', onError);
      server.listen(port, this.#bindHost, () => {
        server.off('error', onError);
        resolve();
      });
    });
    this.#server = server;
    this.#startedAt = Date.now();
    this.#logger.info({ url: this.url, tls: this.#opts.tls !== undefined, tokens: this.#auth.tokens.size, certificates: this.#auth.allowCns.size, anonymous: this.#auth.anonymous }, 'admin API listening');
  }

  address(): AddressInfo {
    if (!this.#server) throw new BastionError('BASTION_ERR_NOT_STARTED', 'the admin API is not started');
    return this.#server.address() as AddressInfo;
  }

  /** `http://127.0.0.1:8884` / `https://[::1]:8884` */
  get url(): string {
    const a = this.address();
    const host = a.address.includes(':') ? `[${a.address}]` : a.address;
    return `${this.#opts.tls ? 'https' : 'http'}://${host}:${a.port}`;
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const host = this.#host as AdminHost;
    const remoteAddress = normalizeAddress(req.socket.remoteAddress);
    const method = req.method ?? 'GET';
    const pathname = (req.url ?? '/').split('?')[0] as string; // a query string is never logged: it might carry a secret
    const shown = pathname.length > 256 ? `${pathname.slice(0, 256)}…` : pathname; // bounded in events and logs
    let actor: Actor | undefined;
    let route: Route | undefined;
    try {
      if (req.headers.origin !== undefined) this.#refuse(403, 'forbidden', 'browser requests are not accepted (Origin header present)', remoteAddress, method, shown);
      if (this.#loopback && req.headers.host !== undefined && !LOOPBACK.has(hostName(req.headers.host)) && hostName(req.headers.host) !== this.#bindHost) {
        this.#refuse(403, 'forbidden', `Host "${req.headers.host.slice(0, 256)}" is not this loopback endpoint`, remoteAddress, method, shown);
      }
      const auth = authenticate(req, this.#auth);
      if (!auth.ok) this.#refuse(401, 'unauthorized', auth.reason, remoteAddress, method, shown, auth.who, { 'www-authenticate': 'Bearer realm="bastion-admin"' });
      actor = auth.actor;
      const m = this.#router.match(method, pathname);
      route = m.route;
      if (actor.readOnly && method !== 'GET') this.#refuse(403, 'forbidden', `${actor.id} is read-only`, remoteAddress, method, shown, actor.id);
      const body = route.body ? await readJson(req, this.#opts.maxBodySize ?? DEFAULT_MAX_BODY) : undefined;
      if (!route.body) req.resume();
      const reply = await route.handle({ host, actor, params: m.params, body, traffic: this.#opts.traffic, users: this.#users, startedAt: this.#startedAt });
      sendJson(res, reply.status, reply.body);
      if (!route.quiet) this.#action(route, actor, remoteAddress, method, shown, reply.status, reply.message, reply.detail);
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(500, 'internal-error', 'the request failed; see the broker log');
      if (!(err instanceof HttpError)) this.#logger?.error({ err, method, path: shown }, 'admin request failed');
      // refused before the body was read (unauthenticated, or too big): answer, then close rather than read the rest
      if (e.status === 401 || e.status === 403 || e.status === 413) res.setHeader('connection', 'close');
      else req.resume();
      sendError(res, e);
      if (actor !== undefined && !(route?.quiet && e.status < 500)) {
        this.#action(route, actor, remoteAddress, method, shown, e.status, `failed: ${e.message}`, undefined);
      }
    }
  }

  /** Refuse a request before it is authenticated (or a read-only caller's change): answer and record `admin.denied`. */
  #refuse(status: number, code: 'unauthorized' | 'forbidden', reason: string, remoteAddress: string, method: string, path: string, who?: string, headers: Record<string, string> = {}): never {
    this.#denied({ control: 'PR.AC-3', reason: 'not-authorized', message: reason, remoteAddress, detail: { method, path, status, ...(who === undefined ? {} : { actor: who }) } });
    throw new HttpError(status, code, status === 401 ? 'authentication required' : reason, headers);
  }

  #denied(e: Pick<SecurityEvent, 'control' | 'reason' | 'message' | 'remoteAddress' | 'detail'>): void {
    const event: SecurityEvent = { type: 'admin.denied', time: Date.now(), source: 'admin', listener: 'admin', ...e };
    this.#logger?.warn({ securityEvent: event }, 'admin.denied');
    this.#host?.events.emit(event);
  }

  #action(route: Route | undefined, actor: Actor, remoteAddress: string, method: string, path: string, status: number, message: string | undefined, detail: Readonly<Record<string, unknown>> | undefined): void {
    const event: SecurityEvent = {
      type: 'admin.action',
      time: Date.now(),
      control: route?.control ?? 'PR.AC-3',
      source: 'admin',
      remoteAddress,
      listener: 'admin',
      message: message ?? route?.action ?? `${method} ${path}`,
      detail: { actor: actor.id, via: actor.via, action: route?.action ?? null, method, path, status, ...detail },
    };
    if (status >= 400) this.#logger?.warn({ securityEvent: event }, 'admin.action');
    else this.#logger?.info({ securityEvent: event }, 'admin.action');
    this.#host?.events.emit(event);
  }
}

export function adminServer(opts: AdminServerOptions): AdminServer {
  return new AdminServer(opts);
}
