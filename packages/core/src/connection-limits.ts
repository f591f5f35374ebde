/**
 * Limits only the core can enforce, because they need the socket: open connections counted when
 * the TCP socket is accepted (before a TLS handshake or a WebSocket upgrade costs anything) and
 * released when it closes — per remote address, per listener and in total — and the outbound
 * backlog of a client that does not read (slow consumer). All of them can change while running.
 */
import type { DenyReason } from './reasons.js';

export interface ConnectionLimits {
  /** Open connections from one remote address; 0 or undefined = no cap. */
  perIp?: number | undefined;
  /** Open connections over every listener; 0 or undefined = no cap. */
  total?: number | undefined;
  /** Open connections per listener name; a listener not named has no cap. */
  perListener?: Readonly<Record<string, number>> | undefined;
  /**
   * Bytes waiting to be written to one client (in the process, beyond what the kernel holds) at which
   * it is disconnected as a slow consumer (reason `slow-consumer`); 0 or undefined = no cap.
   */
  maxOutboundBacklog?: number | undefined;
  /**
   * Drop QoS 0 deliveries to a client whose socket is backed up, instead of queueing them behind it
   * (at most once allows it). Without this, one subscriber that stops reading holds every publisher
   * of its topics until the drain timeout. Default false (Aedes' behaviour: wait for the reader).
   */
  dropQoS0WhenBacklogged?: boolean | undefined;
  /**
   * Milliseconds a socket refused at accept is held open, unread, before it is closed (a tarpit: a
   * flooder that reconnects at once is slowed to one attempt per hold per socket); 0 or undefined =
   * closed at once. Every transport: the TLS and HTTP layers get a socket only once admitted.
   */
  holdRefused?: number | undefined;
  /**
   * Longest hold (ms) for an address refused again and again: each refusal within this time of the
   * address's previous one doubles its hold, from `holdRefused` up to this (an address left alone
   * this long starts again at `holdRefused`). Undefined or ≤ holdRefused = no escalation.
   */
  maxHoldRefused?: number | undefined;
  /** Most refused sockets held at once (default 1000); beyond it they are closed at once. */
  maxHeld?: number | undefined;
  /** Milliseconds a client's socket may stay full before Aedes disconnects it (Aedes `drainTimeout`, default 60 s). */
  drainTimeout?: number | undefined;
  /** Inbound QoS 2 messages awaiting PUBREL per client before it is disconnected (Aedes `maxInflightInbound`, default 1000). */
  maxInflightInbound?: number | undefined;
}

/**
 * A refusal by rule at TCP accept (a ban), not by a budget: reported as `connection.refused` with
 * its reason, where a budget's name (a string) is reported as `rate.limited`.
 */
export interface AcceptRefusal {
  /** The event's `detail.limit`, and the key of its one-per-second throttle. */
  readonly limit: string;
  readonly reason: DenyReason;
  /** CSF subcategory of the event. */
  readonly control: string;
  readonly message: string;
}

/** A banned address refused at accept (the bans control, or a rate limit's own ban). */
export const BANNED_AT_ACCEPT: AcceptRefusal = Object.freeze({ limit: 'banned', reason: 'banned' as const, control: 'PR.SS-4', message: 'connection refused at accept: the address is banned' });

/**
 * A synchronous check of a new TCP connection's remote address: the name of the budget it is over,
 * a refusal by rule, or undefined (admitted).
 */
export type AcceptCheck = (remoteAddress: string, listener: string) => string | AcceptRefusal | undefined;

export type ConnectionLimitName = 'concurrent.perIp' | 'concurrent.perListener' | 'concurrent.total';

export class ConnectionCounter {
  readonly #perIp = new Map<string, number>();
  readonly #perListener = new Map<string, number>();
  #total = 0;
  #limits: ConnectionLimits = {};

  get limits(): Readonly<ConnectionLimits> {
    return this.#limits;
  }

  /** Replace the keys given; a key set to undefined keeps its value, 0 removes the cap. */
  set(limits: ConnectionLimits): void {
    const next: ConnectionLimits = { ...this.#limits };
    for (const [k, v] of Object.entries(limits) as Array<[keyof ConnectionLimits, unknown]>) {
      if (v !== undefined) (next as Record<string, unknown>)[k] = v;
    }
    this.#limits = next;
  }

  /** Count a new connection, or name the cap it would exceed (and count nothing). */
  admit(ip: string, listener: string): ConnectionLimitName | undefined {
    const l = this.#limits;
    const fromIp = this.#perIp.get(ip) ?? 0;
    if (l.perIp && fromIp >= l.perIp) return 'concurrent.perIp';
    const onListener = this.#perListener.get(listener) ?? 0;
    const listenerCap = l.perListener?.[listener];
    if (listenerCap && onListener >= listenerCap) return 'concurrent.perListener';
    if (l.total && this.#total >= l.total) return 'concurrent.total';
    this.#perIp.set(ip, fromIp + 1);
    this.#perListener.set(listener, onListener + 1);
    this.#total++;
    return undefined;
  }

  release(ip: string, listener: string): void {
    const fromIp = (this.#perIp.get(ip) ?? 1) - 1;
    if (fromIp <= 0) this.#perIp.delete(ip);
    else this.#perIp.set(ip, fromIp);
    const onListener = (this.#perListener.get(listener) ?? 1) - 1;
    if (onListener <= 0) this.#perListener.delete(listener);
    else this.#perListener.set(listener, onListener);
    if (this.#total > 0) this.#total--;
  }

  /** Open connections from `ip`, or in total. */
  count(ip?: string): number {
    return ip === undefined ? this.#total : (this.#perIp.get(ip) ?? 0);
  }

  /** The cap that applies to a limit name, for events. */
  capOf(name: ConnectionLimitName, listener: string): number {
    const l = this.#limits;
    return (name === 'concurrent.perIp' ? l.perIp : name === 'concurrent.total' ? l.total : l.perListener?.[listener]) ?? 0;
  }
}
