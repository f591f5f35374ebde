/**
 * DE.NM-2 Abnormal termination of connections: sockets closed without DISCONNECT, keepalive
 * timeouts, protocol errors and oversized packets — per client id, per address, and across the
 * whole broker (a spike: a network outage, a crashing fleet, or an attack on the broker).
 */
import type { SecurityEvent } from '@bastion/core';
import { WindowedCounters, addressKey } from '../window.js';
import type { AbnormalTerminationOptions, DetectorRuntime } from './types.js';

export const ABNORMAL_REASONS: ReadonlySet<string> = new Set(['socket-closed', 'keepalive-timeout', 'protocol-error', 'packet-too-large']);

export class AbnormalTermination {
  readonly #o: AbnormalTerminationOptions;
  readonly #rt: DetectorRuntime;
  readonly byClientId: WindowedCounters;
  readonly byIp: WindowedCounters;
  readonly #fleet: WindowedCounters;

  constructor(o: AbnormalTerminationOptions, rt: DetectorRuntime) {
    this.#o = o;
    this.#rt = rt;
    this.byClientId = new WindowedCounters(o.window, rt.capacity);
    this.byIp = new WindowedCounters(o.window, rt.capacity);
    this.#fleet = new WindowedCounters(o.window, 1);
  }

  tracked(): number {
    return this.byClientId.size + this.byIp.size + this.#fleet.size;
  }

  onEvent(e: SecurityEvent, now: number): void {
    if (e.type !== 'client.disconnected' || e.reason === undefined || !ABNORMAL_REASONS.has(e.reason)) return;
    const o = this.#o;
    const severity = o.severity ?? 'low';
    if (e.clientId !== undefined) {
      const n = this.byClientId.add(e.clientId, now);
      if (n > o.perClient) {
        this.byClientId.reset(e.clientId);
        this.#rt.raise({
          detector: 'abnormal-termination',
          severity,
          key: 'clientId',
          offender: { clientId: e.clientId, ip: e.remoteAddress, username: e.username },
          evidence: { count: n, threshold: o.perClient, window: o.window, lastReason: e.reason },
          message: `client ${JSON.stringify(e.clientId)} ended abnormally ${n} times within ${o.window} ms (last: ${e.reason})`,
        });
      }
    }
    if (e.remoteAddress !== undefined) {
      const key = addressKey(e.remoteAddress);
      const n = this.byIp.add(key, now);
      if (n > o.perIp) {
        this.byIp.reset(key);
        this.#rt.raise({
          detector: 'abnormal-termination',
          severity,
          key: 'ip',
          offender: { ip: e.remoteAddress },
          evidence: { count: n, threshold: o.perIp, window: o.window, lastReason: e.reason, range: key === e.remoteAddress ? undefined : key },
          message: `${n} connections from ${key} ended abnormally within ${o.window} ms (last: ${e.reason})`,
        });
      }
    }
    const n = this.#fleet.add('fleet', now);
    if (n > o.fleet) {
      this.#fleet.reset('fleet');
      this.#rt.raise({
        detector: 'abnormal-termination',
        severity: 'high',
        key: 'fleet',
        offender: {},
        evidence: { count: n, threshold: o.fleet, window: o.window, lastReason: e.reason },
        message: `${n} connections ended abnormally across the broker within ${o.window} ms`,
      });
    }
  }
}
