/**
 * The security event bus. Every stage that decides something says so here, with the CSF control
 * that decided, who it was about and why. Detectors, the audit log and metrics subscribe to it.
 */
import { EventEmitter } from 'node:events';
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

/**
 * A small typed emitter. `emit` is synchronous; a listener that throws is isolated and reported on
 * the 'error' channel so one faulty subscriber cannot stop the others or the broker.
 */
export class SecurityEventBus {
  readonly #emitter = new EventEmitter();
  #count = 0;

  constructor() {
    this.#emitter.setMaxListeners(0);
  }

  /** How many listeners there are; lets producers skip building events nobody reads. */
  get listening(): boolean {
    return this.#count > 0;
  }

  on(listener: Listener): () => void {
    this.#emitter.on('event', listener);
    this.#count++;
    return () => this.off(listener);
  }

  off(listener: Listener): void {
    if (this.#emitter.listeners('event').includes(listener)) {
      this.#emitter.off('event', listener);
      this.#count--;
    }
  }

  /** Errors thrown by listeners. */
  onListenerError(fn: (err: unknown, event: SecurityEvent) => void): void {
    this.#emitter.on('listener-error', fn);
  }

  emit(event: SecurityEvent): void {
    if (this.#count === 0) return;
    for (const l of this.#emitter.listeners('event') as Listener[]) {
      try {
        l(event);
      } catch (err) {
        this.#emitter.emit('listener-error', err, event);
      }
    }
  }
}
