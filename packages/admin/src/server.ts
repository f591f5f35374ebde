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
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { BastionError, normalizeAddress, secureContextOptions, tlsFailureReason } from '@bastion/core';
import type { SecurityEvent, TlsOptions } from '@bastion/core';
import { authenticate } from './auth.js';
import { AuthFailureLimiter } from './auth-failures.js';
import type { AuthFailureOptions } from './auth-failures.js';
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
  /**
   * Failed authentications allowed per remote address (default 10 per minute, 10,000 addresses
   * remembered); beyond them the address gets 429 until its window ends, credentials unchecked.
   */
  authFailures?: AuthFailureOptions;
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

/** What the options make of who may come in, checked: a bad combination throws BASTION_ERR_ADMIN_CONFIG. */
interface Config {
  readonly auth: AuthConfig;
  readonly users: UsersStore | undefined;
  readonly bindHost: string;
  readonly loopback: boolean;
}

function configOf(opts: AdminServerOptions): Config {
  const bindHost = opts.host ?? DEFAULT_ADMIN_HOST;
  const loopback = LOOPBACK.has(bindHost);
  const tokens = new TokenVerifier(opts.tokens ?? []);
  const allow = new Set(opts.certificates?.allow ?? []);
  const asksCerts = opts.tls !== undefined && (opts.tls.clientCertificate ?? 'none') !== 'none';
  if (allow.size > 0 && !asksCerts) throw configError('certificates.allow needs tls with clientCertificate optional or required (and a ca)');
  if (opts.anonymous) {
    if (!opts.dev) throw configError('anonymous access needs an explicit dev: true (development only)');
    if (!loopback) throw configError(`anonymous access is only allowed on a loopback host (127.0.0.1, ::1), not ${bindHost}`);
  } else if (tokens.size === 0 && allow.size === 0) {
    throw configError('no way in: add a token (`bastion admin token` makes one) or certificates.allow');
  }
  if (!loopback && opts.tls === undefined) throw configError(`host ${bindHost} is not loopback: the admin API needs tls there (tokens and passwords must not cross a network in clear text)`);
  return { auth: { tokens, allowCns: allow, anonymous: opts.anonymous === true }, users: opts.usersFile === undefined ? undefined : new UsersStore(opts.usersFile), bindHost, loopback };
}

/** New options prepared for a running admin API (`prepareUpdate`), not yet in force. */
export interface AdminUpdate {
  /** Whether a server was bound on a new address (the old one closes on commit). */
  readonly rebinds: boolean;
  /** Put the new options in force; on a new address, close the old server. Does not fail. */
  commit(): Promise<void>;
  /** Release the server bound on the new address, if any; the running API is untouched. */
  abort(): Promise<void>;
}

export class AdminServer {
  #opts: AdminServerOptions;
  #auth: AuthConfig;
  readonly #router = new Router(ROUTES);
  #users: UsersStore | undefined;
  #bindHost: string;
  #loopback: boolean;
  #server: http.Server | undefined;
  /** Servers bound for a reload that has not applied yet: they answer 503. */
  readonly #held = new WeakSet<http.Server>();
  #host: AdminHost | undefined;
  #logger: Logger | undefined;
  #startedAt = 0;
  readonly #failures: AuthFailureLimiter;

  constructor(opts: AdminServerOptions) {
    this.#opts = opts;
    const c = configOf(opts);
    this.#failures = new AuthFailureLimiter(opts.authFailures);
    this.#bindHost = c.bindHost;
    this.#loopback = c.loopback;
    this.#auth = c.auth;
    this.#users = c.users;
  }

  /** Start serving for this broker. */
  async start(host: AdminHost): Promise<void> {
    if (this.#server) throw new BastionError('BASTION_ERR_CLOSED', 'the admin API is already started');
    this.#host = host;
    this.#logger = this.#opts.logger ?? host.logger;
    this.#server = await this.#listen(this.#opts, this.#bindHost, false);
    this.#startedAt = Date.now();
    this.#logger.info({ url: this.url, tls: this.#opts.tls !== undefined, tokens: this.#auth.tokens.size, certificates: this.#auth.allowCns.size, anonymous: this.#auth.anonymous }, 'admin API listening');
  }

  /** An HTTP(S) server bound on the options' address; `held`: answering 503 until released. */
  async #listen(opts: AdminServerOptions, bindHost: string, held: boolean): Promise<http.Server> {
    const limits: http.ServerOptions = { requestTimeout: 30_000, headersTimeout: 10_000, keepAliveTimeout: 5_000, maxHeaderSize: 16 * 1024 };
    let server: http.Server | undefined;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (server !== undefined && this.#held.has(server)) {
        req.resume();
        sendJson(res, 503, { error: { code: 'unavailable', message: 'the admin API is being reconfigured' } }, { 'retry-after': '1' });
        return;
      }
      void this.#handle(req, res);
    };
    server = opts.tls ? https.createServer({ ...secureContextOptions(opts.tls), ...limits }, handler) : http.createServer(limits, handler);
    if (held) this.#held.add(server);
    server.maxConnections = 128;
    server.on('clientError', (_err, socket) => socket.destroy());
    if (server instanceof https.Server) {
      // a failed handshake (no or a bad client certificate under mutual TLS, no common TLS version …) is a refusal too
      server.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
        // Node closes a socket whose certificate failed verification and reports only "socket hang up"
        const unverified = socket.authorizationError;
        const error: { code?: string | undefined; message: string } = unverified && err.code === 'ECONNRESET' ? { message: `client certificate rejected: ${String(unverified)}` } : err;
        const detail = error.code === undefined ? {} : { code: error.code };
        this.#denied({ control: 'PR.AC-1', reason: tlsFailureReason(error), message: `TLS handshake failed: ${error.message}`, remoteAddress: normalizeAddress(socket.remoteAddress), detail });
      });
    }
    const port = opts.port ?? DEFAULT_ADMIN_PORT;
    const s = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => reject(new BastionError('BASTION_ERR_LISTEN', `admin API cannot listen on ${bindHost}:${port}: ${err.code ?? err.message}`, { cause: err }));
      s.once('error', onError);
      s.listen(port, bindHost, () => {
        s.off('error', onError);
        resolve();
      });
    });
    return s;
  }

  /**
   * New options for the running API (a profile reload), in two steps. Here, what can fail: the
   * options are checked and, when the address or the scheme (HTTP/HTTPS) changes, a server is bound
   * there, answering 503 until `commit()`. `commit()` puts tokens, certificates, users file, TLS
   * material and limits in force for the next request (a new address: the old server closes, its
   * open requests cut). A changed TLS handshake timeout on the same address cannot be applied
   * (BASTION_ERR_ADMIN_CONFIG). Not started yet: `commit()` only takes the options.
   */
  async prepareUpdate(opts: AdminServerOptions): Promise<AdminUpdate> {
    const next = { ...opts, logger: opts.logger ?? this.#opts.logger };
    const c = configOf(next);
    const running = this.#server;
    const rebinds =
      running !== undefined && (c.bindHost !== this.#bindHost || (next.port ?? DEFAULT_ADMIN_PORT) !== (this.#opts.port ?? DEFAULT_ADMIN_PORT) || (next.tls === undefined) !== (this.#opts.tls === undefined));
    const port = next.port ?? DEFAULT_ADMIN_PORT;
    if (rebinds && c.bindHost === this.#bindHost && port !== 0 && port === (this.#opts.port ?? DEFAULT_ADMIN_PORT)) {
      // the new server is bound before the old one closes: the same address cannot take both
      throw configError(`switching between HTTP and HTTPS on ${c.bindHost}:${port} cannot be done live (change the port with it, or restart)`);
    }
    if (running !== undefined && !rebinds && next.tls !== undefined && (next.tls.handshakeTimeout ?? 10_000) !== (this.#opts.tls?.handshakeTimeout ?? 10_000)) {
      throw configError('the TLS handshake timeout cannot change on a running server (change the port with it, or restart)');
    }
    if (running instanceof https.Server && !rebinds && next.tls !== undefined) {
      // what commit installs must not fail there: OpenSSL checks the set now (a key that does not match …)
      try {
        tls.createSecureContext(secureContextOptions(next.tls));
      } catch (err) {
        throw configError(`the TLS certificate, key, CA or CRL cannot be used: ${(err as Error).message}`);
      }
    }
    const fresh = rebinds ? await this.#listen(next, c.bindHost, true) : undefined;
    return {
      rebinds,
      commit: async () => {
        this.#opts = next;
        this.#auth = c.auth;
        this.#users = c.users;
        this.#bindHost = c.bindHost;
        this.#loopback = c.loopback;
        this.#failures.configure(next.authFailures ?? {}); // the failures counted so far are kept
        if (fresh !== undefined) {
          this.#server = fresh;
          this.#held.delete(fresh);
          this.#logger?.info({ url: this.url }, 'admin API moved');
          // not awaited, nor cut: the request that asked for this reload is answered by the old server
          if (running !== undefined) retire(running);
        } else if (running instanceof https.Server && next.tls !== undefined) {
          const t = secureContextOptions(next.tls);
          running.setSecureContext(t);
          // read per connection by Node's TLS server: the next handshake asks (or insists) accordingly
          const r = running as https.Server & { requestCert: boolean; rejectUnauthorized: boolean };
          r.requestCert = t.requestCert === true;
          r.rejectUnauthorized = t.rejectUnauthorized === true;
        }
      },
      abort: async () => {
        if (fresh !== undefined) await closeServer(fresh);
      },
    };
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
    await closeServer(server);
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
      const locked = this.#failures.lockedFor(remoteAddress);
      // first: a locked-out address gets no answer about its credentials, right or wrong
      if (locked > 0) throw new HttpError(429, 'too-many-requests', 'too many failed authentications from this address; try again later', { 'retry-after': String(Math.ceil(locked / 1000)) });
      if (req.headers.origin !== undefined) this.#refuse(403, 'forbidden', 'browser requests are not accepted (Origin header present)', remoteAddress, method, shown);
      if (this.#loopback && req.headers.host !== undefined && !LOOPBACK.has(hostName(req.headers.host)) && hostName(req.headers.host) !== this.#bindHost) {
        this.#refuse(403, 'forbidden', `Host "${req.headers.host.slice(0, 256)}" is not this loopback endpoint`, remoteAddress, method, shown);
      }
      const auth = authenticate(req, this.#auth);
      if (!auth.ok) {
        const lockout = this.#failures.fail(remoteAddress);
        if (lockout !== undefined) this.#lockedOut(remoteAddress, lockout);
        this.#refuse(401, 'unauthorized', auth.reason, remoteAddress, method, shown, auth.who, { 'www-authenticate': 'Bearer realm="bastion-admin"' });
      }
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
      if (e.status === 401 || e.status === 403 || e.status === 413 || e.status === 429) res.setHeader('connection', 'close');
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

  /** The failure that spent an address's budget: one event per lockout (its refused requests make none). */
  #lockedOut(remoteAddress: string, ms: number): void {
    const spec = this.#failures.budget;
    if (spec === undefined) return;
    const event: SecurityEvent = {
      type: 'rate.limited',
      time: Date.now(),
      control: 'PR.SS-5',
      source: 'admin',
      remoteAddress,
      listener: 'admin',
      reason: 'rate-limited',
      message: `admin.authFailures.perIp exceeded (${spec.rate} per ${spec.per} ms): refuse for ${Math.ceil(ms / 1000)} s`,
      detail: { limit: 'admin.authFailures.perIp', consequence: 'refuse', rate: spec.rate, per: spec.per, retryAfter: Math.ceil(ms / 1000), suppressed: 0 },
    };
    this.#logger?.warn({ securityEvent: event }, 'rate.limited');
    this.#host?.events.emit(event);
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

/** Stop listening now; let requests in flight finish (at most 10 s), then close what is left. */
function retire(server: http.Server): void {
  server.close();
  server.closeIdleConnections();
  const t = setTimeout(() => server.closeAllConnections(), 10_000);
  t.unref();
  server.once('close', () => clearTimeout(t));
}

async function closeServer(server: http.Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

export function adminServer(opts: AdminServerOptions): AdminServer {
  return new AdminServer(opts);
}
