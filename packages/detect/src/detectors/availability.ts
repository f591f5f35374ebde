/**
 * DE.PM-1 Client availability verification: clients the profile expects (an exact client id, or a
 * pattern: every client seen matching it) that are not connected, or stopped publishing, for longer
 * than their interval. Raised once per outage; `detection.cleared` when the client is back.
 *
 * Exact ids are watched from broker start (a device that never shows up is reported after one
 * interval). Pattern watches are created when a matching client first connects and live in a table
 * bounded by `capacity` (least recently seen forgotten first).
 */
import type { Detection } from '../detection.js';
import type { AvailabilityOptions, DetectorRuntime, ExpectedClient } from './types.js';

export interface Watch {
  readonly clientId: string;
  readonly interval: number;
  readonly publishes: boolean;
  /** Live connections with this client id (a takeover briefly has two). */
  live: number;
  /** Last connect or disconnect. */
  since: number;
  lastPublish: number;
  /** The open detection while the client is unavailable. */
  down: Detection | undefined;
}

function globToRegExp(glob: string): RegExp {
  const body = glob.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${body}$`, 's');
}

export class Availability {
  readonly #o: AvailabilityOptions;
  readonly #rt: DetectorRuntime;
  readonly #exact = new Map<string, Watch>();
  readonly #patterns: Array<{ re: RegExp; entry: ExpectedClient }> = [];
  readonly #byPattern = new Map<string, Watch>();
  readonly #cleared: (d: Detection) => void;

  constructor(o: AvailabilityOptions, rt: DetectorRuntime, cleared: (d: Detection) => void, now: number) {
    this.#o = o;
    this.#rt = rt;
    this.#cleared = cleared;
    for (const e of o.expected) {
      if (e.clientId !== undefined) this.#exact.set(e.clientId, this.#newWatch(e.clientId, e, now));
      else if (e.pattern !== undefined) this.#patterns.push({ re: globToRegExp(e.pattern), entry: e });
    }
  }

  #newWatch(clientId: string, e: ExpectedClient, now: number): Watch {
    return { clientId, interval: e.interval, publishes: e.publishes !== false, live: 0, since: now, lastPublish: now, down: undefined };
  }

  tracked(): number {
    return this.#exact.size + this.#byPattern.size;
  }

  /** Shortest interval watched (the sweep runs at a fraction of it). */
  get shortest(): number {
    let m = Infinity;
    for (const e of this.#o.expected) m = Math.min(m, e.interval);
    return m;
  }

  /** The watch for a client that just connected, if it is expected. */
  connected(clientId: string, now: number): Watch | undefined {
    let w = this.#exact.get(clientId);
    if (w === undefined) {
      w = this.#byPattern.get(clientId);
      if (w !== undefined) {
        this.#byPattern.delete(clientId); // re-inserted: touch order
        this.#byPattern.set(clientId, w);
      } else {
        const p = this.#patterns.find((x) => x.re.test(clientId));
        if (p === undefined) return undefined;
        if (this.#byPattern.size >= this.#rt.capacity) this.#byPattern.delete(this.#byPattern.keys().next().value as string);
        w = this.#newWatch(clientId, p.entry, now);
        this.#byPattern.set(clientId, w);
      }
    }
    w.live++;
    w.since = now;
    w.lastPublish = now; // the publishing interval counts from the (re)connection
    return w;
  }

  disconnected(w: Watch, now: number): void {
    if (w.live > 0) w.live--;
    if (w.live === 0) w.since = now;
  }

  sweep(now: number): void {
    for (const w of this.#exact.values()) this.#check(w, now);
    for (const w of this.#byPattern.values()) this.#check(w, now);
  }

  #check(w: Watch, now: number): void {
    const absent = w.live === 0 && now - w.since > w.interval;
    const mute = w.live > 0 && w.publishes && now - w.lastPublish > w.interval;
    if (absent || mute) {
      if (w.down !== undefined) return;
      const silence = absent ? now - w.since : now - w.lastPublish;
      w.down = this.#rt.raise({
        detector: 'availability',
        severity: this.#o.severity ?? 'medium',
        key: 'clientId',
        offender: { clientId: w.clientId },
        evidence: { count: silence, threshold: w.interval, window: w.interval, state: absent ? 'not-connected' : 'not-publishing' },
        message: absent
          ? `expected client ${JSON.stringify(w.clientId)} has not been connected for ${silence} ms (interval ${w.interval} ms)`
          : `expected client ${JSON.stringify(w.clientId)} is connected but has not published for ${silence} ms (interval ${w.interval} ms)`,
      });
    } else if (w.down !== undefined) {
      const d = w.down;
      w.down = undefined;
      this.#cleared(d);
    }
  }
}
