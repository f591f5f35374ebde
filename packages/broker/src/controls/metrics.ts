import { metrics, publishSecurityTopics, serveMetrics } from '@bastion/detect';
import type { Audit, MetricsServer } from '@bastion/detect';
import type { Bans } from '@bastion/middleware';
import type { ControlFactory } from '../controls.js';

/** Metrics from `metrics`: the Prometheus endpoint and the $SYS security topics. */
export const metricsControl: ControlFactory = ({ profile, logger }) => {
  const m = profile.metrics;
  if (!m) return undefined;
  const mw = metrics({ processMetrics: m.process });
  let server: MetricsServer | undefined;
  let stopTopics: (() => void) | undefined;
  return {
    phase: 'observe',
    middleware: [mw],
    services: [
      {
        name: 'metrics',
        controls: ['ID.AM-1', 'DE.CM-1'],
        async start(broker) {
          const bans = broker.controls.get<Bans>('bans');
          if (bans) mw.gauge('bastion_bans_active', 'Bans in force now', () => bans.size);
          const auditLog = broker.controls.get<Audit>('audit');
          if (auditLog) mw.gauge('bastion_audit_seq', 'Sequence number of the last audit line (an anchor for the hash chain head)', () => auditLog.head?.seq ?? 0);
          if (m.sysTopics) {
            const aedes = broker.aedes;
            stopTopics = publishSecurityTopics(broker.events, {
              publish: (topic, payload) => aedes.publish({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false } as never, () => {}),
              interval: m.sysInterval,
              snapshot: () => mw.snapshot(),
            });
          }
          if (m.endpoint) {
            server = await serveMetrics(mw, m.endpoint, logger);
            mw.endpoint = server.address();
            logger.info({ host: server.address().host, port: server.address().port, path: m.endpoint.path }, 'metrics endpoint listening');
          }
        },
        async stop() {
          stopTopics?.();
          await server?.close();
        },
      },
    ],
  };
};
