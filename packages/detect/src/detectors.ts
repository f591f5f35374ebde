/**
 * The detectors middleware: the seven detectors of the note (DE.NM-1/2, DE.PM-1, DE.ID-1/2/3/4,
 * together PR.SS-3 suspicious behaviour detection) behind one middleware.
 *
 * Most detectors read the security event bus (auth.failed, connection.refused, client.disconnected,
 * publish.denied …). Three need a per-message signal, taken in `authorizePublish` /
 * `authorizeSubscribe` hooks that only count and always answer `undefined`: synchronous, no Promise,
 * no allocation except when a connection uses a topic for the first time in a window. Those hooks
 * exist only when a detector needs them.
 *
 * Memory is bounded: every table keyed by something a client chooses (address, client id, username)
 * holds at most `capacity` entries (default 10,000; least recently touched forgotten first), and
 * per-connection state lives only as long as the connection, with at most `maxTopics` topics.
 */
import type { BrokerContext, ClientInfo, ConnectionInfo, DisconnectReason, Middleware, PublishPacket, SecurityEvent, Subscription, Verdict } from '@bastion/core';
import { DETECTION_CLEARED, DETECTION_RAISED, DETECTOR_CONTROLS, detectionEvent, makeDetection } from './detection.js';
import type { Detection, DetectionInput, DetectorName } from './detection.js';
import { AbnormalTermination } from './detectors/abnormal-termination.js';
import { AuthFailures } from './detectors/auth-failures.js';
import { Availability } from './detectors/availability.js';
import { ConnectionAttempts } from './detectors/connection-attempts.js';
import { SilentClients } from './detectors/silent-clients.js';
import { ConnState } from './detectors/state.js';
import { SubscriberIndex } from './detectors/subscribers.js';
import { TopicScanning } from './detectors/topic-scanning.js';
import { Undeliverable } from './detectors/undeliverable.js';
import type {
  AbnormalTerminationOptions,
  AuthFailuresOptions,
  AvailabilityOptions,
  ConnectionAttemptsOptions,
  DetectorRuntime,
  SilentClientsOptions,
  TopicScanningOptions,
  UndeliverableOptions,
} from './detectors/types.js';

export const DEFAULT_CAPACITY = 10_000;

/** Each detector is on when its options are given. */
export interface DetectorsOptions {
  /** Most entries in each table keyed by address, client id or username (default 10,000). */
  capacity?: number;
  connectionAttempts?: ConnectionAttemptsOptions;
  abnormalTermination?: AbnormalTerminationOptions;
  availability?: AvailabilityOptions;
  authFailures?: AuthFailuresOptions;
  topicScanning?: TopicScanningOptions;
  undeliverable?: UndeliverableOptions;
  silentClients?: SilentClientsOptions;
}

export interface DetectorsStats {
  /** The bound of each table. */
  readonly capacity: number;
  /** Live connections with per-connection state. */
  readonly connections: number;
  /** Entries held per detector (sum over its tables). */
  readonly tracked: Partial<Record<DetectorName, number>>;
  /** Detections raised per detector since start. */
  readonly raised: Partial<Record<DetectorName, number>>;
  /** Entries forgotten to stay within capacity, since start. */
  readonly evicted: number;
}

export interface Detectors extends Middleware {
  readonly enabled: readonly DetectorName[];
  /** Read subscriptions from Aedes' message bus (`broker.aedes.mq`) for DE.ID-3; false if unusable. */
  attachSubscribers(mq: unknown): boolean;
  stats(): DetectorsStats;
  /** Entries held across every table (per-connection state excluded): never above tables × capacity. */
  tracked(): number;
  /** The most recent detections (at most 100), oldest first. */
  recent(): Detection[];
}

const RECENT = 100;

export function detectors(opts: DetectorsOptions = {}): Detectors {
  const capacity = opts.capacity ?? DEFAULT_CAPACITY;
  let ctx: BrokerContext | undefined;
  const raised: Partial<Record<DetectorName, number>> = {};
  const recent: Detection[] = [];

  const emit = (e: SecurityEvent) => ctx?.events.emit(e);
  const runtime: DetectorRuntime = {
    capacity,
    raise(input: DetectionInput): Detection {
      const d = makeDetection(input);
      raised[d.detector as DetectorName] = (raised[d.detector as DetectorName] ?? 0) + 1;
      recent.push(d);
      if (recent.length > RECENT) recent.shift();
      // Emitted after the current hook or event returns: a response (disconnect, ban) must not
      // run inside Aedes' packet handling or inside another listener's dispatch.
      queueMicrotask(() => {
        if (!ctx) return;
        ctx.logger.warn({ detection: { id: d.id, detector: d.detector, control: d.control, severity: d.severity, key: d.key, offender: d.offender, evidence: d.evidence } }, DETECTION_RAISED);
        ctx.events.emit(detectionEvent(d, DETECTION_RAISED));
      });
      return d;
    },
  };

  const now0 = Date.now();
  const connectionAttempts = opts.connectionAttempts && new ConnectionAttempts(opts.connectionAttempts, runtime);
  const abnormal = opts.abnormalTermination && new AbnormalTermination(opts.abnormalTermination, runtime);
  const authFailures = opts.authFailures && new AuthFailures(opts.authFailures, runtime);
  const scanning = opts.topicScanning && new TopicScanning(opts.topicScanning, runtime);
  const undeliverable = opts.undeliverable && new Undeliverable(opts.undeliverable, runtime);
  const silent = opts.silentClients && new SilentClients(opts.silentClients, runtime);
  const availability =
    opts.availability && opts.availability.expected.length > 0
      ? new Availability(opts.availability, runtime, (d) => emit(detectionEvent({ ...d, time: Date.now(), message: `expected client ${JSON.stringify(d.offender.clientId)} is available again` }, DETECTION_CLEARED)), now0)
      : undefined;
  const subscribers = new SubscriberIndex(capacity);

  const enabled: DetectorName[] = [];
  if (connectionAttempts) enabled.push('connection-attempts');
  if (abnormal) enabled.push('abnormal-termination');
  if (availability) enabled.push('availability');
  if (authFailures) enabled.push('auth-failures');
  if (scanning) enabled.push('topic-scanning');
  if (undeliverable) enabled.push('undeliverable');
  if (silent) enabled.push('silent-clients');

  const perConnection = !!(scanning || undeliverable || silent || availability);
  const conns = new Map<ClientInfo, ConnState>();
  // A coarse clock for the per-message hooks: one Date.now() per tick instead of per PUBLISH.
  let clock = now0;
  let ticker: NodeJS.Timeout | undefined;
  let sweeper: NodeJS.Timeout | undefined;
  let unsubscribe: (() => void) | undefined;

  const onEvent = (e: SecurityEvent) => {
    const t = Date.now(); // not e.time: a producer's clock must not move the windows
    connectionAttempts?.onEvent(e, t);
    abnormal?.onEvent(e, t);
    authFailures?.onEvent(e, t);
    scanning?.onEvent(e, t);
  };

  const sweep = () => {
    const now = Date.now();
    silent?.sweep(conns.values(), now);
    availability?.sweep(now);
  };

  const mw: Detectors = {
    name: 'detectors',
    controls: ['PR.SS-3', ...enabled.map((n) => DETECTOR_CONTROLS[n])],
    enabled,

    setup(context) {
      ctx = context;
      if (connectionAttempts || abnormal || authFailures || scanning) unsubscribe = context.events.on(onEvent);
      if (perConnection) {
        ticker = setInterval(() => {
          clock = Date.now();
        }, 100);
        ticker.unref();
      }
      if (silent || availability) {
        const shortest = Math.min(silent?.after ?? Infinity, availability?.shortest ?? Infinity);
        sweeper = setInterval(sweep, Math.max(50, Math.min(5_000, Math.floor(shortest / 4))));
        sweeper.unref();
      }
    },

    attachSubscribers(mq) {
      return undeliverable ? subscribers.attach(mq) : false;
    },

    stats() {
      const tracked: Partial<Record<DetectorName, number>> = {};
      if (connectionAttempts) tracked['connection-attempts'] = connectionAttempts.tracked();
      if (abnormal) tracked['abnormal-termination'] = abnormal.tracked();
      if (availability) tracked.availability = availability.tracked();
      if (authFailures) tracked['auth-failures'] = authFailures.tracked();
      if (scanning) tracked['topic-scanning'] = scanning.tracked();
      if (undeliverable) tracked.undeliverable = 0;
      if (silent) tracked['silent-clients'] = 0;
      const tables = [
        connectionAttempts?.byIp,
        connectionAttempts?.byClientId,
        abnormal?.byClientId,
        abnormal?.byIp,
        authFailures?.byIp,
        authFailures?.byUsername,
        authFailures?.byClientId,
        scanning?.denialsByClientId,
        scanning?.denialsByUsername,
        scanning?.denialsByIp,
      ];
      const evicted = tables.reduce((n, t) => n + (t?.evicted ?? 0), 0);
      return { capacity, connections: conns.size, tracked, raised: { ...raised }, evicted };
    },

    tracked() {
      return Object.values(mw.stats().tracked).reduce((a, b) => a + (b ?? 0), 0);
    },

    recent: () => [...recent],

    close() {
      unsubscribe?.();
      clearInterval(ticker);
      clearInterval(sweeper);
      subscribers.detach();
      conns.clear();
    },
  };

  if (connectionAttempts) {
    mw.onConnection = (conn: ConnectionInfo): Verdict => {
      connectionAttempts.attempt(conn.remoteAddress, Date.now());
      return undefined;
    };
  }

  if (perConnection) {
    mw.onConnected = (client: ClientInfo) => {
      const now = Date.now();
      const s = new ConnState(client, now);
      if (availability && client.id !== '') s.watch = availability.connected(client.id, now);
      conns.set(client, s);
    };
    mw.onDisconnect = (client: ClientInfo, _reason: DisconnectReason) => {
      const s = conns.get(client);
      if (s === undefined) return;
      conns.delete(client);
      if (s.watch !== undefined && availability) availability.disconnected(s.watch, Date.now());
    };
    // Hot path. Everything below is integer arithmetic and Map/Set lookups on the fast path.
    mw.authorizePublish = (client: ClientInfo, packet: PublishPacket): Verdict => {
      const s = conns.get(client);
      if (s === undefined) return undefined;
      s.data = true;
      if (s.watch !== undefined) s.watch.lastPublish = clock;
      const topic = packet.topic;
      if (topic === s.lastTopic && s.lastGen === subscribers.gen) {
        // the same topic as last time, and no subscription changed since: the answers stand
        if (!s.lastHas && undeliverable && !packet.retain) undeliverable.count(s, topic, clock);
        return undefined;
      }
      s.lastTopic = topic;
      s.lastGen = subscribers.gen;
      if (scanning) scanning.topic(s, topic, clock);
      if (undeliverable) {
        s.lastHas = subscribers.has(topic);
        if (!s.lastHas && !packet.retain) undeliverable.count(s, topic, clock);
      }
      return undefined;
    };
    mw.authorizeSubscribe = (client: ClientInfo, sub: Subscription): Verdict => {
      const s = conns.get(client);
      if (s === undefined) return undefined;
      s.data = true;
      if (scanning) scanning.topic(s, sub.topic, clock);
      return undefined;
    };
  }

  return mw;
}
