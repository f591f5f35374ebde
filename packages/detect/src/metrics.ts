/**
 * Metrics (DE.CM, for operators): a Prometheus registry fed by the security event bus, plus message
 * and byte counters taken on the hot path as plain integers (no labels, no allocation per message;
 * prom-client reads them only when scraped).
 */
import type { BrokerContext, ClientInfo, Middleware, PublishPacket, SecurityEvent, Verdict } from '@bastion/core';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export interface MetricsOptions {
  /** Also export Node process metrics (CPU, memory, event loop lag …). Default false. */
  processMetrics?: boolean;
}

/** Plain numbers, for $SYS topics and tests. */
export interface MetricsSnapshot {
  clients: number;
  connections: number;
  messagesReceived: number;
  bytesReceived: number;
  messagesDelivered: number;
  bytesDelivered: number;
  denials: number;
  authFailures: number;
  detections: number;
  responseActions: number;
  bans: number;
}

export interface Metrics extends Middleware {
  readonly registry: Registry;
  /** Gauges read from elsewhere at scrape time (active bans, audit head …). */
  gauge(name: string, help: string, read: () => number): void;
  /** The Prometheus text exposition. */
  scrape(): Promise<string>;
  readonly contentType: string;
  snapshot(): MetricsSnapshot;
  /** Where the HTTP endpoint listens, once it does (set by whoever serves it). */
  endpoint: { host: string; port: number } | undefined;
  /** Export Node process metrics or stop (a profile reload); the other series are untouched. */
  setProcessMetrics(on: boolean): void;
}

const DENIALS = new Set(['connection.refused', 'auth.failed', 'publish.denied', 'subscribe.denied', 'forward.denied', 'packet.rejected']);

const byteLength = (p: Buffer | string): number => (typeof p === 'string' ? Buffer.byteLength(p) : p.length);

export function metrics(opts: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  /** Names of the process metrics registered, while they are. */
  let processMetrics: string[] | undefined;
  const setProcessMetrics = (on: boolean) => {
    if (on && processMetrics === undefined) {
      const before = new Set(registry.getMetricsAsArray().map((m) => m.name));
      collectDefaultMetrics({ register: registry, prefix: 'bastion_' });
      processMetrics = registry.getMetricsAsArray().map((m) => m.name).filter((n) => !before.has(n));
    } else if (!on && processMetrics !== undefined) {
      for (const n of processMetrics) registry.removeSingleMetric(n);
      processMetrics = undefined;
    }
  };
  setProcessMetrics(opts.processMetrics === true);
  let ctx: BrokerContext | undefined;
  let unsubscribe: (() => void) | undefined;

  // hot-path counters: plain numbers, read by prom-client at scrape time
  let received = 0;
  let receivedBytes = 0;
  let delivered = 0;
  let deliveredBytes = 0;
  // slow-path totals mirrored for snapshot()
  const totals = { connections: 0, denials: 0, authFailures: 0, detections: 0, responseActions: 0, bans: 0 };

  const monotonic = (name: string, help: string, read: () => number) => {
    let reported = 0;
    return new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const now = read();
        if (now > reported) this.inc(now - reported);
        reported = now;
      },
    });
  };
  monotonic('bastion_messages_received_total', 'PUBLISH packets accepted from clients', () => received);
  monotonic('bastion_bytes_received_total', 'Payload bytes of accepted PUBLISH packets', () => receivedBytes);
  monotonic('bastion_messages_delivered_total', 'Messages delivered to subscribers', () => delivered);
  monotonic('bastion_bytes_delivered_total', 'Payload bytes delivered to subscribers', () => deliveredBytes);
  new Gauge({
    name: 'bastion_clients_connected',
    help: 'Clients connected now',
    registers: [registry],
    collect() {
      let n = 0;
      if (ctx) for (const _ of ctx.clients()) n++;
      this.set(n);
    },
  });
  const connections = new Counter({ name: 'bastion_connections_total', help: 'Client sessions started (CONNACK accepted)', registers: [registry] });
  const disconnections = new Counter({ name: 'bastion_disconnections_total', help: 'Client sessions ended, by reason', labelNames: ['reason'], registers: [registry] });
  const denials = new Counter({ name: 'bastion_denials_total', help: 'Refusals and denials, by event type, reason and CSF control', labelNames: ['type', 'reason', 'control'], registers: [registry] });
  const detections = new Counter({ name: 'bastion_detections_total', help: 'Detections raised, by detector, CSF control and severity', labelNames: ['detector', 'control', 'severity'], registers: [registry] });
  const actions = new Counter({ name: 'bastion_response_actions_total', help: 'Response actions, by action and outcome', labelNames: ['action', 'outcome'], registers: [registry] });
  const bans = new Counter({ name: 'bastion_bans_total', help: 'Bans added (by responses, operators or the profile)', registers: [registry] });

  const onEvent = (e: SecurityEvent) => {
    const t = e.type;
    if (t === 'client.connected') {
      connections.inc();
      totals.connections++;
    } else if (t === 'client.disconnected') {
      disconnections.inc({ reason: String(e.reason ?? 'unknown') });
    } else if (DENIALS.has(t)) {
      denials.inc({ type: t, reason: String(e.reason ?? 'unknown'), control: e.control });
      totals.denials++;
      if (t === 'auth.failed') totals.authFailures++;
    } else if (t === 'detection.raised') {
      const d = e.detail as { detector?: unknown; severity?: unknown } | undefined;
      detections.inc({ detector: String(d?.detector ?? 'unknown'), control: e.control, severity: String(d?.severity ?? 'unknown') });
      totals.detections++;
    } else if (t === 'response.action') {
      const d = e.detail as { action?: unknown; outcome?: unknown } | undefined;
      actions.inc({ action: String(d?.action ?? 'unknown'), outcome: String(d?.outcome ?? 'unknown') });
      totals.responseActions++;
    } else if (t === 'ban.added') {
      bans.inc();
      totals.bans++;
    }
  };

  const mw: Metrics = {
    name: 'metrics',
    controls: ['DE.CM-1'],
    registry,
    contentType: registry.contentType,
    endpoint: undefined,

    setup(context) {
      ctx = context;
      unsubscribe = context.events.on(onEvent, { types: ['client.connected', 'client.disconnected', ...DENIALS, 'detection.raised', 'response.action', 'ban.added'] });
    },

    // Hot path: two integer additions, nothing else.
    authorizePublish(_client: ClientInfo, packet: PublishPacket): Verdict {
      received++;
      receivedBytes += byteLength(packet.payload);
      return undefined;
    },
    authorizeForward(_client: ClientInfo, packet: PublishPacket): boolean {
      delivered++;
      deliveredBytes += byteLength(packet.payload);
      return true;
    },

    gauge(name, help, read) {
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read());
        },
      });
    },

    scrape: () => registry.metrics(),

    setProcessMetrics,

    snapshot() {
      let clients = 0;
      if (ctx) for (const _ of ctx.clients()) clients++;
      return { clients, messagesReceived: received, bytesReceived: receivedBytes, messagesDelivered: delivered, bytesDelivered: deliveredBytes, ...totals };
    },

    close() {
      unsubscribe?.();
    },
  };
  return mw;
}
