/**
 * The resolved profile: what `loadProfile` and friends return. Everything is explicit here:
 * defaults applied, sizes in bytes, durations in milliseconds, paths absolute, `${env:NAME}`
 * substituted, and each TLS listener carrying its complete, merged TLS settings.
 */
import type { SectionsOutput } from './sections/index.js';
import type {
  AUTH_FACTORS,
  CERTIFICATE_IDENTITIES,
  CLIENT_CERTIFICATE_MODES,
  LOG_LEVELS,
  PROTOCOLS,
  TIERS,
  TLS_VERSIONS,
} from './schema.js';

/** NIST CSF implementation tier: 1 Partial, 2 Risk-Informed, 3 Repeatable, 4 Adaptive. */
export type Tier = (typeof TIERS)[number];
export type Protocol = (typeof PROTOCOLS)[number];
export type TlsVersion = (typeof TLS_VERSIONS)[number];
export type ClientCertificateMode = (typeof CLIENT_CERTIFICATE_MODES)[number];
export type CertificateIdentity = (typeof CERTIFICATE_IDENTITIES)[number];
export type AuthFactor = (typeof AUTH_FACTORS)[number];
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The top-level `tls` block as written (only the keys that were set), paths absolute, ca/crl as arrays. */
export interface TlsDefaults {
  cert?: string;
  key?: string;
  ca?: string[];
  crl?: string[];
  minVersion?: TlsVersion;
  ciphers?: string;
  clientCertificate?: ClientCertificateMode;
  /** Milliseconds. */
  handshakeTimeout?: number;
}

/** A TLS listener's effective settings: its own `tls` merged over the top-level `tls`, defaults applied. */
export interface ListenerTls {
  /** Absolute path of the server certificate chain (PEM). */
  cert: string;
  /** Absolute path of the server private key (PEM). */
  key: string;
  /** Absolute paths of the CA files client certificates must chain to; empty when none were given. */
  ca: string[];
  /** Absolute paths of the CRL files; empty when none were given. */
  crl: string[];
  minVersion: TlsVersion;
  /** Undefined: the broker's built-in hardened cipher list. */
  ciphers?: string;
  clientCertificate: ClientCertificateMode;
  /** Milliseconds. */
  handshakeTimeout: number;
}

/** `listeners[].proxyProtocol`: read the client address from trusted load balancers' PROXY headers. */
export interface ListenerProxyProtocol {
  /** Addresses and CIDR ranges of the trusted balancers, as written (validated). */
  trusted: string[];
  /** A trusted peer must send a header. */
  required: boolean;
  /** Milliseconds for the bytes that settle the header. */
  timeout: number;
}

interface ListenerBase {
  /** `name` from the profile, or `<protocol>:<port>`. Unique within the profile. */
  name: string;
  host: string;
  /** 0 = the operating system picks a free port. */
  port: number;
  /** Present when the listener is behind load balancers that send a PROXY protocol header. */
  proxyProtocol?: ListenerProxyProtocol;
}
export interface MqttListener extends ListenerBase {
  protocol: 'mqtt';
}
export interface MqttsListener extends ListenerBase {
  protocol: 'mqtts';
  tls: ListenerTls;
}
export interface WsListener extends ListenerBase {
  protocol: 'ws';
  /** HTTP path of the WebSocket endpoint, default '/mqtt'. */
  path: string;
}
export interface WssListener extends ListenerBase {
  protocol: 'wss';
  path: string;
  tls: ListenerTls;
}
/** Narrow on `protocol`: mqtts/wss listeners always have `tls`, ws/wss listeners always have `path`. */
export type Listener = MqttListener | MqttsListener | WsListener | WssListener;
export type TlsListener = MqttsListener | WssListener;

export interface AuthenticationSettings {
  anonymous: boolean;
  /** Present when password authentication is enabled. `file` is absolute. */
  passwords?: { file: string };
  /** Present when client-certificate identity is enabled. */
  certificates?: { identity: CertificateIdentity; clientIdMustMatch: boolean };
  /** Factors that must all be present and valid, without duplicates; empty = any one configured factor. */
  require: AuthFactor[];
}

/** Sections added by control packages (see sections/index.ts) come in through SectionsOutput. */
export interface Profile extends SectionsOutput {
  version: 1;
  name?: string;
  tier: Tier;
  /** Per-category overrides; empty when none. Use `tierFor(profile, 'PR.AC')` to read the effective tier. */
  tiers: Record<string, Tier>;
  listeners: Listener[];
  /** The top-level TLS defaults as written (already merged into each TLS listener). */
  tls?: TlsDefaults;
  authentication: AuthenticationSettings;
  limits: {
    /** Bytes. */
    maxPacketSize: number;
    /** Milliseconds. */
    connectTimeout: number;
  };
  sys: { subscribers: string[] };
  logging: { level: LogLevel };
  /** Absolute; undefined = the broker chooses. */
  dataDir?: string;
  /** Where the profile came from: the file path as given, or `<inline>` / `opts.source`. */
  source: string;
  /** Absolute directory relative paths were resolved against. */
  baseDir: string;
}
