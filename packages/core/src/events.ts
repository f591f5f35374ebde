/**
 * The security event bus. Every stage that decides something says so here, with the CSF control
 * that decided, who it was about and why. Detectors, the audit log and metrics subscribe to it.
 */
import type { DenyReason } from './reasons.js';
import type { DisconnectReason } from './contract.js';

export type SecurityEventType =
  | 'connection.refused' // refused before or at CONNECT (IP lists, TLS identity, client id rules)
  | 'auth.succeeded'
  | 'auth.failed'
  | 'publish.denied'
  | 'subscribe.denied'
  | 'forward.denied'
  | 'client.connected'
  | 'client.disconnected'
  | 'packet.rejected' // malformed or oversized packet: that connection is closed
  | 'middleware.error'
  | (string & {}); // other packages add their own (rate.limited, detection.raised, admin.action, …)

export interface SecurityEvent {
  readonly type: SecurityEventType;
  /** Epoch milliseconds. */
  readonly time: number;
  /** CSF subcategory id of the control that acted, e.g. 'PR.AC-3'. */
  readonly control: string;
  /** The middleware (or core stage) that produced the event. */
  readonly source: string;
  readonly clientId?: string | undefined;
  readonly username?: string | undefined;
  readonly remoteAddress?: string | undefined;
  readonly listener?: string | undefined;
  readonly reason?: DenyReason | DisconnectReason | undefined;
  readonly message?: string | undefined;
  readonly topic?: string | undefined;
  /** Anything else that helps an operator; never a secret. */
  readonly detail?: Readonly<Record<string, unknown>> | undefined;
}

type Listener = (event: SecurityEvent) => void;

export interface ListenOptions {
  /**
   * Only these event types reach the listener (default: every type). A producer asks
   * `wants(type)` before it builds an event, so a listener that names its types keeps the events
   * it does not read off the hot path: per CONNECT, `auth.succeeded` and `client.connected`.
   */
  readonly types?: readonly SecurityEventType[];
}

interface Entry {
  readonly listener: Listener;
  readonly types: ReadonlySet<string> | undefined;
}

/**
 * A small typed emitter. `emit` is synchronous and calls listeners in the order they subscribed; a
 * listener that throws is isolated and reported through `onListenerError`, so one faulty subscriber
 * cannot stop the others or the broker.
 */
export class SecurityEventBus {
  /** Replaced, never mutated, on subscribe and unsubscribe: `emit` iterates without copying. */
  #entries: readonly Entry[] = [];
  /** Listeners for every type. */
  #all = 0;
  /** Per type, the listeners that named it. */
  readonly #typed = new Map<string, number>();
  readonly #errorListeners: Array<(err: unknown, event: SecurityEvent) => void> = [];

  /** Whether anyone listens at all. */
  get listening(): boolean {
    return this.#entries.length > 0;
  }

  /** Whether an event of this type would reach a listener: producers skip building it otherwise. */
  wants(type: SecurityEventType): boolean {
    return this.#all > 0 || this.#typed.has(type);
  }

  on(listener: Listener, opts?: ListenOptions): () => void {
    const entry: Entry = { listener, types: opts?.types === undefined ? undefined : new Set(opts.types) };
    this.#entries = [...this.#entries, entry];
    this.#count(entry, 1);
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      this.#remove(entry);
    };
  }

  /** Removes every subscription of this listener. */
  off(listener: Listener): void {
    for (const e of this.#entries) if (e.listener === listener) this.#remove(e);
  }

  /** Errors thrown by listeners. */
  onListenerError(fn: (err: unknown, event: SecurityEvent) => void): void {
    this.#errorListeners.push(fn);
  }

  emit(event: SecurityEvent): void {
    const entries = this.#entries;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i] as Entry;
      if (e.types !== undefined && !e.types.has(event.type)) continue;
      try {
        e.listener(event);
      } catch (err) {
        for (const fn of this.#errorListeners) fn(err, event);
      }
    }
  }

  #remove(entry: Entry): void {
    const i = this.#entries.indexOf(entry);
    if (i < 0) return;
    this.#entries = [...this.#entries.slice(0, i), ...this.#entries.slice(i + 1)];
    this.#count(entry, -1);
  }

  #count(entry: Entry, by: 1 | -1): void {
    if (entry.types === undefined) {
      this.#all += by;
      return;
    }
    for (const t of entry.types) {
      const n = (this.#typed.get(t) ?? 0) + by;
      if (n > 0) this.#typed.set(t, n);
      else this.#typed.delete(t);
    }
  }
}
