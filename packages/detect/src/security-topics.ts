/**
 * $SYS security topics: detections and response actions as they happen, and a periodic snapshot of
 * the counters, published by the broker itself. Only the profile's `sys.subscribers` may subscribe
 * to $SYS (the core's sys-topics guard), and no client may publish there.
 */
import type { SecurityEvent, SecurityEventBus } from '@bastion/core';

export const SECURITY_TOPICS = Object.freeze({
  detections: '$SYS/bastion/security/detections',
  actions: '$SYS/bastion/security/actions',
  stats: '$SYS/bastion/security/stats',
});

export interface SecurityTopicsOptions {
  /** Publish `(topic, payload)`: the broker's own publish (e.g. `aedes.publish`). */
  publish(topic: string, payload: Buffer): void;
  /** Milliseconds between stats snapshots (0 = none). */
  interval: number;
  snapshot?: () => unknown;
}

/** Start publishing; returns the stop function. */
export function publishSecurityTopics(bus: SecurityEventBus, o: SecurityTopicsOptions): () => void {
  const off = bus.on(
    (e: SecurityEvent) => {
      const topic = e.type === 'response.action' ? SECURITY_TOPICS.actions : SECURITY_TOPICS.detections;
      // after the current dispatch: publishing re-enters Aedes
      setImmediate(() => o.publish(topic, Buffer.from(JSON.stringify(e))));
    },
    { types: ['detection.raised', 'detection.cleared', 'response.action'] },
  );
  let timer: NodeJS.Timeout | undefined;
  if (o.interval > 0 && o.snapshot) {
    const snap = o.snapshot;
    timer = setInterval(() => o.publish(SECURITY_TOPICS.stats, Buffer.from(JSON.stringify({ time: new Date().toISOString(), ...(snap() as object) }))), o.interval);
    timer.unref();
  }
  return () => {
    off();
    clearInterval(timer);
  };
}
