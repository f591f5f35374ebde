/**
 * Automatic client disconnect (PR.SS-2) and maximum connection age (PR.SS-7).
 *
 * - Keepalive: a client asking for more than `keepalive.max` seconds gets the cap (the core applies
 *   it before Aedes arms its timer; 3.1.1 cannot tell the client, so it must ping in time) or is
 *   refused; keepalive 0 ("never") counts as more than any cap, or is refused with `refuseZero`.
 * - Idle timeout: a client that sends no PUBLISH or SUBSCRIBE for `idleTimeout` is disconnected
 *   (reason `idle-timeout`); one sweep timer for all clients, one field write per packet.
 * - Maximum age: every connection is closed after `maxAge` minus a random jitter (reason
 *   `max-age`), so it reconnects with a fresh TLS handshake and keys, and a fleet that connected at
 *   once does not come back at once.
 *
 * The CONNECT timeout (`limits.connectTimeout`, armed by Aedes at accept) and the TLS handshake
 * timeout (`tls.handshakeTimeout`) are the listeners' and the core's; see docs/limits.md.
 */
import type { BrokerContext, ClientInfo, ConnectPacketInfo, Middleware, Verdict } from '@bastion/core';
import { BastionError, deny, setKeepalive } from '@bastion/core';

export interface AutoDisconnectOptions {
  keepalive?: {
    /** Seconds; 0 = no cap (default). */
    max?: number;
    /** Default 'cap'. */
    overMax?: 'cap' | 'refuse';
    /** Default false. */
    refuseZero?: boolean;
  };
  /** Milliseconds without PUBLISH/SUBSCRIBE; 0 = off (default). */
  idleTimeout?: number;
  /** Milliseconds; 0 = off (default). */
  maxAge?: number;
  /** Fraction (0–0.5) of maxAge taken off at random per connection (default 0.1). */
  maxAgeJitter?: number;
}

export interface AutoDisconnectSettings {
  keepalive: { max: number; overMax: 'cap' | 'refuse'; refuseZero: boolean };
  idleTimeout: number;
  maxAge: number;
  maxAgeJitter: number;
}

export interface AutoDisconnect extends Middleware {
  readonly settings: Readonly<AutoDisconnectSettings>;
  /**
   * Change settings while running (keys given replace; with `replace`, keys not given return to
   * their defaults). Throws BASTION_ERR_AUTO_DISCONNECT on a bad value, changing nothing. Open
   * connections meet the new settings too:
   * - idle timeout: every connection, its idleness counted from its last PUBLISH/SUBSCRIBE (from now
   *   for one that was not watched before);
   * - maximum age: every connection, measured from its CONNECT with a fresh jitter; one already past
   *   its new age is closed within the jitter window (`maxAge × maxAgeJitter`, so they do not all
   *   come back at once);
   * - keepalive: a connection the new rule refuses (over `max` with `overMax: refuse`, or 0 with
   *   `refuseZero`) is disconnected; one it would only cap keeps its keepalive until it reconnects
   *   (MQTT 3.1.1 cannot tell a client a new keepalive, and a shorter timer behind its back would cut
   *   off a client pinging as agreed).
   */
  update(options: AutoDisconnectOptions, mode?: { replace?: boolean }): Readonly<AutoDisconnectSettings>;
}

const KEEPALIVE_ZERO = deny('not-authorized', 'keepalive 0 is not allowed: the client must ask for a keepalive');
const KEEPALIVE_TOO_LONG = deny('not-authorized', 'keepalive longer than the broker allows');

interface Tracked {
  /** Sweep tick of the last PUBLISH/SUBSCRIBE (or of the connection): no clock read per packet. */
  last: number;
  age: NodeJS.Timeout | undefined;
}

function normalize(o: AutoDisconnectOptions, base?: AutoDisconnectSettings): AutoDisconnectSettings {
  const k = o.keepalive;
  const max = k?.max ?? base?.keepalive.max ?? 0;
  if (!Number.isInteger(max) || max < 0 || max > 65535) throw new BastionError('BASTION_ERR_AUTO_DISCONNECT', `keepalive.max must be 0–65535 seconds, got ${String(max)}`);
  const ms = (key: string, v: number | undefined, fallback: number): number => {
    const x = v ?? fallback;
    if (typeof x !== 'number' || !Number.isFinite(x) || x < 0 || x > 2 ** 31 - 1) throw new BastionError('BASTION_ERR_AUTO_DISCONNECT', `${key} must be a number of milliseconds (0 = off), got ${String(x)}`);
    return x;
  };
  const jitter = o.maxAgeJitter ?? base?.maxAgeJitter ?? 0.1;
  if (typeof jitter !== 'number' || jitter < 0 || jitter > 0.5) throw new BastionError('BASTION_ERR_AUTO_DISCONNECT', `maxAgeJitter must be 0–0.5, got ${String(jitter)}`);
  return {
    keepalive: { max, overMax: k?.overMax ?? base?.keepalive.overMax ?? 'cap', refuseZero: k?.refuseZero ?? base?.keepalive.refuseZero ?? false },
    idleTimeout: ms('idleTimeout', o.idleTimeout, base?.idleTimeout ?? 0),
    maxAge: ms('maxAge', o.maxAge, base?.maxAge ?? 0),
    maxAgeJitter: jitter,
  };
}

export function autoDisconnect(options: AutoDisconnectOptions = {}): AutoDisconnect {
  let s = normalize(options);
  let ctx: BrokerContext | undefined;
  const tracked = new Map<ClientInfo, Tracked>();
  let sweeper: NodeJS.Timeout | undefined;
  /** Sweep ticks so far, and the tick length (ms). */
  let tick = 0;
  let tickMs = 1000;

  /** Close this very connection (not a newer one that took its client id over). */
  const close = (client: ClientInfo, reason: 'idle-timeout' | 'max-age', control: string, message: string, detail: Record<string, unknown>) => {
    if (!ctx || ctx.client(client.id) !== client) return;
    ctx.events.emit({
      type: 'disconnect.enforced',
      time: Date.now(),
      control,
      source: 'auto-disconnect',
      clientId: client.id,
      username: client.username,
      remoteAddress: client.remoteAddress,
      listener: client.listener,
      reason,
      message,
      detail,
    });
    ctx.disconnect(client.id, reason, message);
  };

  const sweep = () => {
    tick++;
    const idle = s.idleTimeout;
    if (idle <= 0) return;
    const ticks = Math.ceil(idle / tickMs);
    for (const [client, t] of tracked) {
      const idleFor = (tick - t.last) * tickMs;
      if (tick - t.last >= ticks) close(client, 'idle-timeout', 'PR.SS-2', `no PUBLISH or SUBSCRIBE for ${Math.round(idleFor / 1000)} s`, { idleTimeout: idle, idleFor });
    }
  };

  /** Arm (or re-arm) a connection's age timer from its CONNECT time; past due: within the jitter window. */
  const armAge = (client: ClientInfo, t: Tracked, now: number) => {
    clearTimeout(t.age);
    t.age = undefined;
    if (s.maxAge <= 0) return;
    const age = Math.max(1, Math.round(s.maxAge * (1 - Math.random() * s.maxAgeJitter)));
    const connectedAt = client.connectedAt > 0 ? client.connectedAt : now;
    const due = connectedAt + age - now;
    const wait = due > 0 ? due : Math.round(Math.random() * s.maxAge * s.maxAgeJitter);
    t.age = setTimeout(() => close(client, 'max-age', 'PR.SS-7', `connected for ${Math.round((Date.now() - connectedAt) / 1000)} s: reconnect for fresh session keys`, { maxAge: s.maxAge, age }), wait);
    t.age.unref();
  };

  /** Why the keepalive rule in force refuses a keepalive, or undefined. */
  const keepaliveRefusal = (k: number): string | undefined => {
    const { max, overMax, refuseZero } = s.keepalive;
    if (k === 0 && refuseZero) return 'keepalive 0 is no longer allowed';
    if (max > 0 && overMax === 'refuse' && (k === 0 || k > max)) return `keepalive ${k} s is above the new maximum of ${max} s`;
    return undefined;
  };

  const restartSweeper = () => {
    clearInterval(sweeper);
    sweeper = undefined;
    if (s.idleTimeout > 0 && ctx) {
      // a tenth of the timeout (between 100 ms and 30 s): a client is closed at most 10% late
      tickMs = Math.min(30_000, Math.max(100, Math.floor(s.idleTimeout / 10)));
      sweeper = setInterval(sweep, tickMs);
      sweeper.unref();
    }
  };

  const touch = (client: ClientInfo) => {
    const t = tracked.get(client);
    if (t !== undefined) t.last = tick;
  };

  const mw: AutoDisconnect = {
    name: 'auto-disconnect',
    controls: ['PR.SS-2', 'PR.SS-7'],

    get settings() {
      return s;
    },

    setup(context) {
      ctx = context;
      restartSweeper();
    },

    update(next, mode) {
      const before = s;
      s = normalize(next, mode?.replace ? undefined : s);
      restartSweeper();
      ctx?.logger.info({ autoDisconnect: s }, 'auto-disconnect settings changed');
      if (!ctx) return s;
      const c = ctx;
      const now = Date.now();
      if (s.idleTimeout <= 0 && s.maxAge <= 0) {
        for (const t of tracked.values()) clearTimeout(t.age);
        tracked.clear();
      } else {
        for (const client of c.clients()) {
          let t = tracked.get(client);
          if (t === undefined) {
            t = { last: tick, age: undefined };
            tracked.set(client, t);
          }
          if (s.maxAge !== before.maxAge || s.maxAgeJitter !== before.maxAgeJitter || t.age === undefined) armAge(client, t, now);
        }
      }
      const refused = new Map<string, string>();
      for (const client of c.clients()) {
        const why = keepaliveRefusal(client.keepalive);
        if (why !== undefined) refused.set(client.id, why);
      }
      for (const [id, why] of refused) {
        const client = c.client(id);
        c.events.emit({ type: 'disconnect.enforced', time: now, control: 'PR.SS-2', source: 'auto-disconnect', clientId: id, username: client?.username, remoteAddress: client?.remoteAddress, listener: client?.listener, reason: 'kicked', message: why, detail: { keepalive: client?.keepalive, max: s.keepalive.max } });
        c.disconnect(id, 'kicked', `settings changed: ${why}`);
      }
      return s;
    },

    onConnect(client: ClientInfo, packet: ConnectPacketInfo): Verdict {
      const { max, overMax, refuseZero } = s.keepalive;
      const k = packet.keepalive;
      if (k === 0 && refuseZero) return KEEPALIVE_ZERO;
      if (max > 0 && (k === 0 || k > max)) {
        if (overMax === 'refuse') return KEEPALIVE_TOO_LONG;
        setKeepalive(client, max);
      }
      return undefined;
    },

    onConnected(client: ClientInfo) {
      if (s.idleTimeout <= 0 && s.maxAge <= 0) return;
      const t: Tracked = { last: tick, age: undefined };
      if (s.maxAge > 0) {
        // whole seconds once ages are long: Node keeps one timer list per distinct duration, and a
        // jittered age in milliseconds made nearly every connection a new list (a heap insert each)
        const step = s.maxAge >= 60_000 ? 1000 : 1;
        const age = Math.max(step, Math.round((s.maxAge * (1 - Math.random() * s.maxAgeJitter)) / step) * step);
        t.age = setTimeout(() => close(client, 'max-age', 'PR.SS-7', `connected for ${Math.round(age / 1000)} s: reconnect for fresh session keys`, { maxAge: s.maxAge, age }), age);
        t.age.unref();
      }
      tracked.set(client, t);
    },

    // activity: one Map lookup and a field write, only while an idle timeout is set
    authorizePublish(client: ClientInfo): Verdict {
      if (s.idleTimeout > 0) touch(client);
      return undefined;
    },

    authorizeSubscribe(client: ClientInfo): Verdict {
      if (s.idleTimeout > 0) touch(client);
      return undefined;
    },

    onDisconnect(client: ClientInfo) {
      const t = tracked.get(client);
      if (t === undefined) return;
      clearTimeout(t.age);
      tracked.delete(client);
    },

    close() {
      clearInterval(sweeper);
      sweeper = undefined;
      for (const t of tracked.values()) clearTimeout(t.age);
      tracked.clear();
    },
  };
  return mw;
}
