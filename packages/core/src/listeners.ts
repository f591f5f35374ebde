/**
 * Listeners: mqtt (TCP), mqtts (TLS), ws and wss. Each one turns an accepted transport into a
 * Duplex plus a ConnectionInfo (remote address, listener, verified certificate) and hands both to
 * the broker. The remote address and certificate come from the socket for TCP/TLS and from the
 * HTTP request's socket for WebSocket, so every listener reports them the same way. Behind a load
 * balancer (`proxyProtocol`), the remote address is the client's from the PROXY header, read
 * before anything else (proxy-protocol.ts).
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
import { readProxyHeader } from './proxy-protocol.js';
import type { ProxyProtocolError } from './proxy-protocol.js';

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

/**
 * PROXY protocol (v1 and v2) on a listener behind a load balancer. A peer for which `trusted` is
 * true must open with a header (or may, with `required: false`), and the client it names is the
 * connection's address from then on: for the accept-time gate, access lists, bans, events and
 * client listings. Any other peer is a client itself: a PROXY header from it closes the
 * connection, and without one it is served as usual.
 */
export interface ProxyProtocolOptions {
  /** Whether a peer address (as the socket reports it, IPv4-mapped unwrapped) is a trusted proxy. */
  trusted: (address: string) => boolean;
  /** A trusted peer must send a header (default true); false: a connection without one keeps the peer's address. */
  required?: boolean | undefined;
  /** Milliseconds a connection has for the bytes that settle the header question (default 5000). */
  timeout?: number | undefined;
}

export const DEFAULT_PROXY_TIMEOUT = 5_000;

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
  /** Read a PROXY protocol header from trusted load balancers; see ProxyProtocolOptions. */
  proxyProtocol?: ProxyProtocolOptions | undefined;
}

export type AcceptHandler = (conn: Duplex, info: ConnectionInfo) => void;
export type TlsErrorHandler = (info: { listener: string; remoteAddress: string; error: Error }) => void;
/** A connection closed while its PROXY header was read; `remoteAddress` is the peer's own. */
export type ProxyErrorHandler = (info: { listener: string; remoteAddress: string; error: ProxyProtocolError }) => void;
/**
 * Called with each accepted TCP socket before anything is read from it (before the TLS handshake or
 * the WebSocket upgrade); false refuses it. The gate counts what it admits and releases it on the
 * socket's 'close'. It closes what it refuses — or, since nothing else has read the socket yet (the
 * TLS and HTTP layers get it only once admitted), may hold it unread for a while first, to slow a
 * client that retries at once.
 * With `proxyProtocol`, a trusted proxy's socket comes once its header was read (and nothing
 * beyond it), with `remoteAddress` the client's address from the header.
 */
export type SocketGate = (socket: net.Socket, listener: string, remoteAddress?: string) => boolean;

/** The client a PROXY header named, and the proxy that relayed it. */
interface Origin {
  readonly address: string;
  readonly port: number;
  readonly proxy: { readonly address: string; readonly port: number };
}

/** The raw TCP socket under a TLS socket. */
function rawOf(socket: net.Socket): net.Socket | undefined {
  return (socket as unknown as { _parent?: net.Socket })._parent;
}

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

function tlsInfo(socket: tls.TLSSocket, listener: string, transport: Transport, origin: Origin | undefined): ConnectionInfo {
  const cipher = socket.getCipher();
  if (origin !== undefined) {
    return {
      remoteAddress: origin.address,
      remotePort: origin.port,
      listener,
      transport,
      certificate: socket.authorized ? peerCertificate(socket) : undefined,
      tls: { protocol: socket.getProtocol(), cipher: cipher.name },
      proxy: origin.proxy,
    };
  }
  return {
    remoteAddress: normalizeAddress(socket.remoteAddress),
    remotePort: socket.remotePort ?? 0,
    listener,
    transport,
    certificate: socket.authorized ? peerCertificate(socket) : undefined,
    tls: { protocol: socket.getProtocol(), cipher: cipher.name },
  };
}

function plainInfo(socket: net.Socket, listener: string, transport: Transport, origin: Origin | undefined): ConnectionInfo {
  if (origin !== undefined) {
    return { remoteAddress: origin.address, remotePort: origin.port, listener, transport, certificate: undefined, tls: undefined, proxy: origin.proxy };
  }
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

export async function startListener(
  opts: ListenerOptions,
  accept: AcceptHandler,
  onTlsError: TlsErrorHandler,
  gate?: SocketGate,
  onProxyError?: ProxyErrorHandler,
): Promise<Listener> {
  const host = opts.host ?? '127.0.0.1';
  const transport = opts.transport;
  if ((transport === 'mqtts' || transport === 'wss') && !opts.tls) {
    throw new BastionError('BASTION_ERR_TLS_CONFIG', `listener ${opts.name ?? transport}: ${transport} needs tls.cert and tls.key`);
  }
  let name = opts.name ?? `${transport}:${opts.port}`;
  const refused = new WeakSet<net.Socket>();
  const proxy = opts.proxyProtocol;
  // raw socket → the client its PROXY header named (only listeners with proxyProtocol have one)
  const origins = proxy === undefined ? undefined : new WeakMap<net.Socket, Origin>();
  const reportTlsError = (err: Error, socket: tls.TLSSocket | net.Socket) => {
    // Node leaves the socket open after a handshake error or timeout: close it, or a slowloris
    // handshake would hold it forever despite handshakeTimeout.
    socket.destroy();
    const raw = rawOf(socket);
    if (raw !== undefined && refused.has(raw)) return; // refused by the gate: reported there
    const origin = raw === undefined ? undefined : origins?.get(raw);
    // a client certificate that failed verification: Node closes the socket and reports only "socket hang up"
    const unverified = (socket as Partial<tls.TLSSocket>).authorizationError;
    const error = unverified && (err as NodeJS.ErrnoException).code === 'ECONNRESET' ? new Error(`client certificate rejected: ${String(unverified)}`) : err;
    onTlsError({ listener: name, remoteAddress: origin?.address ?? normalizeAddress(socket.remoteAddress), error });
  };
  const originOf = (socket: tls.TLSSocket): Origin | undefined => {
    if (origins === undefined) return undefined;
    const raw = rawOf(socket);
    return raw === undefined ? undefined : origins.get(raw);
  };
  const admit = (socket: net.Socket, remoteAddress?: string): boolean => {
    if (gate === undefined || gate(socket, name, remoteAddress)) return true;
    refused.add(socket);
    return false;
  };
  /**
   * Put the gate before everything `server` does with a socket: Node's TLS or HTTP layer gets only
   * what the gate admitted, so a refused socket costs no handshake and can be held unread.
   */
  const gateFirst = (server: net.Server): void => {
    const next = server.listeners('connection') as Array<(socket: net.Socket) => void>;
    server.removeAllListeners('connection');
    server.on('connection', (socket: net.Socket) => {
      if (!admit(socket)) return;
      for (const listener of next) listener.call(server, socket);
    });
  };
  /**
   * Put the PROXY header before everything `server` does with a socket: its own 'connection'
   * listeners (Node's TLS or HTTP layer, or the mqtt handler) get the socket only once the header
   * was read and the gate admitted the client it names, with the bytes after the header unread.
   */
  // sockets whose header is still awaited: no one else holds them yet, so close() must end them
  const awaiting = new Set<net.Socket>();
  const readProxyFirst = (server: net.Server, p: ProxyProtocolOptions, seen: WeakMap<net.Socket, Origin>): void => {
    const next = server.listeners('connection') as Array<(socket: net.Socket) => void>;
    server.removeAllListeners('connection');
    const timeout = p.timeout ?? DEFAULT_PROXY_TIMEOUT;
    const fromTrusted = p.required === false ? 'optional' : 'required';
    server.on('connection', (socket: net.Socket) => {
      const peer = normalizeAddress(socket.remoteAddress);
      const trusted = p.trusted(peer);
      // an untrusted peer is the client itself: the gate judges it at once, as without a proxy
      if (!trusted && !admit(socket, peer)) return;
      awaiting.add(socket);
      readProxyHeader(socket, trusted ? fromTrusted : 'refused', timeout, (error, header) => {
        awaiting.delete(socket);
        if (error !== undefined) {
          socket.destroy();
          if (error.problem !== 'closed') onProxyError?.({ listener: name, remoteAddress: peer, error });
          return;
        }
        const source = header?.source;
        if (source !== undefined) seen.set(socket, { address: source.address, port: source.port, proxy: { address: peer, port: socket.remotePort ?? 0 } });
        // LOCAL, UNKNOWN or no header: the proxy's own connection, judged on its own address
        if (trusted && !admit(socket, source?.address ?? peer)) return;
        for (const listener of next) listener.call(server, socket);
      });
    });
  };

  if (transport === 'mqtt' || transport === 'mqtts') {
    let server: net.Server;
    let optional = false; // mqtts: clientCertificate is 'optional' (changes with setSecureContext)
    if (transport === 'mqtt') {
      server = net.createServer((socket) => {
        if (origins === undefined && !admit(socket)) return; // with proxyProtocol, admitted after the header
        if (opts.noDelay) socket.setNoDelay(true);
        accept(socket, plainInfo(socket, name, transport, origins?.get(socket)));
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
        accept(socket, tlsInfo(socket, name, transport, originOf(socket)));
      });
      server.on('tlsClientError', reportTlsError);
      // the raw TCP socket, before the handshake
      if (gate && origins === undefined) gateFirst(server);
    }
    if (proxy !== undefined && origins !== undefined) readProxyFirst(server, proxy, origins);
    await listenOn(server, host, opts.port, name);
    const address = () => server.address() as AddressInfo;
    if (opts.name === undefined && opts.port === 0) name = `${transport}:${address().port}`;
    return {
      name,
      transport,
      address,
      close: () => {
        for (const s of awaiting) s.destroy();
        return closeServer(server);
      },
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
  if (proxy !== undefined && origins !== undefined) readProxyFirst(web, proxy, origins);
  else if (gate) gateFirst(web);
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
      info = tlsInfo(s, name, transport, originOf(s));
    } else {
      info = plainInfo(socket, name, transport, origins?.get(socket));
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
      for (const s of awaiting) s.destroy();
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
