/**
 * DE.ID-4 Clients that connect but send no data: no PUBLISH and no SUBSCRIBE within `after` of
 * CONNECT (keepalive PINGREQs do not count). Reported once per connection, by a periodic sweep over
 * the live connections (no timer per client).
 */
import type { ConnState } from './state.js';
import type { DetectorRuntime, SilentClientsOptions } from './types.js';

export class SilentClients {
  readonly #o: SilentClientsOptions;
  readonly #rt: DetectorRuntime;

  constructor(o: SilentClientsOptions, rt: DetectorRuntime) {
    this.#o = o;
    this.#rt = rt;
  }

  get after(): number {
    return this.#o.after;
  }

  sweep(conns: Iterable<ConnState>, now: number): void {
    const o = this.#o;
    for (const s of conns) {
      if (s.data || s.silentRaised || now - s.since < o.after) continue;
      s.silentRaised = true;
      const c = s.client;
      this.#rt.raise({
        detector: 'silent-clients',
        severity: o.severity ?? 'low',
        key: 'connection',
        offender: { clientId: c.id, ip: c.remoteAddress, username: c.username },
        evidence: { count: 0, threshold: 1, window: o.after, connectedFor: now - s.since },
        message: `client ${JSON.stringify(c.id)} connected ${now - s.since} ms ago and has sent no PUBLISH or SUBSCRIBE`,
      });
    }
  }
}
