/**
 * DE.ID-3 Sending undeliverable messages: a connection publishing, above a threshold, to topics no
 * one subscribes to (retained messages are stored for later subscribers, so they do not count).
 */
import type { ConnState } from './state.js';
import type { DetectorRuntime, UndeliverableOptions } from './types.js';

export class Undeliverable {
  readonly #o: UndeliverableOptions;
  readonly #rt: DetectorRuntime;

  constructor(o: UndeliverableOptions, rt: DetectorRuntime) {
    this.#o = o;
    this.#rt = rt;
  }

  /** Hot path: one more message without subscribers. Plain integer arithmetic. */
  count(s: ConnState, topic: string, now: number): void {
    const o = this.#o;
    if (now - s.undeliverableStart >= o.window) {
      s.undeliverableStart = now;
      s.undeliverable = 0;
    }
    if (++s.undeliverable <= o.max) return;
    const n = s.undeliverable;
    s.undeliverable = 0;
    const c = s.client;
    this.#rt.raise({
      detector: 'undeliverable',
      severity: o.severity ?? 'low',
      key: 'connection',
      offender: { clientId: c.id, ip: c.remoteAddress, username: c.username },
      evidence: { count: n, threshold: o.max, window: o.window },
      topic,
      message: `client ${JSON.stringify(c.id)} published ${n} messages nobody subscribes to within ${o.window} ms (last topic ${JSON.stringify(topic)})`,
    });
  }
}
