/**
 * The device inventory (ID.AM-1, and ID.EA-1 through the remote address): every client seen since
 * the broker started, by client id, with its identity, certificate and when it was last seen, plus
 * the clients the profile expects (the `detectors.availability.expected` list) that never came.
 *
 * Bounded: at most `capacity` records; when full, the device disconnected the longest is forgotten
 * (connected ones never are; `evicted` counts the forgotten).
 */
import type { ClientCertificate, ClientInfo, DisconnectReason } from '@bastion/core';
import { normalizeSerial as pkiSerial } from '@bastion/pki';

export interface ExpectedDevice {
  /** An exact client id. */
  readonly clientId?: string | undefined;
  /** A glob over client ids (`*` any run of characters, `?` one character). */
  readonly pattern?: string | undefined;
}

export interface CertificateView {
  commonName: string | null;
  subject: Readonly<Record<string, string | string[]>>;
  issuer: Readonly<Record<string, string | string[]>>;
  /** In the form of CRLs and `bastion certs list` (whole bytes, lower-case hex). */
  serial: string;
  fingerprint256: string;
  validFrom: string;
  validTo: string;
  dnsNames: readonly string[];
  uris: readonly string[];
  emails: readonly string[];
  /** Public key: RSA with its size, EC with its curve. */
  key: { type: string; bits: number | null; curve: string | null };
}

/** A device record. Mutable counters: updated in place by the observer. */
export interface DeviceRecord {
  clientId: string;
  identity: string | undefined;
  groups: readonly string[];
  live: number;
  connections: number;
  firstSeen: number;
  lastSeen: number;
  connectedAt: number;
  disconnectedAt: number;
  lastDisconnect: DisconnectReason | undefined;
  remoteAddress: string;
  remotePort: number;
  listener: string;
  transport: string;
  protocolVersion: number;
  clean: boolean;
  keepalive: number;
  tls: { protocol: string | null; cipher: string } | undefined;
  certificate: ClientCertificate | undefined;
  messagesIn: number;
  subscriptions: number;
}

export interface DeviceView {
  clientId: string;
  identity: string | null;
  groups: readonly string[];
  /** connected: now; disconnected: seen since start; expected: listed by the profile, never seen. */
  status: 'connected' | 'disconnected' | 'expected';
  expected: boolean;
  firstSeen: string | null;
  lastSeen: string | null;
  connectedAt: string | null;
  disconnectedAt: string | null;
  lastDisconnect: string | null;
  connections: number;
  remoteAddress: string | null;
  remotePort: number | null;
  listener: string | null;
  transport: string | null;
  protocolVersion: number | null;
  clean: boolean | null;
  keepalive: number | null;
  tls: { protocol: string | null; cipher: string } | null;
  certificate: CertificateView | null;
  messagesIn: number;
  subscriptions: number;
}

export interface DeviceInventory {
  generatedAt: string;
  connected: number;
  known: number;
  capacity: number;
  evicted: number;
  devices: DeviceView[];
  /** The profile's expected clients and whether they were seen. */
  expected: Array<{ clientId: string | null; pattern: string | null; seen: number; connected: number }>;
}

export const DEFAULT_DEVICE_CAPACITY = 10_000;

const iso = (t: number) => (t > 0 ? new Date(t).toISOString() : null);

function globRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

function serialOf(c: ClientCertificate): string {
  try {
    return pkiSerial(c.raw.serialNumber);
  } catch {
    return c.serial;
  }
}

export function certificateView(c: ClientCertificate): CertificateView {
  const raw = c.raw as unknown as { bits?: number; asn1Curve?: string; nistCurve?: string; pubkey?: Buffer; modulus?: string };
  const curve = raw.nistCurve ?? raw.asn1Curve ?? null;
  return {
    commonName: c.commonName ?? null,
    subject: c.subject,
    issuer: c.issuer,
    serial: serialOf(c),
    fingerprint256: c.fingerprint256,
    validFrom: c.validFrom.toISOString(),
    validTo: c.validTo.toISOString(),
    dnsNames: c.dnsNames,
    uris: c.uris,
    emails: c.emails,
    key: { type: curve !== null ? 'EC' : raw.modulus !== undefined ? 'RSA' : 'unknown', bits: typeof raw.bits === 'number' ? raw.bits : null, curve },
  };
}

/** What a CONNECT tells about a device, written into its record (new or known). */
function refresh(r: DeviceRecord, c: ClientInfo, now: number): void {
  r.identity = c.username;
  r.groups = c.groups;
  r.lastSeen = now;
  r.connectedAt = now;
  r.remoteAddress = c.remoteAddress;
  r.remotePort = c.remotePort;
  r.listener = c.listener;
  r.transport = c.transport;
  r.protocolVersion = c.protocolVersion;
  r.clean = c.clean;
  r.keepalive = c.keepalive;
  r.tls = c.tls;
  r.certificate = c.certificate;
  r.subscriptions = 0;
}

export class Devices {
  readonly capacity: number;
  readonly #records = new Map<string, DeviceRecord>();
  /** The disconnected records, longest disconnected first: eviction takes the first, in O(1). */
  readonly #offline = new Map<string, DeviceRecord>();
  #expected: ReadonlyArray<ExpectedDevice & { re?: RegExp }> = [];
  #evicted = 0;

  constructor(opts: { capacity?: number; expected?: readonly ExpectedDevice[] } = {}) {
    this.capacity = Math.max(1, opts.capacity ?? DEFAULT_DEVICE_CAPACITY);
    this.setExpected(opts.expected ?? []);
  }

  /** The clients the profile expects (a reload may change them; the records seen so far stay). */
  setExpected(expected: readonly ExpectedDevice[]): void {
    this.#expected = expected.map((e) => (e.pattern !== undefined ? { ...e, re: globRegExp(e.pattern) } : { ...e }));
  }

  get size(): number {
    return this.#records.size;
  }

  /** A client completed CONNECT: its record, created or refreshed (and moved to the recent end). */
  connected(c: ClientInfo, now: number): DeviceRecord {
    let r = this.#records.get(c.id);
    if (r === undefined) {
      this.#makeRoom();
      // the fields a CONNECT sets are filled by refresh() below
      r = { clientId: c.id, live: 0, connections: 0, firstSeen: now, disconnectedAt: 0, lastDisconnect: undefined, messagesIn: 0 } as DeviceRecord;
    } else {
      this.#records.delete(c.id); // re-inserted below: Map order is least recently connected first
      this.#offline.delete(c.id);
    }
    refresh(r, c, now);
    r.live++;
    r.connections++;
    this.#records.set(c.id, r);
    return r;
  }

  disconnected(r: DeviceRecord, reason: DisconnectReason, now: number): void {
    r.live = Math.max(0, r.live - 1);
    r.disconnectedAt = now;
    r.lastSeen = now;
    r.lastDisconnect = reason;
    if (r.live === 0 && this.#records.get(r.clientId) === r) {
      this.#offline.delete(r.clientId); // to the recent end
      this.#offline.set(r.clientId, r);
    }
  }

  /**
   * Forget the longest-disconnected records until there is room for one more. Connected records are
   * never forgotten, so with more clients connected than `capacity` the inventory grows past it —
   * without scanning the connected ones on every CONNECT (that scan was O(n) per connection).
   */
  #makeRoom(): void {
    for (const [id] of this.#offline) {
      if (this.#records.size < this.capacity) return;
      this.#offline.delete(id);
      this.#records.delete(id);
      this.#evicted++;
    }
  }

  #isExpected(clientId: string): boolean {
    return this.#expected.some((e) => (e.re ? e.re.test(clientId) : e.clientId === clientId));
  }

  toJSON(): DeviceInventory {
    const devices: DeviceView[] = [];
    let connected = 0;
    for (const r of this.#records.values()) {
      if (r.live > 0) connected++;
      devices.push({
        clientId: r.clientId,
        identity: r.identity ?? null,
        groups: r.groups,
        status: r.live > 0 ? 'connected' : 'disconnected',
        expected: this.#isExpected(r.clientId),
        firstSeen: iso(r.firstSeen),
        lastSeen: iso(r.lastSeen),
        connectedAt: iso(r.connectedAt),
        disconnectedAt: r.live > 0 ? null : iso(r.disconnectedAt),
        lastDisconnect: r.lastDisconnect ?? null,
        connections: r.connections,
        remoteAddress: r.remoteAddress,
        remotePort: r.remotePort,
        listener: r.listener,
        transport: r.transport,
        protocolVersion: r.protocolVersion,
        clean: r.clean,
        keepalive: r.keepalive,
        tls: r.tls ? { protocol: r.tls.protocol, cipher: r.tls.cipher } : null,
        certificate: r.certificate ? certificateView(r.certificate) : null,
        messagesIn: r.messagesIn,
        subscriptions: r.subscriptions,
      });
    }
    const expected = this.#expected.map((e) => {
      let seen = 0;
      let live = 0;
      for (const r of this.#records.values()) {
        if (e.re ? e.re.test(r.clientId) : e.clientId === r.clientId) {
          seen++;
          if (r.live > 0) live++;
        }
      }
      if (e.clientId !== undefined && seen === 0) devices.push(neverSeen(e.clientId));
      return { clientId: e.clientId ?? null, pattern: e.pattern ?? null, seen, connected: live };
    });
    devices.sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0));
    return { generatedAt: new Date().toISOString(), connected, known: this.#records.size, capacity: this.capacity, evicted: this.#evicted, devices, expected };
  }
}

function neverSeen(clientId: string): DeviceView {
  return {
    clientId,
    identity: null,
    groups: [],
    status: 'expected',
    expected: true,
    firstSeen: null,
    lastSeen: null,
    connectedAt: null,
    disconnectedAt: null,
    lastDisconnect: null,
    connections: 0,
    remoteAddress: null,
    remotePort: null,
    listener: null,
    transport: null,
    protocolVersion: null,
    clean: null,
    keepalive: null,
    tls: null,
    certificate: null,
    messagesIn: 0,
    subscriptions: 0,
  };
}
