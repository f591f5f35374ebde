import { BastionError } from '@bastion/core';
import { metrics, publishSecurityTopics, serveMetrics } from '@bastion/detect';
import type { Audit, MetricsServer } from '@bastion/detect';
import type { Bans } from '@bastion/middleware';
import type { Profile } from '@bastion/profile';
import type { Bastion } from '../broker.js';
import type { ControlFactory, PreparedChange, Reconfigurable, Service } from '../controls.js';

type Settings = NonNullable<Profile['metrics']>;
type Endpoint = NonNullable<Settings['endpoint']>;

/** A metrics server bound on its new address by `prepare`, answering 503 until the reload applies. */
interface PreparedServer extends PreparedChange {
  readonly server: MetricsServer;
}

/**
 * Metrics from `metrics`: the Prometheus endpoint and the $SYS security topics.
 *
 * A reload: a new endpoint address (or an endpoint added) is bound while the reload is planned —
 * taken, the reload fails and the old endpoint serves on — then the old server is closed; a new
 * path or token applies in place; the $SYS topics restart with their new period; process metrics
 * come and go. Removing the whole `metrics` section needs a restart (reload.ts).
 */
export const metricsControl: ControlFactory = ({ profile, logger }) => {
  let m: Settings | undefined = profile.metrics;
  if (!m) return undefined;
  const live: Reconfigurable = {
    reconfigure(next) {
      if (next.metrics) mw.setProcessMetrics(next.metrics.process);
    },
  };
  const mw = Object.assign(metrics({ processMetrics: m.process }), live);
  let server: MetricsServer | undefined;
  let stopTopics: (() => void) | undefined;
  let broker: Bastion | undefined;

  const listen = async (e: Endpoint, held: boolean): Promise<MetricsServer> => {
    try {
      return await serveMetrics(mw, { ...e, held }, logger);
    } catch (err) {
      throw new BastionError('BASTION_ERR_LISTEN', `metrics endpoint cannot listen on ${e.host}:${e.port}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
  };
  const serving = (s: MetricsServer, e: Endpoint) => {
    mw.endpoint = s.address();
    logger.info({ host: s.address().host, port: s.address().port, path: e.path }, 'metrics endpoint listening');
  };
  const startTopics = (b: Bastion, s: Settings) => {
    if (!s.sysTopics) return;
    const aedes = b.aedes;
    stopTopics = publishSecurityTopics(b.events, {
      publish: (topic, payload) => aedes.publish({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false } as never, () => {}),
      interval: s.sysInterval,
      snapshot: () => mw.snapshot(),
    });
  };
  const moved = (a: Endpoint | undefined, b: Endpoint | undefined) => b !== undefined && (a === undefined || a.host !== b.host || a.port !== b.port);

  const service: Service = {
    name: 'metrics',
    controls: ['ID.AM-1', 'DE.CM-1'],
    async start(b) {
      broker = b;
      const bans = b.controls.get<Bans>('bans');
      if (bans) mw.gauge('bastion_bans_active', 'Bans in force now', () => bans.size);
      const auditLog = b.controls.get<Audit>('audit');
      if (auditLog) mw.gauge('bastion_audit_seq', 'Sequence number of the last audit line (an anchor for the hash chain head)', () => auditLog.head?.seq ?? 0);
      if (m) startTopics(b, m);
      if (m?.endpoint) {
        server = await listen(m.endpoint, false);
        serving(server, m.endpoint);
      }
    },
    async stop() {
      broker = undefined;
      stopTopics?.();
      stopTopics = undefined;
      await server?.close();
      server = undefined;
    },
    async prepare(next): Promise<PreparedServer | undefined> {
      const e = next.metrics?.endpoint;
      // not listening yet: start() binds whatever is in force then
      if (broker === undefined || e === undefined || !moved(m?.endpoint, e)) return undefined;
      const fresh = await listen(e, true);
      return { server: fresh, abort: () => fresh.close() };
    },
    async reconfigure(next, change) {
      const n = next.metrics;
      if (n === undefined) return; // turning metrics off is refused before (reload.ts)
      const prepared = change.prepared as PreparedServer | undefined;
      const old = server;
      if (prepared !== undefined && n.endpoint !== undefined) {
        server = prepared.server;
        server.configure({ held: false });
        serving(server, n.endpoint);
        await old?.close();
      } else if (n.endpoint === undefined) {
        server = undefined;
        mw.endpoint = undefined;
        await old?.close();
      } else {
        server?.configure({ path: n.endpoint.path, token: n.endpoint.token });
      }
      if (broker !== undefined && (n.sysTopics !== m?.sysTopics || n.sysInterval !== m?.sysInterval)) {
        stopTopics?.();
        stopTopics = undefined;
        startTopics(broker, n);
      }
      m = n;
    },
  };
  return { phase: 'observe', middleware: [mw], services: [service] };
};
