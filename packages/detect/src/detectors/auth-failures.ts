/**
 * DE.ID-1 Repeated authentication attempts: failures counted per address, per username and per
 * client id at once, so rotating any one of them (new client id each try, many usernames from one
 * host, one username from many hosts) does not evade the others.
 */
import type { SecurityEvent } from '@bastion/core';
import { WindowedCounters, addressKey } from '../window.js';
import type { OffenderKey } from '../detection.js';
import type { AuthFailuresOptions, DetectorRuntime } from './types.js';

export class AuthFailures {
  readonly #o: AuthFailuresOptions;
  readonly #rt: DetectorRuntime;
  readonly byIp: WindowedCounters;
  readonly byUsername: WindowedCounters;
  readonly byClientId: WindowedCounters;

  constructor(o: AuthFailuresOptions, rt: DetectorRuntime) {
    this.#o = o;
    this.#rt = rt;
    this.byIp = new WindowedCounters(o.window, rt.capacity);
    this.byUsername = new WindowedCounters(o.window, rt.capacity);
    this.byClientId = new WindowedCounters(o.window, rt.capacity);
  }

  tracked(): number {
    return this.byIp.size + this.byUsername.size + this.byClientId.size;
  }

  onEvent(e: SecurityEvent, now: number): void {
    if (e.type !== 'auth.failed') return;
    const o = this.#o;
    const offender = { ip: e.remoteAddress, clientId: e.clientId, username: e.username };
    if (e.remoteAddress !== undefined) this.#count(this.byIp, addressKey(e.remoteAddress), 'ip', o.perIp, offender, now);
    if (e.username !== undefined) this.#count(this.byUsername, e.username, 'username', o.perUsername, offender, now);
    if (e.clientId !== undefined) this.#count(this.byClientId, e.clientId, 'clientId', o.perClientId, offender, now);
  }

  #count(table: WindowedCounters, k: string, key: OffenderKey, threshold: number, offender: { ip?: string | undefined; clientId?: string | undefined; username?: string | undefined }, now: number): void {
    const n = table.add(k, now);
    if (n <= threshold) return;
    table.reset(k);
    const o = this.#o;
    const range = key === 'ip' && k !== offender.ip ? k : undefined;
    this.#rt.raise({
      detector: 'auth-failures',
      severity: o.severity ?? 'high',
      key,
      offender,
      evidence: { count: n, threshold, window: o.window, range },
      message: `${n} failed authentications for ${key} ${JSON.stringify(range ?? k)} within ${o.window} ms`,
    });
  }
}
