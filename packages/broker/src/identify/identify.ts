/**
 * Identify (ID.AM-1/2/3, ID.IS-1/4): what is connected, what runs, what flows where, with which
 * cryptography — observed on the running broker.
 *
 * An observer middleware at the end of the chain (it never denies) and a broker service (it needs
 * the listeners). The hot path, `authorizePublish`, is one WeakMap lookup, a few integer updates and
 * one Map lookup of the topic in a small per-connection cache of edges already recorded: nothing is
 * allocated for a topic the connection used before. Only a topic new to the connection splits it
 * into levels and walks the topic tree. Refused attempts are read from the event bus
 * (`publish.denied`, `subscribe.denied`), since a refused request never reaches an observer.
 *
 * Reach it with `broker.controls.get<Identify>('identify')`, the admin API (`/v1/identify/…`) or
 * `bastion identify …`.
 */
import type { BrokerContext, ClientInfo, DisconnectReason, Middleware, PublishPacket, SecurityEvent, Subscription } from '@bastion/core';
import type { Bastion } from '../broker.js';
import type { Service } from '../controls.js';
import { Devices } from './devices.js';
import type { DeviceInventory, DeviceRecord, ExpectedDevice } from './devices.js';
import { FlowMap } from './flows.js';
import type { DataFlowMap, FlowDirection, FlowEdge } from './flows.js';
import { toDot, toMermaid } from './render.js';
import { softwareInventory, toCycloneDx } from './software.js';
import type { CycloneDxBom, SoftwareInventory } from './software.js';
import { Negotiated, cryptoReport } from './crypto.js';
import type { CryptoReport, ListenerCrypto } from './crypto.js';

export interface IdentifyOptions {
  /** Known devices kept (default 10,000). */
  capacity?: number;
  /** Clients the deployment expects (the profile's `detectors.availability.expected`). */
  expected?: readonly ExpectedDevice[];
  /** Distinct values a topic level may take before it is shown as `+` (default 10). */
  generalizeAfter?: number;
  /** Edges of the data-flow map kept (default 10,000). */
  maxEdges?: number;
  /** Nodes of the topic tree kept (default 10,000). */
  maxTopicNodes?: number;
  /** Listener configuration for the crypto report; the broker service fills it from the profile. */
  listeners?: readonly ListenerCrypto[];
  /** Extra `bastion:*` properties in the CycloneDX metadata (profile name, tier). */
  properties?: Record<string, string>;
}

export type FlowFormat = 'json' | 'mermaid' | 'dot';

export interface Identify extends Middleware, Omit<Service, 'controls'> {
  /** ID.AM-1: connected and known devices, with certificates and last seen. */
  devices(): DeviceInventory;
  /** ID.AM-2: Bastion, Node.js, OpenSSL and the installed packages (read once, then cached). */
  software(): Promise<SoftwareInventory>;
  /** ID.AM-2 as a CycloneDX 1.5 JSON SBOM (a fresh serial number each call). */
  cyclonedx(): Promise<CycloneDxBom>;
  /** ID.AM-3 / ID.IS-1: who publishes and subscribes to which topic patterns. */
  flows(): DataFlowMap;
  /** The data-flow map as Mermaid or Graphviz DOT text (or pretty JSON). */
  flowsAs(format: FlowFormat): string;
  /** ID.IS-4: TLS versions and suites per listener and per client. */
  crypto(): Promise<CryptoReport>;
  /** New expected clients and SBOM properties while running (a profile reload); what was seen stays. */
  update(opts: Pick<IdentifyOptions, 'expected' | 'properties'>): void;
}

/** Per connection: its device record, flow identity and a cache of the edges it already used. */
interface ConnState {
  readonly device: DeviceRecord;
  readonly identity: string;
  gen: number;
  /** Made on the first PUBLISH: a subscriber-only or idle device never needs it. */
  published: Map<string, FlowEdge> | undefined;
}

/** Distinct topics remembered per connection; past it the cache starts over (a scanner cannot grow it). */
const CONN_CACHE = 64;
/** Stands for "not recorded, the map is full" in the per-connection cache, so a full map stays cheap. */
const OVERFLOW: FlowEdge = { identity: '', direction: 'publish', pattern: '', count: 0, denied: 0, qos: 0, firstSeen: 0, lastSeen: 0 };

/**
 * A coarse clock for the hot path: `Date.now()` returns a boxed number (an allocation per call), and
 * "last seen" needs no better than a second. Ticks only while some identify control is set up.
 */
const CLOCK_MS = 1000;
let clock = Date.now();
let clockUsers = 0;
let clockTimer: NodeJS.Timeout | undefined;
function clockStart(): void {
  clock = Date.now();
  if (clockUsers++ > 0) return;
  clockTimer = setInterval(() => (clock = Date.now()), CLOCK_MS);
  clockTimer.unref();
}
function clockStop(): void {
  if (--clockUsers > 0) return;
  clearInterval(clockTimer);
  clockTimer = undefined;
}

/** The flow identity: the authenticated name (certificate identity or username), else the client id. */
const identityOf = (c: Pick<ClientInfo, 'username' | 'id'>): string => c.username ?? c.id;

export function identify(initial: IdentifyOptions = {}): Identify {
  let opts = initial;
  const devices = new Devices({ capacity: opts.capacity, expected: opts.expected });
  const map = new FlowMap({ generalizeAfter: opts.generalizeAfter, maxEdges: opts.maxEdges, maxNodes: opts.maxTopicNodes });
  const negotiated = new Negotiated();
  const states = new WeakMap<ClientInfo, ConnState>();
  let listeners: readonly ListenerCrypto[] = opts.listeners ?? [];
  let ctx: BrokerContext | undefined;
  let offEvents: (() => void) | undefined;
  let software: Promise<SoftwareInventory> | undefined;

  function onEvent(e: SecurityEvent): void {
    // subscribed to publish.denied and subscribe.denied only
    if (e.topic === undefined) return;
    const identity = e.username ?? e.clientId;
    if (identity === undefined) return;
    const direction: FlowDirection = e.type === 'publish.denied' ? 'publish' : 'subscribe';
    map.denied(identity, direction, e.topic, e.time);
  }

  const self: Identify = {
    name: 'identify',
    controls: ['ID.AM-1', 'ID.AM-2', 'ID.AM-3', 'ID.IS-1', 'ID.IS-4'],
    setup(c) {
      ctx = c;
      offEvents = c.events.on(onEvent, { types: ['publish.denied', 'subscribe.denied'] });
      clockStart();
    },
    onConnected(client) {
      const now = Date.now();
      const device = devices.connected(client, now);
      states.set(client, { device, identity: identityOf(client), gen: map.generation, published: undefined });
      negotiated.record(client, now);
    },
    onDisconnect(client: ClientInfo, reason: DisconnectReason) {
      const s = states.get(client);
      if (s === undefined) return;
      states.delete(client);
      devices.disconnected(s.device, reason, Date.now());
    },
    // Hot path: see the module comment. A will checked at CONNECT has no state yet and is skipped.
    authorizePublish(client: ClientInfo, packet: PublishPacket) {
      const s = states.get(client);
      if (s === undefined) return undefined;
      const now = clock;
      s.device.messagesIn++;
      s.device.lastSeen = now;
      const published = (s.published ??= new Map());
      if (s.gen !== map.generation) {
        published.clear();
        s.gen = map.generation;
      }
      let e = published.get(packet.topic);
      if (e === undefined) {
        e = map.edge(s.identity, 'publish', packet.topic, now) ?? OVERFLOW;
        if (s.gen !== map.generation) {
          published.clear(); // that topic re-generalised the tree: older cached edges may be merged away
          s.gen = map.generation;
        }
        if (published.size >= CONN_CACHE) published.clear();
        published.set(packet.topic, e);
      }
      if (e !== OVERFLOW) {
        e.count++;
        e.qos |= 1 << packet.qos;
        e.lastSeen = now;
      }
      return undefined;
    },
    authorizeSubscribe(client: ClientInfo, sub: Subscription) {
      const s = states.get(client);
      if (s === undefined) return undefined;
      const now = Date.now();
      s.device.lastSeen = now;
      s.device.subscriptions++;
      const e = map.edge(s.identity, 'subscribe', sub.topic, now);
      if (e !== undefined) {
        e.count++;
        e.qos |= 1 << sub.qos;
        e.lastSeen = now;
      }
      return undefined;
    },
    close() {
      if (offEvents === undefined) return;
      offEvents();
      offEvents = undefined;
      clockStop();
    },
    start(broker: Bastion) {
      if (opts.listeners !== undefined) return;
      // Profile listeners and open listeners are in the same order; port-0 names are the bound port's.
      const open = broker.openListeners;
      listeners = broker.profile.listeners.map((l, i) => {
        const a = open[i]?.address();
        const base = { name: open[i]?.name ?? l.name, transport: l.protocol, host: l.host, port: a?.port ?? l.port };
        if (l.protocol !== 'mqtts' && l.protocol !== 'wss') return base;
        const t = l.tls;
        return { ...base, tls: { minVersion: t.minVersion, ciphers: t.ciphers, clientCertificate: t.clientCertificate, cert: t.cert, ca: t.ca, crl: t.crl } };
      });
    },
    stop() {},
    devices: () => devices.toJSON(),
    software() {
      software ??= softwareInventory();
      software.catch(() => (software = undefined)); // a failed read is retried next time
      return software;
    },
    async cyclonedx() {
      return toCycloneDx(await self.software(), { properties: opts.properties });
    },
    flows: () => map.toJSON(),
    flowsAs(format) {
      const json = map.toJSON();
      return format === 'mermaid' ? toMermaid(json) : format === 'dot' ? toDot(json) : JSON.stringify(json, null, 2) + '\n';
    },
    crypto: () => cryptoReport(listeners, ctx ? ctx.clients() : [], negotiated),
    update(next) {
      devices.setExpected(next.expected ?? []);
      opts = { ...opts, expected: next.expected, properties: next.properties };
    },
  };
  return self;
}
