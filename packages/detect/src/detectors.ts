/**
 * The detectors middleware: the seven detectors of the note (DE.NM-1/2, DE.PM-1, DE.ID-1/2/3/4,
 * together PR.SS-3 suspicious behaviour detection) behind one middleware.
 *
 * Most detectors read the security event bus (auth.failed, connection.refused, client.disconnected,
 * publish.denied …). Three need a per-message signal, taken in `authorizePublish` /
 * `authorizeSubscribe` hooks that only count and always answer `undefined`: synchronous, no Promise,
 * no allocation except when a connection uses a topic for the first time in a window. The hooks are
 * always there (a reload may turn such a detector on: `update`); while none needs them, a hook is
 * one lookup in an empty Map.
 *
 * Memory is bounded: every table keyed by something a client chooses (address, client id, username)
 * holds at most `capacity` entries (default 10,000; least recently touched forgotten first), and
 * per-connection state lives only as long as the connection, with at most `maxTopics` topics.
 */
import { isDeepStrictEqual } from 'node:util';
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
  /**
   * Give DE.ID-3 Aedes' message bus (`broker.aedes.mq`) to read subscriptions from. It is kept, so
   * undeliverable detection turned on later (`update`) uses it too. False when undeliverable
   * detection is on and the bus has no readable matcher (it then stays silent).
   */
  attachSubscribers(mq: unknown): boolean;
  /**
   * Change the detector set while running (a profile reload): each detector is on when its options
   * are given. A detector whose options (and `capacity`) did not change keeps its windows and
   * counts; a changed one starts afresh; one turned off stops, with its timers. Open connections are
   * watched by per-connection detectors turned on here from now on. Event subscriptions and the
   * detections raised so far (`recent()`, `stats().raised`) carry over.
   */
  update(opts: DetectorsOptions): void;
  stats(): DetectorsStats;
  /** Entries held across every table (per-connection state excluded): never above tables × capacity. */
  tracked(): number;
  /** The most recent detections (at most 100), oldest first. */
  recent(): Detection[];
}

const RECENT = 100;

/** One detector instance per option key; undefined when off. */
interface DetectorSet {
  connectionAttempts: ConnectionAttempts | undefined;
  abnormal: AbnormalTermination | undefined;
  authFailures: AuthFailures | undefined;
  scanning: TopicScanning | undefined;
  undeliverable: Undeliverable | undefined;
  silent: SilentClients | undefined;
  availability: Availability | undefined;
}

type Key = 'connectionAttempts' | 'abnormalTermination' | 'authFailures' | 'topicScanning' | 'undeliverable' | 'silentClients' | 'availability';

export function detectors(initial: DetectorsOptions = {}): Detectors {
  let opts: DetectorsOptions = initial;
  let capacity = opts.capacity ?? DEFAULT_CAPACITY;
  let ctx: BrokerContext | undefined;
  const raised: Partial<Record<DetectorName, number>> = {};
  const recent: Detection[] = [];

  const emit = (e: SecurityEvent) => ctx?.events.emit(e);
  const raise = (input: DetectionInput): Detection => {
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
  };
  const runtimeFor = (cap: number): DetectorRuntime => ({ capacity: cap, raise });
  let runtime = runtimeFor(capacity);

  /** The detectors `o` asks for; those in `keep` whose options are unchanged are reused (their windows and counts go on). */
  const build = (o: DetectorsOptions, rt: DetectorRuntime, keep: { set: DetectorSet; opts: DetectorsOptions } | undefined, now: number): DetectorSet => {
    const same = (k: Key) => keep !== undefined && isDeepStrictEqual(keep.opts[k], o[k]);
    return {
      connectionAttempts: same('connectionAttempts') ? keep?.set.connectionAttempts : o.connectionAttempts && new ConnectionAttempts(o.connectionAttempts, rt),
      abnormal: same('abnormalTermination') ? keep?.set.abnormal : o.abnormalTermination && new AbnormalTermination(o.abnormalTermination, rt),
      authFailures: same('authFailures') ? keep?.set.authFailures : o.authFailures && new AuthFailures(o.authFailures, rt),
      scanning: same('topicScanning') ? keep?.set.scanning : o.topicScanning && new TopicScanning(o.topicScanning, rt),
      undeliverable: same('undeliverable') ? keep?.set.undeliverable : o.undeliverable && new Undeliverable(o.undeliverable, rt),
      silent: same('silentClients') ? keep?.set.silent : o.silentClients && new SilentClients(o.silentClients, rt),
      availability: same('availability')
        ? keep?.set.availability
        : o.availability && o.availability.expected.length > 0
          ? new Availability(o.availability, rt, (d) => emit(detectionEvent({ ...d, time: Date.now(), message: `expected client ${JSON.stringify(d.offender.clientId)} is available again` }, DETECTION_CLEARED)), now)
          : undefined,
    };
  };

  const now0 = Date.now();
  let set = build(opts, runtime, undefined, now0);
  // Read on every hook: the set in force (swapped whole by update).
  let { connectionAttempts, abnormal, authFailures, scanning, undeliverable, silent, availability } = set;
  let subscribers = new SubscriberIndex(capacity);
  let mq: unknown;

  const namesOf = (x: DetectorSet): DetectorName[] => {
    const out: DetectorName[] = [];
    if (x.connectionAttempts) out.push('connection-attempts');
    if (x.abnormal) out.push('abnormal-termination');
    if (x.availability) out.push('availability');
    if (x.authFailures) out.push('auth-failures');
    if (x.scanning) out.push('topic-scanning');
    if (x.undeliverable) out.push('undeliverable');
    if (x.silent) out.push('silent-clients');
    return out;
  };
  let enabled = namesOf(set);
  let controls: readonly string[] = ['PR.SS-3', ...enabled.map((n) => DETECTOR_CONTROLS[n])];

  let perConnection = !!(scanning || undeliverable || silent || availability);
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

  /** Event subscription and timers for the set in force. */
  const start = (context: BrokerContext) => {
    if (connectionAttempts || abnormal || authFailures || scanning) unsubscribe = context.events.on(onEvent);
    if (perConnection) {
      clock = Date.now();
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
  };

  const stop = () => {
    unsubscribe?.();
    unsubscribe = undefined;
    clearInterval(ticker);
    ticker = undefined;
    clearInterval(sweeper);
    sweeper = undefined;
  };

  /** Read subscriptions for DE.ID-3 while it is on (and a bus was given). */
  const followSubscribers = (): boolean => {
    if (!undeliverable) {
      subscribers.detach();
      return true;
    }
    if (mq === undefined || subscribers.attached) return true;
    return subscribers.attach(mq);
  };

  const mw: Detectors = {
    name: 'detectors',
    get controls() {
      return controls;
    },
    get enabled() {
      return enabled;
    },

    setup(context) {
      ctx = context;
      start(context);
    },

    attachSubscribers(bus) {
      mq = bus;
      return followSubscribers();
    },

    update(next) {
      const now = Date.now();
      const cap = next.capacity ?? DEFAULT_CAPACITY;
      const sameCapacity = cap === capacity;
      const rt = sameCapacity ? runtime : runtimeFor(cap);
      // built before anything changes: a constructor that throws leaves the running set as it was
      const nextSet = build(next, rt, sameCapacity ? { set, opts } : undefined, now);
      const availabilityChanged = nextSet.availability !== set.availability;
      stop();
      opts = next;
      set = nextSet;
      ({ connectionAttempts, abnormal, authFailures, scanning, undeliverable, silent, availability } = set);
      if (!sameCapacity) {
        capacity = cap;
        runtime = rt;
        subscribers.detach();
        subscribers = new SubscriberIndex(cap);
      }
      enabled = namesOf(set);
      controls = ['PR.SS-3', ...enabled.map((n) => DETECTOR_CONTROLS[n])];
      const wasPerConnection = perConnection;
      perConnection = !!(scanning || undeliverable || silent || availability);
      if (!followSubscribers()) ctx?.logger.warn('undeliverable-message detection (DE.ID-3) cannot read subscriptions from this message bus; it stays silent');
      if (!perConnection) conns.clear();
      else {
        if (!wasPerConnection && ctx) for (const c of ctx.clients()) conns.set(c, new ConnState(c, now));
        for (const s of conns.values()) {
          s.lastTopic = ''; // cached "has subscribers" answers belong to the previous index
          if (availabilityChanged) s.watch = availability && s.client.id !== '' ? availability.connected(s.client.id, now) : undefined;
        }
      }
      if (ctx) {
        start(ctx);
        ctx.logger.info({ detectors: enabled }, 'detectors changed');
      }
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
      stop();
      subscribers.detach();
      conns.clear();
    },

    // Every hook is present (the core binds its chains once), each one a test when its detectors are off.
    onConnection(conn: ConnectionInfo): Verdict {
      connectionAttempts?.attempt(conn.remoteAddress, Date.now());
      return undefined;
    },

    onConnected(client: ClientInfo) {
      if (!perConnection) return;
      const now = Date.now();
      const s = new ConnState(client, now);
      if (availability && client.id !== '') s.watch = availability.connected(client.id, now);
      conns.set(client, s);
    },

    onDisconnect(client: ClientInfo, _reason: DisconnectReason) {
      const s = conns.get(client);
      if (s === undefined) return;
      conns.delete(client);
      if (s.watch !== undefined && availability) availability.disconnected(s.watch, Date.now());
    },

    // Hot path. Everything below is integer arithmetic and Map/Set lookups on the fast path.
    authorizePublish(client: ClientInfo, packet: PublishPacket): Verdict {
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
    },

    authorizeSubscribe(client: ClientInfo, sub: Subscription): Verdict {
      const s = conns.get(client);
      if (s === undefined) return undefined;
      s.data = true;
      if (scanning) scanning.topic(s, sub.topic, clock);
      return undefined;
    },
  };

  return mw;
}
