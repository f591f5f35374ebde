/**
 * DE.NM-1 Repeated connection attempts, per address and per client id: a device stuck in a
 * reconnect loop, or someone knocking. Keyed both ways so changing the client id on every attempt
 * (which defeats client-id-only flapping detection) still trips the per-address count.
 */
import type { SecurityEvent } from '@bastion/core';
import { WindowedCounters, addressKey } from '../window.js';
import type { ConnectionAttemptsOptions, DetectorRuntime } from './types.js';

export class ConnectionAttempts {
  readonly #o: ConnectionAttemptsOptions;
  readonly #rt: DetectorRuntime;
  readonly byIp: WindowedCounters;
  readonly byClientId: WindowedCounters;

  constructor(o: ConnectionAttemptsOptions, rt: DetectorRuntime) {
    this.#o = o;
    this.#rt = rt;
    this.byIp = new WindowedCounters(o.window, rt.capacity);
    this.byClientId = new WindowedCounters(o.window, rt.capacity);
  }

  tracked(): number {
    return this.byIp.size + this.byClientId.size;
  }

  /** A transport connection came up (or was refused before CONNECT). */
  attempt(ip: string, now: number): void {
    const key = addressKey(ip);
    const n = this.byIp.add(key, now);
    if (n <= this.#o.perIp) return;
    this.byIp.reset(key);
    this.#rt.raise({
      detector: 'connection-attempts',
      severity: this.#o.severity ?? 'medium',
      key: 'ip',
      offender: { ip },
      evidence: { count: n, threshold: this.#o.perIp, window: this.#o.window, range: key === ip ? undefined : key },
      message: `${n} connection attempts from ${key} within ${this.#o.window} ms`,
    });
  }

  /** A CONNECT was answered (accepted or refused). */
  connect(clientId: string, ip: string | undefined, username: string | undefined, now: number): void {
    const n = this.byClientId.add(clientId, now);
    if (n <= this.#o.perClientId) return;
    this.byClientId.reset(clientId);
    this.#rt.raise({
      detector: 'connection-attempts',
      severity: this.#o.severity ?? 'medium',
      key: 'clientId',
      offender: { clientId, ip, username },
      evidence: { count: n, threshold: this.#o.perClientId, window: this.#o.window },
      message: `${n} connection attempts with client id ${JSON.stringify(clientId)} within ${this.#o.window} ms`,
    });
  }

  onEvent(e: SecurityEvent, now: number): void {
    if (e.type === 'connection.refused') {
      // Refused before CONNECT was read (an address gate, TLS): the detectors' own onConnection
      // hook never saw it. Refused at CONNECT: the address was already counted, the client id not.
      if (e.clientId !== undefined) this.connect(e.clientId, e.remoteAddress, e.username, now);
      else if (e.remoteAddress !== undefined) this.attempt(e.remoteAddress, now);
    } else if (e.type === 'auth.failed' || e.type === 'auth.succeeded') {
      if (e.clientId !== undefined) this.connect(e.clientId, e.remoteAddress, e.username, now);
    }
  }
}
