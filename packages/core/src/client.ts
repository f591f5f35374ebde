import type { ClientCertificate, ClientInfo, ConnectionInfo, DisconnectReason, Transport } from './contract.js';

export const kWire = Symbol('bastion.wire');
export const kKeepalive = Symbol('bastion.keepalive');

/**
 * The broker's record of one connection. Middleware sees it through the read-only ClientInfo
 * interface; the broker fills in identity as CONNECT and authentication progress.
 */
export class LiveClient implements ClientInfo {
  id = '';
  username: string | undefined = undefined;
  groups: readonly string[] = [];
  protocolVersion = 0;
  clean = true;
  keepalive = 0;
  connectedAt = 0;
  /** Why the broker closed it, when the broker did (kicked, denied, packet-too-large …). */
  closeReason: DisconnectReason | undefined = undefined;
  closeDetail: string | undefined = undefined;
  /** Errors seen on the connection (protocol errors, keepalive timeout). */
  error: Error | undefined = undefined;
  keepaliveExpired = false;
  /** The Aedes client behind this record, for the helpers below (set at hand-over; never exposed). */
  [kWire]: { readonly subscriptions: Readonly<Record<string, unknown>>; readonly closed: boolean } | undefined = undefined;
  /** A keepalive set by a middleware in onConnect (see setKeepalive); applied before Aedes arms its timer. */
  [kKeepalive]: number | undefined = undefined;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly listener: string;
  readonly transport: Transport;
  readonly certificate: ClientCertificate | undefined;
  readonly tls: ConnectionInfo['tls'];
  readonly proxy: ConnectionInfo['proxy'];

  constructor(conn: ConnectionInfo) {
    this.remoteAddress = conn.remoteAddress;
    this.remotePort = conn.remotePort;
    this.listener = conn.listener;
    this.transport = conn.transport;
    this.certificate = conn.certificate;
    this.tls = conn.tls;
    this.proxy = conn.proxy;
  }

  toJSON(): Record<string, unknown> {
    const c = this.certificate;
    return {
      id: this.id,
      username: this.username,
      groups: this.groups,
      remoteAddress: this.remoteAddress,
      remotePort: this.remotePort,
      listener: this.listener,
      transport: this.transport,
      protocolVersion: this.protocolVersion,
      clean: this.clean,
      keepalive: this.keepalive,
      connectedAt: new Date(this.connectedAt).toISOString(),
      tls: this.tls,
      proxy: this.proxy,
      certificate: c && {
        subject: c.subject,
        commonName: c.commonName,
        issuer: c.issuer,
        serial: c.serial,
        fingerprint256: c.fingerprint256,
        validFrom: c.validFrom.toISOString(),
        validTo: c.validTo.toISOString(),
      },
    };
  }
}

/**
 * Change the keepalive a client asked for, in seconds (0 = none). Only meaningful in `onConnect`:
 * the broker applies it before Aedes arms the keepalive timer (1.5 × keepalive, [MQTT-3.1.2-24]).
 * MQTT 3.1.1 cannot tell the client, so a client pinging less often than this is disconnected.
 */
export function setKeepalive(client: ClientInfo, seconds: number): void {
  if (client instanceof LiveClient && Number.isInteger(seconds) && seconds >= 0 && seconds <= 65535) client[kKeepalive] = seconds;
}

/** Does a connected client hold a subscription to exactly this topic filter now? */
export function hasSubscription(client: ClientInfo, topicFilter: string): boolean {
  if (!(client instanceof LiveClient)) return false;
  const subs = client[kWire]?.subscriptions;
  return subs !== undefined && Object.hasOwn(subs, topicFilter);
}

/**
 * Is this client's connection closed, or has the broker decided to close it (a refusal at CONNECT,
 * a failed authentication, a kick)? Works from hand-over on, whether the client got as far as
 * CONNACK or not: a middleware that counts attempts in flight (from `onConnect` to `onConnected`)
 * uses it to forget the ones that ended without reaching `onConnected`. False when the core cannot
 * tell (a `ClientInfo` it did not make).
 */
export function isClosing(client: ClientInfo): boolean {
  return client instanceof LiveClient && (client.closeReason !== undefined || client[kWire]?.closed === true);
}
