/**
 * DE.ID-2 Topic scanning: one connection touching many distinct topics (PUBLISH or SUBSCRIBE) in a
 * window, or many authorization denials for one client id, username or address (probing what is
 * allowed). The distinct-topic set lives on the connection's state and never holds more than
 * `maxTopics` entries; denial counters are bounded tables.
 */
import type { SecurityEvent } from '@bastion/core';
import { WindowedCounters, addressKey } from '../window.js';
import type { OffenderKey } from '../detection.js';
import type { ConnState } from './state.js';
import type { DetectorRuntime, TopicScanningOptions } from './types.js';

export class TopicScanning {
  readonly #o: TopicScanningOptions;
  readonly #rt: DetectorRuntime;
  readonly denialsByClientId: WindowedCounters;
  readonly denialsByUsername: WindowedCounters;
  readonly denialsByIp: WindowedCounters;

  constructor(o: TopicScanningOptions, rt: DetectorRuntime) {
    this.#o = o;
    this.#rt = rt;
    this.denialsByClientId = new WindowedCounters(o.window, rt.capacity);
    this.denialsByUsername = new WindowedCounters(o.window, rt.capacity);
    this.denialsByIp = new WindowedCounters(o.window, rt.capacity);
  }

  tracked(): number {
    return this.denialsByClientId.size + this.denialsByUsername.size + this.denialsByIp.size;
  }

  /** Hot path: a topic used by a connection. Allocates only when the topic is new to it. */
  topic(s: ConnState, topic: string, now: number): void {
    const o = this.#o;
    if (now - s.scanStart >= o.window) {
      s.scanStart = now;
      s.topics?.clear();
    }
    const set = (s.topics ??= new Set());
    if (set.has(topic)) return;
    set.add(topic);
    if (set.size <= o.maxTopics) return;
    const n = set.size;
    set.clear();
    const c = s.client;
    this.#rt.raise({
      detector: 'topic-scanning',
      severity: o.severity ?? 'high',
      key: 'connection',
      offender: { clientId: c.id, ip: c.remoteAddress, username: c.username },
      evidence: { count: n, threshold: o.maxTopics, window: o.window, kind: 'distinct-topics' },
      topic,
      message: `client ${JSON.stringify(c.id)} used ${n} distinct topics within ${o.window} ms`,
    });
  }

  onEvent(e: SecurityEvent, now: number): void {
    if (e.type !== 'publish.denied' && e.type !== 'subscribe.denied') return;
    if (e.clientId !== undefined) this.#denied(this.denialsByClientId, e.clientId, 'clientId', e, now);
    if (e.username !== undefined) this.#denied(this.denialsByUsername, e.username, 'username', e, now);
    if (e.remoteAddress !== undefined) this.#denied(this.denialsByIp, addressKey(e.remoteAddress), 'ip', e, now);
  }

  #denied(table: WindowedCounters, k: string, key: OffenderKey, e: SecurityEvent, now: number): void {
    const o = this.#o;
    const n = table.add(k, now);
    if (n <= o.maxDenials) return;
    table.reset(k);
    this.#rt.raise({
      detector: 'topic-scanning',
      severity: o.severity ?? 'high',
      key,
      offender: { clientId: e.clientId, ip: e.remoteAddress, username: e.username },
      evidence: { count: n, threshold: o.maxDenials, window: o.window, kind: 'denials', range: key === 'ip' && k !== e.remoteAddress ? k : undefined },
      topic: e.topic,
      message: `${n} publish/subscribe denials for ${key} ${JSON.stringify(k)} within ${o.window} ms`,
    });
  }
}
