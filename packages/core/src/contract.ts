/**
 * The middleware contract: the public face of @bastion/core.
 *
 * A middleware is a plain object, usually made by a factory from its profile section. Every hook is
 * optional. Hooks run in list order; deny wins: the first denial stops the chain. A hook answers
 * synchronously (fast path: no Promise is allocated) or with a Promise when it must wait.
 *
 *   - return `undefined` (or nothing) → no objection, ask the next middleware;
 *   - return a `Denial`             → refused, with a reason that becomes a security event.
 *
 * A hook that throws or rejects denies that one request with reason `internal-error`, and the
 * error is logged; it never takes the broker down.
 */
import type { PeerCertificate } from 'node:tls';
import type { Logger } from 'pino';
import type { DenyReason } from './reasons.js';
import type { SecurityEventBus } from './events.js';

export type Transport = 'mqtt' | 'mqtts' | 'ws' | 'wss';

/** What is known of a connection before its CONNECT packet is read. */
export interface ConnectionInfo {
  /** Remote address as the client is seen (IPv4-mapped IPv6 addresses are unwrapped to IPv4). */
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** The listener's name from the profile (defaults to `<transport>:<port>`). */
  readonly listener: string;
  readonly transport: Transport;
  /** The verified client certificate on TLS listeners, when the client sent one. */
  readonly certificate: ClientCertificate | undefined;
  /** Negotiated TLS protocol and cipher, on TLS listeners. */
  readonly tls: { readonly protocol: string | null; readonly cipher: string } | undefined;
  /**
   * The load balancer that relayed the connection, when `remoteAddress`/`remotePort` came from its
   * PROXY protocol header (a listener's `proxyProtocol`); undefined otherwise.
   */
  readonly proxy?: { readonly address: string; readonly port: number } | undefined;
}

/** The parts of an X.509 client certificate that controls use. */
export interface ClientCertificate {
  readonly subject: Readonly<Record<string, string | string[]>>;
  readonly commonName: string | undefined;
  readonly issuer: Readonly<Record<string, string | string[]>>;
  /** Lower-case hex, whole bytes, leading zero bytes stripped (the form the PKI package and CRLs use). */
  readonly serial: string;
  readonly fingerprint256: string;
  readonly validFrom: Date;
  readonly validTo: Date;
  readonly dnsNames: readonly string[];
  readonly uris: readonly string[];
  readonly emails: readonly string[];
  /** The certificate as Node parsed it, for anything not above. */
  readonly raw: PeerCertificate;
}

/** A connected (or connecting) MQTT client as middleware sees it. One object per connection. */
export interface ClientInfo extends ConnectionInfo {
  /** MQTT client id (empty string while unknown). */
  readonly id: string;
  /** The authenticated identity: set by the authentication stage, `undefined` if anonymous. */
  readonly username: string | undefined;
  /** Roles/groups given by an authenticator, used by authorization. */
  readonly groups: readonly string[];
  readonly protocolVersion: number;
  readonly clean: boolean;
  readonly keepalive: number;
  readonly connectedAt: number;
}

/** Credentials presented at CONNECT. `password` is never logged. */
export interface Credentials {
  readonly username: string | undefined;
  readonly password: Buffer | undefined;
}

/** A refusal. Make them once and reuse them on hot paths (see `deny()`). */
export interface Denial {
  readonly denied: true;
  readonly reason: DenyReason;
  /** Human-readable detail for logs and events (never secrets). */
  readonly message?: string;
  /** CSF subcategory id that refused; the composer fills in the middleware's first control. */
  readonly control?: string;
  /** For PUBLISH: acknowledge and discard (`drop`, spec-compliant for 3.1.1) or close the connection. */
  readonly action?: 'drop' | 'disconnect';
  /**
   * The middleware reports this refusal itself (a throttled `rate.limited` event, say), so the
   * core emits no per-request event for it: a flood must not become a flood of log lines.
   */
  readonly silent?: boolean;
}

export type Verdict = Denial | undefined | void;

/** Authentication answers: no opinion, an accepted identity, or a denial. */
export interface Accepted {
  readonly denied: false;
  /** The identity to record for the client (e.g. a username or certificate CN). */
  readonly username?: string;
  readonly groups?: readonly string[];
  /** Which factor was checked (e.g. 'password', 'certificate'), for events. */
  readonly factor: string;
}
export type AuthVerdict = Accepted | Denial | undefined | void;

export interface PublishPacket {
  readonly topic: string;
  readonly payload: Buffer | string;
  readonly qos: 0 | 1 | 2;
  readonly retain: boolean;
  readonly messageId?: number | undefined;
  readonly dup?: boolean;
}

export interface Subscription {
  readonly topic: string;
  readonly qos: 0 | 1 | 2;
}

export type DisconnectReason =
  | 'client-disconnect' // DISCONNECT packet
  | 'socket-closed' // closed without DISCONNECT
  | 'keepalive-timeout'
  | 'protocol-error'
  | 'packet-too-large'
  | 'kicked' // by an operator, the embedding API or a response action
  | 'taken-over' // same client id connected again
  | 'denied' // a middleware refused and the connection was closed
  | 'idle-timeout' // no application data for too long (auto-disconnect)
  | 'max-age' // connected for longer than the maximum connection age (auto-disconnect)
  | 'slow-consumer' // did not read what the broker sent it
  | 'rate-limited' // exceeded a rate limit too often
  | 'broker-closing';

/** What a middleware may use of the broker. Given once to `setup`. */
export interface BrokerContext {
  readonly logger: Logger;
  readonly events: SecurityEventBus;
  /** Connected clients, by client id. */
  clients(): IterableIterator<ClientInfo>;
  client(id: string): ClientInfo | undefined;
  /** Close a client's connection, recording the reason. Returns false if it was not connected. */
  disconnect(clientId: string, reason: DisconnectReason, detail?: string): boolean;
  /** Close every connection for which `match` is true; returns how many. */
  disconnectWhere(match: (client: ClientInfo) => boolean, reason: DisconnectReason, detail?: string): number;
  /** Re-check every live subscription of connected clients (after an ACL change); returns what was withdrawn, per client. */
  recheckSubscriptions(): Promise<Array<{ client: ClientInfo; topics: string[] }>>;
}

export type MaybePromise<T> = T | Promise<T>;

export interface Middleware {
  /** Short, unique, kebab-case: 'rate-limit'. */
  readonly name: string;
  /** CSF subcategory ids this middleware implements, e.g. ['PR.SS-5']. Used by assess and events. */
  readonly controls: readonly string[];
  setup?(ctx: BrokerContext): MaybePromise<void>;
  /** After the transport is up (TLS handshake done, WebSocket upgraded), before CONNECT is read. */
  onConnection?(conn: ConnectionInfo): MaybePromise<Verdict>;
  /** At CONNECT, before authentication: client id, clean flag, keepalive, will. */
  onConnect?(client: ClientInfo, packet: ConnectPacketInfo): MaybePromise<Verdict>;
  authenticate?(client: ClientInfo, creds: Credentials): MaybePromise<AuthVerdict>;
  /** Hot path: keep it synchronous and allocation-free when allowing. */
  authorizePublish?(client: ClientInfo, packet: PublishPacket): MaybePromise<Verdict>;
  authorizeSubscribe?(client: ClientInfo, sub: Subscription): MaybePromise<Verdict>;
  /** Hot path, synchronous only: false stops delivery of this packet to this client. */
  authorizeForward?(client: ClientInfo, packet: PublishPacket): boolean;
  /** After CONNACK 0 was sent. */
  onConnected?(client: ClientInfo): void;
  onDisconnect?(client: ClientInfo, reason: DisconnectReason): void;
  close?(): MaybePromise<void>;
}

export interface ConnectPacketInfo {
  readonly clientId: string;
  /** The username the client claims (not yet authenticated). */
  readonly username: string | undefined;
  readonly clean: boolean;
  readonly keepalive: number;
  readonly protocolVersion: number;
  readonly will: PublishPacket | undefined;
}

const denials = new Map<string, Denial>();

/**
 * A frozen denial, cached by reason (and message) so hot paths do not allocate. Pass a message only
 * when it is a constant; per-request detail belongs in `denyWith`.
 */
export function deny(reason: DenyReason, message?: string, action?: 'drop' | 'disconnect'): Denial {
  const key = `${reason}\u0000${message ?? ''}\u0000${action ?? ''}`;
  let d = denials.get(key);
  if (d === undefined) {
    d = Object.freeze({ denied: true as const, reason, message, action });
    denials.set(key, d);
  }
  return d;
}

/** A fresh denial with per-request detail (allocates: for slow paths). */
export function denyWith(reason: DenyReason, message: string, extra?: Partial<Omit<Denial, 'denied' | 'reason' | 'message'>>): Denial {
  return { denied: true, reason, message, ...extra };
}

export function accept(factor: string, username?: string, groups?: readonly string[]): Accepted {
  return { denied: false, factor, username, groups };
}

export function isDenial(v: unknown): v is Denial {
  return typeof v === 'object' && v !== null && (v as Denial).denied === true;
}
