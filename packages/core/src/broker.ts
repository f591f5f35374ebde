/**
 * The core broker: Aedes, wrapped so that an ordered middleware list decides every connection,
 * authentication, publish, subscribe and delivery, and every decision is a security event.
 * It knows nothing of profiles, stores or particular controls: those are injected.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { Aedes } from 'aedes';
import type { AedesOptions, Client as AedesClient } from 'aedes';
import mqttPacket from 'mqtt-packet';
import { pino } from 'pino';
import type { Logger } from 'pino';
import type {
  Accepted,
  AuthVerdict,
  BrokerContext,
  ClientInfo,
  ConnectionInfo,
  ConnectPacketInfo,
  Credentials,
  Denial,
  DisconnectReason,
  Middleware,
  PublishPacket,
  Subscription,
  Verdict,
} from './contract.js';
import { deny, isDenial } from './contract.js';
import { chainOf, lastRun, runVerdictChain } from './compose.js';
import type { AsyncOutcome, Chain } from './compose.js';
import { SecurityEventBus } from './events.js';
import type { SecurityEvent, SecurityEventType } from './events.js';
import { LiveClient, kKeepalive, kWire } from './client.js';
import { ConnectionCounter } from './connection-limits.js';
import type { AcceptCheck, ConnectionLimitName, ConnectionLimits } from './connection-limits.js';
import { normalizeAddress } from './address.js';
import { startListener } from './listeners.js';
import type { Listener, ListenerOptions, TlsOptions } from './listeners.js';
import { guardPacketSize } from './packet-guard.js';
import { REASON_CODES, tlsFailureReason } from './reasons.js';
import type { DenyReason } from './reasons.js';
import { BastionError } from './errors.js';
import { coreGuards } from './guards.js';

export interface CoreBrokerOptions {
  listeners: ListenerOptions[];
  /** Ordered: earlier middleware run first; the first denial wins. */
  middleware?: Middleware[];
  logger?: Logger;
  /** An Aedes persistence (memory when omitted). */
  persistence?: unknown;
  /** An mqemitter (in-process when omitted). */
  mq?: unknown;
  /** Largest MQTT packet accepted, in bytes (default 256 KiB). */
  maxPacketSize?: number;
  /** Milliseconds a new connection has to send CONNECT (default 10 s). */
  connectTimeout?: number;
  /** Accept clients that no authenticator accepted (default: only when no middleware authenticates). */
  anonymous?: boolean;
  /** Factors that must all accept (e.g. ['certificate', 'password'] for two-factor). */
  requiredFactors?: string[];
  /** Usernames allowed to subscribe to $SYS topics (nobody may publish there). */
  sysSubscribers?: string[];
  /** What a denied PUBLISH does when the denial does not say: acknowledge and drop, or disconnect. */
  publishDenied?: 'drop' | 'disconnect';
  /** Caps on open connections (per address, per listener, total) and the slow-consumer backlog; see setConnectionLimits(). */
  connectionLimits?: ConnectionLimits;
  /**
   * Extra Aedes options (id, heartbeatInterval, concurrency …); hooks are Bastion's.
   * `sysClientEvents` (Bastion's Aedes patch): publish `$SYS/<id>/new/clients` and
   * `…/disconnect/clients` per client. Default: only with an `mq` (a cluster's nodes hear of
   * take-overs through them) or `sysSubscribers`; set true to watch them in-process.
   */
  aedes?: Omit<AedesOptions, 'preConnect' | 'authenticate' | 'authorizePublish' | 'authorizeSubscribe' | 'authorizeForward' | 'persistence' | 'mq'> & { sysClientEvents?: boolean };
}

const kLive = Symbol('bastion.client');
const kGateIp = Symbol('bastion.gate.ip');
const kGateListener = Symbol('bastion.gate.listener');
/** A socket admitted at accept: what its 'close' must release. */
type GatedSocket = Socket & { [kGateIp]: string; [kGateListener]: string };

type WiredClient = AedesClient & {
  [kLive]?: LiveClient;
  will?: unknown;
  closed: boolean;
  _disconnected?: boolean;
  _nextBatch?: (err?: Error | null) => void;
  subscriptions: Record<string, { qos: number }>;
};
type WiredConn = Duplex; // the ConnectionInfo is not kept on the socket: LiveClient has what it needs

const CORE = 'core';

type AuthStep = { value: AuthVerdict | undefined; index: number; error?: unknown };
type AuthResult = { verdict: Denial | undefined; control: string; source: string; factors: string[] };

function isPromiseLike<T>(v: unknown): v is PromiseLike<T> {
  return typeof v === 'object' && v !== null && typeof (v as PromiseLike<T>).then === 'function';
}

/**
 * Log level of event types that are not warnings: delivery filtering happens per message under a
 * read ACL (on the bus for detectors, not in the log), and connection lifecycle is per connection.
 */
const LEVEL_OF = Object.assign(Object.create(null) as Record<string, 'debug' | 'warn' | undefined>, {
  'forward.denied': 'debug',
  'auth.succeeded': 'debug',
  'client.connected': 'debug',
  'client.disconnected': 'debug',
  'auth.failed': 'warn',
  'packet.rejected': 'warn',
} as const);

function levelOf(type: string): 'debug' | 'info' | 'warn' {
  return LEVEL_OF[type] ?? (type.endsWith('.denied') || type.endsWith('.refused') ? 'warn' : 'info');
}

/** An error Aedes understands as a CONNACK refusal. */
function connackError(reason: DenyReason, message: string): Error & { returnCode: number } {
  const err = new Error(message) as Error & { returnCode: number };
  err.returnCode = REASON_CODES[reason].connack;
  return err;
}

export class BastionBroker extends EventEmitter {
  readonly events = new SecurityEventBus();
  readonly logger: Logger;
  readonly options: Readonly<CoreBrokerOptions>;
  #aedes: Aedes | undefined;
  #listeners: Listener[] = [];
  #middleware: Middleware[];
  #chains!: {
    connection: Chain<ConnectionInfo, undefined>;
    connect: Chain<ClientInfo, ConnectPacketInfo>;
    authenticate: Chain<ClientInfo, Credentials, AuthVerdict>;
    publish: Chain<ClientInfo, PublishPacket>;
    subscribe: Chain<ClientInfo, Subscription>;
    forward: ReadonlyArray<(c: ClientInfo, p: PublishPacket) => boolean>;
    forwardOwners: readonly Middleware[];
  };
  #anonymous: boolean;
  #requiredFactors: readonly string[];
  #maxPacketSize: number;
  #publishDenied: 'drop' | 'disconnect';
  readonly #connections = new ConnectionCounter();
  #acceptChecks: ReadonlyArray<AcceptCheck> = [];
  /** Refused sockets held open (holdRefused) right now. */
  readonly #held = new Set<Socket>();
  /** Escalating tarpit: an address's current hold and when it was last refused (maxHoldRefused). */
  readonly #holds = new Map<string, { hold: number; at: number }>();
  /** Every admitted socket still open, so close() can end those Aedes does not know (no CONNECT yet). */
  readonly #open = new Set<Socket>();
  /** When each connection-limit event was last emitted, and how many were held back since (one per second per limit). */
  readonly #limitEvents = new Map<string, { at: number; suppressed: number }>();
  #state: 'new' | 'listening' | 'closing' | 'closed' = 'new';
  readonly context: BrokerContext;

  constructor(options: CoreBrokerOptions) {
    super();
    this.options = options;
    this.logger = options.logger ?? pino({ level: 'info' });
    this.#maxPacketSize = options.maxPacketSize ?? 256 * 1024;
    this.#publishDenied = options.publishDenied ?? 'disconnect';
    if (options.connectionLimits) this.#connections.set(options.connectionLimits);
    this.#middleware = [...coreGuards({ sysSubscribers: options.sysSubscribers ?? [] }), ...(options.middleware ?? [])];
    validateMiddleware(this.#middleware);
    this.#buildChains();
    const hasAuthenticator = this.#chains.authenticate.fns.length > 0;
    this.#anonymous = options.anonymous ?? !hasAuthenticator;
    this.#requiredFactors = options.requiredFactors ?? [];
    this.context = this.#makeContext();
    this.events.onListenerError((err, event) => {
      this.logger.error({ err, eventType: event.type }, 'security event listener failed');
    });
  }

  /** The Aedes instance, for what Bastion does not wrap (read-only use is advised). */
  get aedes(): Aedes {
    if (!this.#aedes) throw new BastionError('BASTION_ERR_NOT_STARTED', 'the broker is not listening yet: call listen() first');
    return this.#aedes;
  }

  get middleware(): readonly Middleware[] {
    return this.#middleware;
  }

  /** The running listeners (named like that to keep EventEmitter's `listeners()` intact). */
  get openListeners(): readonly Listener[] {
    return this.#listeners;
  }

  #buildChains(): void {
    const mw = this.#middleware;
    const forwardOwners = mw.filter((m) => typeof m.authorizeForward === 'function');
    this.#chains = {
      connection: chainOf(mw, 'onConnection'),
      connect: chainOf(mw, 'onConnect'),
      authenticate: chainOf(mw, 'authenticate'),
      publish: chainOf(mw, 'authorizePublish'),
      subscribe: chainOf(mw, 'authorizeSubscribe'),
      forward: forwardOwners.map((m) => (m.authorizeForward as (c: ClientInfo, p: PublishPacket) => boolean).bind(m)),
      forwardOwners,
    };
  }

  async listen(): Promise<this> {
    if (this.#state !== 'new') throw new BastionError('BASTION_ERR_CLOSED', `listen() called on a broker that is ${this.#state}`);
    this.#state = 'listening';
    for (const mw of this.#middleware) await mw.setup?.(this.context);
    const aedes = await Aedes.createBroker({
      // nobody could hear them: no other node, no client allowed on $SYS (a publish per CONNECT saved)
      sysClientEvents: this.options.mq !== undefined || (this.options.sysSubscribers?.length ?? 0) > 0,
      ...this.options.aedes,
      connectTimeout: this.options.connectTimeout ?? 10_000,
      persistence: this.options.persistence,
      mq: this.options.mq,
      preConnect: this.#preConnect,
      authenticate: this.#authenticate,
      authorizePublish: this.#authorizePublish,
      authorizeSubscribe: this.#authorizeSubscribe,
      authorizeForward: this.#authorizeForward,
    } as unknown as AedesOptions);
    this.#aedes = aedes;
    this.#applyAedesLimits(aedes);
    this.#wireAedesEvents(aedes);
    try {
      for (const l of this.options.listeners) {
        const listener = await startListener(
          { ...l, maxPacketSize: this.#maxPacketSize },
          (conn, info) => this.#accept(conn as WiredConn, info),
          ({ listener: name, remoteAddress, error }) => {
            // a certificate at fault, or another handshake failure (cipher, version, timeout)
            const code = String((error as NodeJS.ErrnoException).code ?? '');
            const reason = tlsFailureReason(error as NodeJS.ErrnoException);
            this.#emit('connection.refused', 'PR.AC-1', CORE, { remoteAddress, listener: name }, { reason, message: error.message, ...(code === '' ? {} : { detail: { code } }) });
          },
          this.#gate,
          ({ listener: name, remoteAddress, error }) =>
            this.#emit('connection.refused', 'PR.SS-4', 'proxy-protocol', { remoteAddress, listener: name }, { reason: 'not-authorized', message: error.message, detail: { proxyProtocol: error.problem } }),
        );
        this.#listeners.push(listener);
        const a = listener.address();
        this.logger.info({ listener: listener.name, transport: listener.transport, host: a.address, port: a.port }, 'listening');
      }
    } catch (err) {
      await this.close();
      throw err;
    }
    return this;
  }

  /** Bound addresses, by listener name (useful with port 0). */
  addresses(): Record<string, { host: string; port: number; transport: string }> {
    const out: Record<string, { host: string; port: number; transport: string }> = {};
    for (const l of this.#listeners) {
      const a = l.address();
      out[l.name] = { host: a.address, port: a.port, transport: l.transport };
    }
    return out;
  }

  /** Replace a TLS listener's certificate, key, CA or CRL for new handshakes. */
  setListenerTls(name: string, tlsOptions: TlsOptions): void {
    const l = this.#listeners.find((x) => x.name === name);
    if (!l?.setSecureContext) throw new BastionError('BASTION_ERR_TLS_CONFIG', `no TLS listener named ${name}`);
    l.setSecureContext(tlsOptions);
  }

  /**
   * Change who may connect from the next CONNECT on (a profile reload): whether clients no
   * authenticator accepted get in, and which factors must all accept. Connected clients are not
   * touched here; the caller decides whom the new policy disconnects.
   */
  setAuthenticationPolicy(policy: { anonymous?: boolean; requiredFactors?: readonly string[] }): void {
    if (policy.anonymous !== undefined) this.#anonymous = policy.anonymous;
    if (policy.requiredFactors !== undefined) this.#requiredFactors = [...policy.requiredFactors];
  }

  /** The authentication policy in force (see `setAuthenticationPolicy`). */
  get authenticationPolicy(): { anonymous: boolean; requiredFactors: readonly string[] } {
    return { anonymous: this.#anonymous, requiredFactors: this.#requiredFactors };
  }

  /**
   * Change the connection caps and the slow-consumer backlog while running (keys given replace,
   * 0 removes a cap). Connections already open are not closed; new ones are counted against it.
   */
  setConnectionLimits(limits: ConnectionLimits): void {
    this.#connections.set(limits);
    if (this.#aedes) this.#applyAedesLimits(this.#aedes);
  }

  /** The limits Aedes enforces itself; it reads them on each use, so they can change while running. */
  #applyAedesLimits(aedes: Aedes): void {
    const { drainTimeout, maxInflightInbound } = this.#connections.limits;
    const internals = aedes as unknown as { opts: { drainTimeout?: number }; maxInflightInbound: number };
    if (drainTimeout !== undefined) internals.opts.drainTimeout = drainTimeout;
    if (maxInflightInbound !== undefined) internals.maxInflightInbound = maxInflightInbound;
  }

  /**
   * Add a synchronous check run on every accepted TCP socket before anything else (no TLS handshake,
   * nothing read): it returns the name of the budget the address is over (a `rate.limited` event), a
   * refusal by rule such as BANNED_AT_ACCEPT (a `connection.refused` event with its reason), or
   * undefined. For what a middleware already knows about an address to cost nothing more than the
   * accept. A refused socket goes to the tarpit; at most one event per second per address and limit.
   * Returns a function that removes the check.
   */
  addAcceptCheck(check: AcceptCheck): () => void {
    this.#acceptChecks = [...this.#acceptChecks, check];
    return () => {
      this.#acceptChecks = this.#acceptChecks.filter((c) => c !== check);
    };
  }

  get connectionLimits(): Readonly<ConnectionLimits> {
    return this.#connections.limits;
  }

  /** Open connections (sockets, counted from TCP accept) from one address, or in total. */
  openConnections(remoteAddress?: string): number {
    return this.#connections.count(remoteAddress === undefined ? undefined : normalizeAddress(remoteAddress));
  }

  /** Stop accepting, close every client (wills fire as for any lost connection), close middleware and persistence. */
  async close(): Promise<void> {
    if (this.#state === 'closing' || this.#state === 'closed') return;
    this.#state = 'closing';
    const listeners = this.#listeners;
    this.#listeners = [];
    const closing = listeners.map((l) => l.close());
    for (const s of this.#held) s.destroy(); // refused sockets held open would keep the listeners from closing
    this.#holds.clear();
    const aedes = this.#aedes;
    if (aedes) {
      for (const c of Object.values((aedes as unknown as { clients: unknown }).clients as Record<string, WiredClient>)) {
        const live = c[kLive];
        if (live && !live.closeReason) live.closeReason = 'broker-closing';
      }
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      const persistence = (aedes as unknown as { persistence?: { destroy?: () => unknown } }).persistence;
      try {
        await persistence?.destroy?.();
      } catch (err) {
        this.logger.warn({ err }, 'persistence did not close cleanly');
      }
    }
    // sockets that never sent CONNECT (a slowloris) are not Aedes clients: end them, or the
    // listeners would wait for their CONNECT timeout
    for (const s of this.#open) s.destroy();
    await Promise.all(closing);
    for (const mw of [...this.#middleware].reverse()) {
      try {
        await mw.close?.();
      } catch (err) {
        this.logger.warn({ err, middleware: mw.name }, 'middleware did not close cleanly');
      }
    }
    this.#state = 'closed';
    this.emit('closed');
  }

  clients(): IterableIterator<ClientInfo> {
    return this.#liveClients();
  }

  client(id: string): ClientInfo | undefined {
    return this.#wired(id)?.[kLive];
  }

  /** A connected client's live subscriptions (topic filter, QoS), or undefined when it is not connected. */
  subscriptionsOf(clientId: string): Subscription[] | undefined {
    const c = this.#wired(clientId);
    if (!c || !c[kLive] || !c.connected) return undefined;
    return Object.entries(c.subscriptions).map(([topic, s]) => ({ topic, qos: (s?.qos ?? 0) as 0 | 1 | 2 }));
  }

  disconnect(clientId: string, reason: DisconnectReason = 'kicked', detail?: string): boolean {
    const c = this.#wired(clientId);
    if (!c || c.closed) return false;
    const live = c[kLive];
    if (live) {
      live.closeReason = reason;
      live.closeDetail = detail;
    }
    c.close();
    return true;
  }

  disconnectWhere(match: (client: ClientInfo) => boolean, reason: DisconnectReason = 'kicked', detail?: string): number {
    let n = 0;
    for (const live of [...this.#liveClients()]) {
      if (match(live) && this.disconnect(live.id, reason, detail)) n++;
    }
    return n;
  }

  /** Re-run authorizeSubscribe over every live subscription; remove those now refused. Returns what was removed, per client. */
  async recheckSubscriptions(): Promise<Array<{ client: ClientInfo; topics: string[] }>> {
    const aedes = this.#aedes;
    const withdrawn: Array<{ client: ClientInfo; topics: string[] }> = [];
    if (!aedes) return withdrawn;
    for (const c of Object.values((aedes as unknown as { clients: unknown }).clients as Record<string, WiredClient>)) {
      const live = c[kLive];
      if (!live || c.closed) continue;
      const refused: string[] = [];
      for (const topic of Object.keys(c.subscriptions)) {
        const sub = { topic, qos: (c.subscriptions[topic]?.qos ?? 0) as 0 | 1 | 2 };
        const r = runVerdictChain(this.#chains.subscribe, live, sub);
        const denial = r === undefined || isDenial(r) ? r : (await r).denial;
        if (denial) refused.push(topic);
      }
      if (refused.length > 0) {
        withdrawn.push({ client: live, topics: refused });
        await new Promise<void>((resolve) => c.unsubscribe({ unsubscriptions: refused } as never, () => resolve()));
        for (const topic of refused) {
          this.#emit('subscribe.denied', 'PR.AC-5', CORE, live, { topic, reason: 'not-authorized', message: 'subscription withdrawn after a rule change' });
        }
      }
    }
    return withdrawn;
  }

  *#liveClients(): IterableIterator<LiveClient> {
    const aedes = this.#aedes;
    if (!aedes) return;
    for (const c of Object.values((aedes as unknown as { clients: unknown }).clients as Record<string, WiredClient>)) {
      const live = c[kLive];
      // Authenticated and not closed: Aedes sets `connected` only after the session is restored,
      // and a ban or rule change in between must still reach this client.
      if (live && live.connectedAt > 0 && !c.closed) yield live;
    }
  }

  #wired(id: string): WiredClient | undefined {
    const clients = (this.#aedes as unknown as { clients: unknown } | undefined)?.clients as Record<string, WiredClient> | undefined;
    return clients?.[id];
  }

  #makeContext(): BrokerContext {
    return {
      logger: this.logger,
      events: this.events,
      clients: () => this.clients(),
      client: (id) => this.client(id),
      disconnect: (id, reason, detail) => this.disconnect(id, reason, detail),
      disconnectWhere: (match, reason, detail) => this.disconnectWhere(match, reason, detail),
      recheckSubscriptions: () => this.recheckSubscriptions(),
    };
  }

  /** Would an event of this type reach anyone: the bus, a 'security' listener, or the log at its level? */
  #wanted(type: SecurityEventType): boolean {
    return this.events.wants(type) || this.listenerCount('security') > 0 || this.logger.isLevelEnabled(levelOf(type));
  }

  /** Build and emit a security event (and log it). Only called on decisions, never per allowed message. */
  #emit(
    type: SecurityEventType,
    control: string,
    source: string,
    who: Partial<Pick<ClientInfo, 'id' | 'username' | 'remoteAddress' | 'listener'>> | undefined,
    extra?: Partial<SecurityEvent>,
  ): void {
    // Connection lifecycle events log at debug: an info line per CONNECT cost more than the CONNECT
    // itself on a fleet reconnect (the audit log records them when it is on). Nobody wanting this
    // type and the level off: the event is not even built.
    if (!this.#wanted(type)) return;
    const level = levelOf(type);
    const event: SecurityEvent = {
      type,
      time: Date.now(),
      control,
      source,
      clientId: who?.id || undefined,
      username: who?.username,
      remoteAddress: who?.remoteAddress,
      listener: who?.listener,
      ...extra,
    };
    if (this.logger.isLevelEnabled(level)) this.logger[level]({ securityEvent: event }, type);
    this.events.emit(event);
    this.emit('security', event);
  }

  #denialEvent(type: SecurityEventType, denial: Denial, index: number, owners: readonly Middleware[], who: Partial<ClientInfo>, error: unknown, extra?: Partial<SecurityEvent>): void {
    const owner = owners[index];
    if (error !== undefined) {
      this.logger.error({ err: error, middleware: owner?.name, hook: type }, 'middleware failed; request denied');
      this.#emit('middleware.error', owner?.controls[0] ?? 'PR.SS-1', owner?.name ?? CORE, who, { message: String((error as Error)?.message ?? error) });
    } else if (denial.silent === true) {
      return; // the middleware reports it itself (throttled)
    }
    this.#emit(type, denial.control ?? owner?.controls[0] ?? 'PR.AC-5', owner?.name ?? CORE, who, {
      reason: denial.reason,
      message: denial.message,
      ...extra,
    });
  }

  /** A limit event, at most one per second per limit and key; the count held back in between goes with the next. */
  #limitEvent(type: string, control: string, limit: string, key: string, who: Partial<ClientInfo>, extra: Partial<SecurityEvent>): void {
    if (!this.events.wants(type) && this.listenerCount('security') === 0) return;
    const id = `${limit}\u0000${key}`;
    const now = Date.now();
    const last = this.#limitEvents.get(id);
    if (last !== undefined && now - last.at < 1_000) {
      last.suppressed++;
      return;
    }
    if (this.#limitEvents.size > 10_000) this.#limitEvents.clear(); // many addresses: forget, never grow without bound
    this.#limitEvents.set(id, { at: now, suppressed: 0 });
    this.#emit(type, control, CORE, who, { ...extra, detail: { ...extra.detail, limit, suppressed: last?.suppressed ?? 0 } });
  }

  // ---- data plane --------------------------------------------------------------------------

  /** Every accepted TCP socket, before TLS or WebSocket: count it against the caps or refuse it. */
  #gate = (socket: Socket, listener: string, remoteAddress?: string): boolean => {
    // behind a trusted proxy: the client's address from the PROXY header
    const ip = remoteAddress ?? normalizeAddress(socket.remoteAddress);
    for (const check of this.#acceptChecks) {
      const hit = check(ip, listener);
      if (hit !== undefined) {
        if (typeof hit === 'string') {
          this.#limitEvent('rate.limited', 'PR.SS-5', hit, ip, { remoteAddress: ip, listener }, {
            reason: 'connection-rate-exceeded',
            message: `connection refused at accept: ${hit}`,
            detail: { consequence: 'refuse' },
          });
        } else {
          this.#limitEvent('connection.refused', hit.control, hit.limit, ip, { remoteAddress: ip, listener }, { reason: hit.reason, message: hit.message, detail: { consequence: 'refuse' } });
        }
        this.#closeRefused(socket, ip);
        return false;
      }
    }
    const hit: ConnectionLimitName | undefined = this.#connections.admit(ip, listener);
    if (hit === undefined) {
      this.#open.add(socket);
      // one shared handler, the address and listener on the socket: no closure and no once()
      // wrapper per connection ('close' is emitted once)
      const gated = socket as GatedSocket;
      gated[kGateIp] = ip;
      gated[kGateListener] = listener;
      socket.on('close', this.#ungate);
      return true;
    }
    this.#limitEvent('rate.limited', 'PR.SS-5', hit, hit === 'concurrent.perIp' ? ip : hit === 'concurrent.perListener' ? listener : '', { remoteAddress: ip, listener }, {
      reason: 'server-busy',
      message: `connection refused: ${hit} cap reached`,
      detail: { consequence: 'refuse', cap: this.#connections.capOf(hit, listener) },
    });
    this.#closeRefused(socket, ip);
    return false;
  };

  /** The 'close' listener of every admitted socket (called with the socket as `this`). */
  readonly #ungate = ((broker: BastionBroker) =>
    function ungate(this: GatedSocket): void {
      broker.#open.delete(this);
      broker.#connections.release(this[kGateIp], this[kGateListener]);
    })(this);

  /** Close a socket refused at accept: at once, or after holding it unread (holdRefused, escalating per address). */
  #closeRefused(socket: Socket, ip: string): void {
    const { holdRefused, maxHeld } = this.#connections.limits;
    if (!holdRefused || this.#held.size >= (maxHeld ?? 1000) || this.#state !== 'listening') {
      socket.destroy();
      return;
    }
    this.#held.add(socket);
    socket.pause();
    socket.on('error', () => {});
    // ±50% jitter: sockets refused together would otherwise be closed together, and a flooder that
    // reconnects at once would come back as one wave every hold — an accept storm that stalls the
    // event loop (measured: p99 latency of other clients ×5–70 under a flood of 500 sockets)
    const timer = setTimeout(() => socket.destroy(), this.#holdFor(ip, holdRefused) * (0.5 + Math.random()));
    timer.unref();
    socket.once('close', () => {
      this.#held.delete(socket);
      clearTimeout(timer);
    });
  }

  /**
   * The hold for a refusal of `ip` now. An address refused again within maxHoldRefused of its last
   * refusal has its hold doubled (up to maxHoldRefused): a flooder cycling hundreds of sockets
   * through the tarpit is slowed to a few accepts per second instead of hundreds, while an address
   * refused once in a while keeps the short hold.
   */
  #holdFor(ip: string, base: number): number {
    const max = this.#connections.limits.maxHoldRefused;
    if (max === undefined || max <= base) return base;
    const now = performance.now(); // monotonic: a wall-clock step must not reset or extend holds
    const h = this.#holds.get(ip);
    if (h === undefined || now - h.at > max) {
      if (h === undefined && this.#holds.size >= 10_000) this.#holds.clear(); // many addresses: forget, never grow without bound
      this.#holds.set(ip, { hold: base, at: now });
      return base;
    }
    h.hold = h.hold * 2 < max ? h.hold * 2 : max;
    h.at = now;
    return h.hold;
  }

  /** A failure after an async hook answered (in Aedes' callbacks): logged, never an unhandled rejection. */
  #internalError = (err: unknown): void => {
    this.logger.error({ err }, 'internal error after an asynchronous hook');
  };

  #accept(conn: WiredConn, info: ConnectionInfo): void {
    if (this.#state !== 'listening') {
      conn.destroy();
      return;
    }
    const r = runVerdictChain(this.#chains.connection, info, undefined);
    if (r === undefined) return this.#handOver(conn, info);
    if (isDenial(r)) return this.#refuseConnection(conn, info, r, lastRun.index, lastRun.error);
    // an async gate: hold the socket (unread) until it answers
    conn.pause();
    r.then((o: AsyncOutcome) => {
      if (o.denial) this.#refuseConnection(conn, info, o.denial, o.index, o.error);
      else if (!conn.destroyed) this.#handOver(conn, info);
    }).catch(this.#internalError);
  }

  #refuseConnection(conn: Duplex, info: ConnectionInfo, denial: Denial, index: number, error: unknown): void {
    conn.destroy();
    this.#denialEvent('connection.refused', denial, index, this.#chains.connection.owners, info, error);
  }

  #handOver(conn: WiredConn, info: ConnectionInfo): void {
    const live = new LiveClient(info);
    guardPacketSize(conn, this.#maxPacketSize, (size) => {
      live.closeReason = 'packet-too-large';
      this.#emit('packet.rejected', 'PR.SS-1', CORE, live, {
        reason: 'packet-too-large',
        message: size < 0 ? 'malformed remaining length' : `packet of ${size} bytes exceeds the limit of ${this.#maxPacketSize}`,
        detail: { size, limit: this.#maxPacketSize },
      });
    });
    const client = (this.#aedes as Aedes).handle(conn) as WiredClient;
    client[kLive] = live;
    live[kWire] = client;
  }

  /** Refuse at CONNECT with a CONNACK, then close: Aedes' preConnect would leave the socket open. */
  #refuseConnect(client: WiredClient, reason: DenyReason, done: (err: Error | null, ok: boolean) => void): void {
    const live = client[kLive];
    if (live) live.closeReason = 'denied';
    const conn = client.conn;
    const buf = mqttPacket.generate({ cmd: 'connack', returnCode: REASON_CODES[reason].connack, sessionPresent: false } as mqttPacket.IConnackPacket);
    conn.write(buf, () => conn.destroy());
    // a peer that never reads must not pin the socket
    setTimeout(() => conn.destroy(), 2000).unref();
    done(null, false);
  }

  #preConnect = (client: WiredClient, packet: mqttPacket.IConnectPacket, done: (err: Error | null, ok: boolean) => void): void => {
    const live = client[kLive];
    if (!live) return done(null, true); // a stream handed to aedes.handle() directly by the embedder
    live.id = packet.clientId ?? '';
    live.clean = packet.clean !== false;
    live.keepalive = packet.keepalive ?? 0;
    live.protocolVersion = packet.protocolVersion ?? 4;
    const will = packet.will
      ? ({ topic: packet.will.topic, payload: packet.will.payload, qos: packet.will.qos ?? 0, retain: packet.will.retain ?? false } as PublishPacket)
      : undefined;
    const info: ConnectPacketInfo = { clientId: live.id, username: packet.username, clean: live.clean, keepalive: live.keepalive, protocolVersion: live.protocolVersion, will };
    const refuse = (type: SecurityEventType, denial: Denial, index: number, owners: readonly Middleware[], error: unknown, extra?: Partial<SecurityEvent>) => {
      // the event names the username the client claimed (not authenticated: it was refused first)
      this.#denialEvent(type, denial, index, owners, { ...live, username: packet.username }, error, extra);
      this.#refuseConnect(client, denial.reason, done);
    };
    const r = runVerdictChain(this.#chains.connect, live, info);
    if (isDenial(r)) return refuse('connection.refused', r, lastRun.index, this.#chains.connect.owners, lastRun.error);
    const afterConnect = () => {
      // a middleware capped the keepalive (setKeepalive): Aedes arms its timer from the packet
      const keepalive = live[kKeepalive];
      if (keepalive !== undefined) packet.keepalive = live.keepalive = keepalive;
      done(null, true);
    };
    if (r === undefined) return afterConnect();
    r.then((o) => {
      if (o.denial) refuse('connection.refused', o.denial, o.index, this.#chains.connect.owners, o.error);
      else afterConnect();
    }).catch(this.#internalError);
  };

  #authenticate = (client: WiredClient, username: string | undefined, password: Buffer | undefined, done: (err: Error | null, ok: boolean | null) => void): void => {
    const live = client[kLive];
    if (!live) return done(null, true);
    // Synchronous when every authenticator answers synchronously (a remembered password): no
    // promise and no extra event-loop turn on the reconnect path.
    let r: AuthResult | Promise<AuthResult>;
    try {
      r = this.#runAuthentication(live, { username, password });
    } catch (err) {
      return this.#authCrashed(err, done);
    }
    if (isPromiseLike(r)) r.then((result) => this.#authenticated(client, live, username, result, done), (err: unknown) => this.#authCrashed(err, done)).catch(this.#internalError);
    else {
      try {
        this.#authenticated(client, live, username, r, done);
      } catch (err) {
        this.#internalError(err); // as on the asynchronous path: logged, never thrown into Aedes' parser
      }
    }
  };

  #authCrashed(err: unknown, done: (err: Error | null, ok: boolean | null) => void): void {
    this.logger.error({ err }, 'authentication failed unexpectedly; connection refused');
    done(connackError('internal-error', 'server unavailable'), false);
  }

  #authenticated(client: WiredClient, live: LiveClient, username: string | undefined, result: AuthResult, done: (err: Error | null, ok: boolean | null) => void): void {
    if (isDenial(result.verdict)) {
      live.closeReason = 'denied'; // before the event: its listeners may ask isClosing(live)
      this.#emit('auth.failed', result.control, result.source, { ...live, username: username ?? undefined } as ClientInfo, {
        reason: result.verdict.reason,
        message: result.verdict.message,
      });
      return done(connackError(result.verdict.reason, result.verdict.message ?? result.verdict.reason), false);
    }
    const accepted = () => {
      live.id = client.id; // Aedes assigns one when the client sent none
      live.connectedAt = Date.now();
      // A client id connected elsewhere on this broker is about to be taken over.
      const previous = this.#wired(live.id);
      if (previous && previous !== client && previous[kLive]) (previous[kLive] as LiveClient).closeReason = 'taken-over';
      this.#emit('auth.succeeded', result.control, result.source, live, { detail: { factors: result.factors } });
      done(null, true);
    };
    // The will is a PUBLISH made at CONNECT: authorize it now, not only when it fires.
    const will = (client as unknown as { _will?: PublishPacket })._will;
    if (!will) return accepted();
    const willRefused = (o: AsyncOutcome) => {
      this.#denialEvent('publish.denied', o.denial as Denial, o.index, this.#chains.publish.owners, live, o.error, { topic: will.topic, message: `will: ${o.denial?.message ?? o.denial?.reason}` });
      live.closeReason = 'denied';
      done(connackError('not-authorized', 'will topic not authorized'), false);
    };
    const r = runVerdictChain(this.#chains.publish, live, will);
    if (r === undefined) return accepted();
    if (isDenial(r)) return willRefused({ denial: r, index: lastRun.index, error: lastRun.error });
    r.then((o) => (o.denial ? willRefused(o) : accepted())).catch(this.#internalError);
  }

  /** Runs the authenticate chain; synchronous while every link answers synchronously. */
  #runAuthentication(live: LiveClient, creds: Credentials): AuthResult | Promise<AuthResult> {
    const fns = this.#chains.authenticate.fns;
    const steps: AuthStep[] = [];
    for (let i = 0; i < fns.length; i++) {
      let value: AuthVerdict | Promise<AuthVerdict>;
      try {
        value = (fns[i] as (c: ClientInfo, k: Credentials) => AuthVerdict | Promise<AuthVerdict>)(live, creds);
      } catch (error) {
        steps.push({ value: undefined, index: i, error });
        break;
      }
      if (isPromiseLike(value)) return this.#runAuthenticationAsync(live, creds, steps, i, value);
      steps.push({ value, index: i });
      if (isDenial(value)) break; // deny wins: stop at the first refusal
    }
    return this.#judgeAuthentication(live, creds, steps);
  }

  async #runAuthenticationAsync(live: LiveClient, creds: Credentials, steps: AuthStep[], from: number, pending: PromiseLike<AuthVerdict>): Promise<AuthResult> {
    const fns = this.#chains.authenticate.fns;
    for (let i = from; i < fns.length; i++) {
      try {
        const value = await (i === from ? pending : (fns[i] as (c: ClientInfo, k: Credentials) => AuthVerdict | Promise<AuthVerdict>)(live, creds));
        steps.push({ value, index: i });
        if (isDenial(value)) break;
      } catch (error) {
        steps.push({ value: undefined, index: i, error });
        break;
      }
    }
    return this.#judgeAuthentication(live, creds, steps);
  }

  #judgeAuthentication(live: LiveClient, creds: Credentials, results: AuthStep[]): AuthResult {
    const chain = this.#chains.authenticate;
    const accepted: Array<{ a: Accepted; owner: Middleware }> = [];
    for (const r of results) {
      const owner = chain.owners[r.index] as Middleware;
      if (r.error !== undefined) {
        this.logger.error({ err: r.error, middleware: owner.name }, 'authenticator failed; connection refused');
        this.#emit('middleware.error', owner.controls[0] ?? 'PR.AC-3', owner.name, live, { message: String((r.error as Error)?.message ?? r.error) });
        return { verdict: deny('internal-error'), control: owner.controls[0] ?? 'PR.AC-3', source: owner.name, factors: [] };
      }
      const v = r.value;
      if (v === undefined || v === null) continue;
      if (isDenial(v)) return { verdict: v, control: v.control ?? owner.controls[0] ?? 'PR.AC-3', source: owner.name, factors: [] };
      accepted.push({ a: v, owner });
    }
    const factors = accepted.map((x) => x.a.factor);
    for (const f of this.#requiredFactors) {
      if (!factors.includes(f)) {
        const twoFactor = this.#requiredFactors.length > 1;
        return { verdict: deny(f === 'password' && creds.username ? 'bad-credentials' : 'not-authorized', `missing required factor: ${f}`), control: twoFactor ? 'PR.CS-3' : 'PR.AC-3', source: CORE, factors };
      }
    }
    if (accepted.length === 0) {
      if (this.#anonymous) return { verdict: undefined, control: 'PR.AC-3', source: CORE, factors };
      return { verdict: deny('not-authorized', 'no credentials accepted'), control: 'PR.AC-3', source: CORE, factors };
    }
    const first = accepted[0] as { a: Accepted; owner: Middleware };
    if (accepted.length === 1) {
      // one factor (the common case): its identity as given, without the set/array copies below
      live.username = first.a.username;
      live.groups = first.a.groups ?? [];
      return { verdict: undefined, control: first.owner.controls[0] ?? 'PR.AC-3', source: first.owner.name, factors };
    }
    // Several factors must name one identity: a password of user A with the certificate of B is refused.
    const names = new Set(accepted.map((x) => x.a.username).filter((u): u is string => u !== undefined));
    if (names.size > 1) return { verdict: deny('not-authorized', 'authentication factors name different identities'), control: 'PR.CS-3', source: CORE, factors };
    live.username = names.values().next().value;
    live.groups = [...new Set(accepted.flatMap((x) => x.a.groups ?? []))];
    return { verdict: undefined, control: 'PR.CS-3', source: accepted.map((x) => x.owner.name).join('+'), factors };
  }

  #authorizePublish = (client: WiredClient | null, packet: PublishPacket, done: (err?: Error | null) => void): void => {
    const live = client?.[kLive];
    if (!live) return done(null); // a will re-published by the cluster for a client gone elsewhere
    const r = runVerdictChain(this.#chains.publish, live, packet);
    if (r === undefined) return done(null);
    if (isDenial(r)) return this.#publishRefused(client as WiredClient, live, packet, r, lastRun.index, lastRun.error, done);
    r.then((o) => {
      if (o.denial) this.#publishRefused(client as WiredClient, live, packet, o.denial, o.index, o.error, done);
      else done(null);
    }).catch(this.#internalError);
  };

  #publishRefused(client: WiredClient, live: LiveClient, packet: PublishPacket, denial: Denial, index: number, error: unknown, done: (err?: Error | null) => void): void {
    this.#denialEvent('publish.denied', denial, index, this.#chains.publish.owners, live, error, { topic: packet.topic, detail: { qos: packet.qos } });
    const action = denial.action ?? this.#publishDenied;
    const fromWire = !client.closed && client.will !== packet && typeof client._nextBatch === 'function';
    if (action === 'drop' && fromWire) {
      // [MQTT-3.3.5-2]: acknowledge as usual, then discard. Resume reading as Aedes would.
      if (packet.qos === 1) client.conn.write(mqttPacket.generate({ cmd: 'puback', messageId: packet.messageId } as mqttPacket.IPubackPacket));
      else if (packet.qos === 2) client.conn.write(mqttPacket.generate({ cmd: 'pubrec', messageId: packet.messageId } as mqttPacket.IPubrecPacket));
      (client._nextBatch as (err?: Error | null) => void)(null);
      return;
    }
    live.closeReason = 'denied';
    done(new Error(`publish to ${packet.topic} denied: ${denial.reason}`));
  }

  #authorizeSubscribe = (client: WiredClient, sub: Subscription, done: (err: Error | null, sub?: Subscription | null) => void): void => {
    const live = client[kLive];
    if (!live) return done(null, sub);
    const r = runVerdictChain(this.#chains.subscribe, live, sub);
    if (r === undefined) return done(null, sub);
    const refuse = (denial: Denial, index: number, error: unknown) => {
      this.#denialEvent('subscribe.denied', denial, index, this.#chains.subscribe.owners, live, error, { topic: sub.topic });
      done(null, null); // SUBACK 0x80 for this topic; the connection stays
    };
    if (isDenial(r)) return refuse(r, lastRun.index, lastRun.error);
    r.then((o) => (o.denial ? refuse(o.denial, o.index, o.error) : done(null, sub))).catch(this.#internalError);
  };

  #authorizeForward = (client: WiredClient, packet: PublishPacket): PublishPacket | null => {
    const live = client[kLive];
    if (live === undefined) return packet;
    // Something still waits to be written to this client: is it a slow consumer?
    if (client.conn.writableLength > 0 && !this.#withinBacklog(client, live, packet)) return null;
    const fns = this.#chains.forward;
    for (let i = 0; i < fns.length; i++) {
      let ok: boolean;
      try {
        ok = (fns[i] as (c: ClientInfo, p: PublishPacket) => boolean)(live, packet);
      } catch (err) {
        ok = false;
        const owner = this.#chains.forwardOwners[i];
        this.logger.error({ err, middleware: owner?.name }, 'authorizeForward failed; delivery withheld');
      }
      if (ok === false) {
        // per denied delivery: not even the arguments unless the event would go somewhere
        if (this.#wanted('forward.denied')) {
          const owner = this.#chains.forwardOwners[i];
          this.#emit('forward.denied', owner?.controls[0] ?? 'PR.AC-5', owner?.name ?? CORE, live, { topic: packet.topic, reason: 'not-authorized' });
        }
        return null;
      }
    }
    return packet;
  };

  /**
   * A subscriber that does not read must not hold publishers nor grow memory: past the backlog cap
   * it is disconnected; below it, QoS 0 deliveries that would overflow its socket buffer are dropped
   * (Aedes would otherwise wait for 'drain' — up to drainTimeout — before the publisher may go on).
   */
  #withinBacklog(client: WiredClient, live: LiveClient, packet: PublishPacket): boolean {
    const conn = client.conn;
    const queued = conn.writableLength;
    const limits = this.#connections.limits;
    const max = limits.maxOutboundBacklog ?? 0;
    if (max > 0 && queued >= max) {
      if (!live.closeReason) {
        live.closeReason = 'slow-consumer';
        live.closeDetail = `${queued} bytes waiting to be written (limit ${max})`;
        conn.destroy();
      }
      return false;
    }
    if (packet.qos !== 0 || limits.dropQoS0WhenBacklogged !== true) return true;
    if (queued + packet.payload.length + packet.topic.length < conn.writableHighWaterMark) return true;
    this.#limitEvent('limit.exceeded', 'PR.SS-1', 'outbound-backlog', live.id, live, {
      reason: 'quota-exceeded',
      message: 'QoS 0 messages dropped for a client that does not read fast enough',
      topic: packet.topic,
      detail: { consequence: 'drop', queued },
    });
    return false;
  }

  #wireAedesEvents(aedes: Aedes): void {
    aedes.on('clientReady', (c) => {
      const live = (c as WiredClient)[kLive];
      if (!live) return;
      this.#emit('client.connected', 'ID.AM-1', CORE, live, { detail: { transport: live.transport, protocolVersion: live.protocolVersion } });
      for (const mw of this.#middleware) {
        try {
          mw.onConnected?.(live);
        } catch (err) {
          this.logger.error({ err, middleware: mw.name }, 'onConnected failed');
        }
      }
    });
    aedes.on('keepaliveTimeout', (c) => {
      const live = (c as WiredClient)[kLive];
      if (live) live.keepaliveExpired = true;
    });
    aedes.on('clientError', (c, err) => {
      const live = (c as WiredClient)[kLive];
      if (live && !live.error) live.error = err;
    });
    aedes.on('connectionError', (c, err) => {
      const live = (c as WiredClient)[kLive];
      if (!live || live.closeReason) return;
      this.#emit('packet.rejected', 'PR.SS-1', CORE, live, { reason: 'protocol-error', message: err.message });
    });
    aedes.on('clientDisconnect', (c) => {
      const wc = c as WiredClient;
      const live = wc[kLive];
      if (!live) return;
      const reason: DisconnectReason =
        live.closeReason ??
        (wc._disconnected
          ? 'client-disconnect'
          : live.keepaliveExpired
            ? 'keepalive-timeout'
            : live.error?.message === 'drain timeout' // Aedes: the socket stayed full for drainTimeout
              ? 'slow-consumer'
              : live.error && !isSocketError(live.error)
                ? 'protocol-error'
                : 'socket-closed');
      this.#emit('client.disconnected', reason === 'client-disconnect' ? 'ID.AM-1' : 'DE.NM-2', CORE, live, {
        reason,
        message: live.closeDetail ?? (reason === 'protocol-error' ? live.error?.message : undefined),
      });
      for (const mw of this.#middleware) {
        try {
          mw.onDisconnect?.(live, reason);
        } catch (err) {
          this.logger.error({ err, middleware: mw.name }, 'onDisconnect failed');
        }
      }
    });
    // Aedes emits 'error' for persistence failures; an unhandled 'error' would end the process.
    (aedes as EventEmitter).on('error', (err: Error) => {
      this.logger.error({ err }, 'broker error');
      this.emit('broker-error', err);
    });
  }
}

function isSocketError(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ETIMEDOUT' || err.message === 'connection closed';
}

function validateMiddleware(list: Middleware[]): void {
  const names = new Set<string>();
  for (const mw of list) {
    if (typeof mw !== 'object' || mw === null || typeof mw.name !== 'string' || mw.name === '') {
      throw new BastionError('BASTION_ERR_INVALID_MIDDLEWARE', 'every middleware needs a non-empty string `name`');
    }
    if (!Array.isArray(mw.controls)) {
      throw new BastionError('BASTION_ERR_INVALID_MIDDLEWARE', `middleware ${mw.name}: \`controls\` must be an array of CSF subcategory ids`);
    }
    if (names.has(mw.name)) throw new BastionError('BASTION_ERR_INVALID_MIDDLEWARE', `two middleware are named ${mw.name}; names must be unique`);
    names.add(mw.name);
  }
}

export async function createCoreBroker(options: CoreBrokerOptions): Promise<BastionBroker> {
  const broker = new BastionBroker(options);
  await broker.listen();
  return broker;
}

export type { Verdict };
