/**
 * Listeners: mqtt (TCP), mqtts (TLS), ws and wss. Each one turns an accepted transport into a
 * Duplex plus a ConnectionInfo (remote address, listener, verified certificate) and hands both to
 * the broker. The remote address and certificate come from the socket for TCP/TLS and from the
 * HTTP request's socket for WebSocket, so every listener reports them the same way.
 */
import net from 'node:net';
import tls from 'node:tls';
import http from 'node:http';
import https from 'node:https';
import { constants as cryptoConstants } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { ConnectionInfo, Transport } from './contract.js';
import { normalizeAddress } from './address.js';
import { peerCertificate } from './certificate.js';
import { BastionError } from './errors.js';

/** ECDHE key exchange with AEAD ciphers only (forward secrecy, no CBC), TLS 1.3 suites first. */
export const DEFAULT_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
].join(':');

export interface TlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
  ca?: Array<string | Buffer> | undefined;
  crl?: Array<string | Buffer> | undefined;
  minVersion?: 'TLSv1.2' | 'TLSv1.3' | undefined;
  ciphers?: string | undefined;
  clientCertificate?: 'none' | 'optional' | 'required' | undefined;
  /** Milliseconds; a handshake that does not finish in time is dropped (slowloris). */
  handshakeTimeout?: number | undefined;
}

export interface ListenerOptions {
  name?: string | undefined;
  transport: Transport;
  host?: string | undefined;
  port: number;
  /** WebSocket path, default '/mqtt'. */
  path?: string | undefined;
  tls?: TlsOptions | undefined;
  /** Largest MQTT packet in bytes; WebSocket frames above it are refused from their header. */
  maxPacketSize?: number | undefined;
  /**
   * TCP_NODELAY on accepted sockets. Off by default, as in Aedes and Mosquitto: Nagle batches the
   * many small MQTT writes (measured here: ~16% less broker CPU per QoS 0 message over TCP).
   */
  noDelay?: boolean | undefined;
}

export type AcceptHandler = (conn: Duplex, info: ConnectionInfo) => void;
export type TlsErrorHandler = (info: { listener: string; remoteAddress: string; error: Error }) => void;
/**
 * Called with each accepted TCP socket before anything is read from it (before the TLS handshake or
 * the WebSocket upgrade); false refuses it. The gate counts what it admits and releases it on the
 * socket's 'close'. It closes what it refuses — or, when `mayHold` (a plain TCP listener: nothing
 * else reads the socket), may hold it unread for a while first, to slow a client that retries at once.
 */
export type SocketGate = (socket: net.Socket, listener: string, mayHold: boolean) => boolean;

export interface Listener {
  readonly name: string;
  readonly transport: Transport;
  address(): AddressInfo;
  close(): Promise<void>;
  /** Replace certificate/key/CA/CRL for new handshakes; existing connections keep theirs. */
  setSecureContext?(opts: TlsOptions): void;
  /**
   * Replace the TLS session-ticket keys (48 bytes): tickets issued before can no longer resume a
   * session, so those clients make a full handshake (PR.SS-7). Note: setSecureContext also starts
   * with fresh ticket keys.
   */
  setTicketKeys?(keys: Buffer): void;
}

export function secureContextOptions(t: TlsOptions): tls.SecureContextOptions & tls.TlsOptions {
  const mode = t.clientCertificate ?? 'none';
  return {
    cert: t.cert,
    key: t.key,
    ca: t.ca && t.ca.length > 0 ? t.ca : undefined,
    crl: t.crl && t.crl.length > 0 ? t.crl : undefined,
    minVersion: t.minVersion ?? 'TLSv1.2',
    ciphers: t.ciphers ?? DEFAULT_CIPHERS,
    honorCipherOrder: true,
    // Client-initiated renegotiation is a DoS lever and has no use for MQTT.
    secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
    requestCert: mode !== 'none',
    // 'optional' verifies in our code: a certificate that was sent must be valid.
    rejectUnauthorized: mode === 'required',
    handshakeTimeout: t.handshakeTimeout ?? 10_000,
  };
}

function tlsInfo(socket: tls.TLSSocket, listener: string, transport: Transport): ConnectionInfo {
  const cipher = socket.getCipher();
  return {
    remoteAddress: normalizeAddress(socket.remoteAddress),
    remotePort: socket.remotePort ?? 0,
    listener,
    transport,
    certificate: socket.authorized ? peerCertificate(socket) : undefined,
    tls: { protocol: socket.getProtocol(), cipher: cipher.name },
  };
}

function plainInfo(socket: net.Socket, listener: string, transport: Transport): ConnectionInfo {
  return {
    remoteAddress: normalizeAddress(socket.remoteAddress),
    remotePort: socket.remotePort ?? 0,
    listener,
    transport,
    certificate: undefined,
    tls: undefined,
  };
}

/**
 * New handshakes get `t`: the secure context (certificate, key, CA, CRL, versions, ciphers) and the
 * server's client-certificate settings, which Node keeps on the server, not in the context.
 */
function setServerTls(server: tls.Server, t: TlsOptions): void {
  const o = secureContextOptions(t);
  server.setSecureContext(o);
  const s = server as tls.Server & { requestCert: boolean; rejectUnauthorized: boolean };
  s.requestCert = o.requestCert === true;
  s.rejectUnauthorized = o.rejectUnauthorized === true;
}

/** With clientCertificate 'optional', a certificate that was presented but failed verification is refused. */
function presentedButInvalid(socket: tls.TLSSocket): boolean {
  if (socket.authorized) return false;
  const raw = socket.getPeerCertificate();
  return raw !== undefined && Object.keys(raw).length > 0;
}

function listenOn(server: net.Server, host: string, port: number, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(new BastionError('BASTION_ERR_LISTEN', `listener ${name} cannot listen on ${host}:${port}: ${err.code ?? err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
  });
}

export async function startListener(opts: ListenerOptions, accept: AcceptHandler, onTlsError: TlsErrorHandler, gate?: SocketGate): Promise<Listener> {
  const host = opts.host ?? '127.0.0.1';
  const transport = opts.transport;
  if ((transport === 'mqtts' || transport === 'wss') && !opts.tls) {
    throw new BastionError('BASTION_ERR_TLS_CONFIG', `listener ${opts.name ?? transport}: ${transport} needs tls.cert and tls.key`);
  }
  let name = opts.name ?? `${transport}:${opts.port}`;
  const refused = new WeakSet<net.Socket>();
  const reportTlsError = (err: Error, socket: tls.TLSSocket | net.Socket) => {
    // Node leaves the socket open after a handshake error or timeout: close it, or a slowloris
    // handshake would hold it forever despite handshakeTimeout.
    socket.destroy();
    const raw = (socket as unknown as { _parent?: net.Socket })._parent;
    if (raw !== undefined && refused.has(raw)) return; // refused by the gate: reported there
    onTlsError({ listener: name, remoteAddress: normalizeAddress(socket.remoteAddress), error: err });
  };
  const mayHold = transport === 'mqtt'; // TLS and HTTP layers read the raw socket themselves
  const admit = (socket: net.Socket): boolean => {
    if (gate === undefined || gate(socket, name, mayHold)) return true;
    refused.add(socket);
    if (!mayHold) socket.destroy();
    return false;
  };

  if (transport === 'mqtt' || transport === 'mqtts') {
    let server: net.Server;
    let optional = false; // mqtts: clientCertificate is 'optional' (changes with setSecureContext)
    if (transport === 'mqtt') {
      server = net.createServer((socket) => {
        if (!admit(socket)) return;
        if (opts.noDelay) socket.setNoDelay(true);
        accept(socket, plainInfo(socket, name, transport));
      });
    } else {
      const t = opts.tls as TlsOptions;
      optional = t.clientCertificate === 'optional';
      server = tls.createServer(secureContextOptions(t), (socket) => {
        if (opts.noDelay) socket.setNoDelay(true);
        if (optional && presentedButInvalid(socket)) {
          reportTlsError(new Error(`client certificate rejected: ${String(socket.authorizationError)}`), socket);
          socket.destroy();
          return;
        }
        accept(socket, tlsInfo(socket, name, transport));
      });
      server.on('tlsClientError', reportTlsError);
      // the raw TCP socket, before the handshake
      if (gate) server.on('connection', admit);
    }
    await listenOn(server, host, opts.port, name);
    const address = () => server.address() as AddressInfo;
    if (opts.name === undefined && opts.port === 0) name = `${transport}:${address().port}`;
    return {
      name,
      transport,
      address,
      close: () => closeServer(server),
      setSecureContext:
        transport === 'mqtts'
          ? (t: TlsOptions) => {
              setServerTls(server as tls.Server, t);
              optional = t.clientCertificate === 'optional';
            }
          : undefined,
      setTicketKeys: transport === 'mqtts' ? (keys: Buffer) => (server as tls.Server).setTicketKeys(keys) : undefined,
    };
  }

  // WebSocket: MQTT over ws/wss, subprotocol 'mqtt'.
  const path = opts.path ?? '/mqtt';
  // The HTTP upgrade must finish in time too (a slowloris sending headers byte by byte).
  const upgradeTimeout = opts.tls?.handshakeTimeout ?? 10_000;
  const httpTimeouts = { headersTimeout: upgradeTimeout, requestTimeout: upgradeTimeout, connectionsCheckingInterval: Math.min(1_000, upgradeTimeout) };
  const web =
    transport === 'wss'
      ? https.createServer({ ...secureContextOptions(opts.tls as TlsOptions), ...httpTimeouts })
      : http.createServer(httpTimeouts);
  if (gate) web.on('connection', admit);
  web.on('request', (_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket only\n');
  });
  if (transport === 'wss') web.on('tlsClientError', reportTlsError);
  let wssOptional = opts.tls?.clientCertificate === 'optional';
  const wss = new WebSocketServer({
    server: web,
    path,
    // ws buffers a frame until complete; its own limit refuses huge frames from their header.
    maxPayload: (opts.maxPacketSize ?? 256 * 1024) + 8,
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
  });
  wss.on('connection', (ws, req) => {
    const socket = req.socket;
    let info: ConnectionInfo;
    if (transport === 'wss') {
      const s = socket as tls.TLSSocket;
      if (wssOptional && presentedButInvalid(s)) {
        reportTlsError(new Error(`client certificate rejected: ${String(s.authorizationError)}`), s);
        ws.terminate();
        return;
      }
      info = tlsInfo(s, name, transport);
    } else {
      info = plainInfo(socket, name, transport);
    }
    const stream = createWebSocketStream(ws);
    // errors surface through the stream, which Aedes listens to; keep ws quiet
    ws.on('error', () => {});
    accept(stream, info);
  });
  await listenOn(web, host, opts.port, name);
  const address = () => web.address() as AddressInfo;
  if (opts.name === undefined && opts.port === 0) name = `${transport}:${address().port}`;
  return {
    name,
    transport,
    address,
    async close() {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      web.closeAllConnections?.();
      await closeServer(web);
    },
    setSecureContext:
      transport === 'wss'
        ? (t: TlsOptions) => {
            setServerTls(web as https.Server, t);
            wssOptional = t.clientCertificate === 'optional';
          }
        : undefined,
    setTicketKeys: transport === 'wss' ? (keys: Buffer) => (web as https.Server).setTicketKeys(keys) : undefined,
  };
}
