import type { ClientCertificate, ClientInfo, ConnectionInfo, DisconnectReason, Transport } from './contract.js';

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
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly listener: string;
  readonly transport: Transport;
  readonly certificate: ClientCertificate | undefined;
  readonly tls: ConnectionInfo['tls'];

  constructor(conn: ConnectionInfo) {
    this.remoteAddress = conn.remoteAddress;
    this.remotePort = conn.remotePort;
    this.listener = conn.listener;
    this.transport = conn.transport;
    this.certificate = conn.certificate;
    this.tls = conn.tls;
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
