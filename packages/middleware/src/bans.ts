/**
 * Bans (PR.SS-4, RS.RP-3): shut a party out, at once and for a while or for good.
 *
 * A ban names an IP address or CIDR range, a client id, a username, or several of these (then all
 * must match: "this username from that network"). Banning closes the party's live connections
 * (reason `kicked`) and refuses new ones at the earliest stage that knows every field of the ban:
 * address-only bans at TCP accept once the broker binds `bannedAddress` to its accept check (before
 * any TLS handshake) and in `onConnection` (before CONNECT is read), bans naming a client id or a username
 * in `onConnect` (the username the client claims at CONNECT: a banned name is refused whatever
 * password comes with it). Every ban is checked again once the session is up (`onConnected`): that catches a
 * username given by a certificate, and a client that was mid-CONNECT when the ban was added.
 *
 * Bans lift themselves: expiry is checked on every lookup and an unref'd timer sweeps the rest. The
 * table is bounded (`maxBans`): when full, the oldest temporary ban is evicted to make room; when
 * every ban is permanent, a new ban is refused (BanError BASTION_ERR_BAN_LIMIT).
 */
import { randomUUID } from 'node:crypto';
import type { BrokerContext, ClientInfo, ConnectionInfo, ConnectPacketInfo, Middleware, Verdict } from '@bastion/core';
import { BastionError, deny } from '@bastion/core';
import { CidrError, PrefixIndex, formatRange, parseAddress, parseCidr, rangeContains } from './cidr.js';
import type { IpAddress, IpRange } from './cidr.js';

/** Who is banned. At least one field; several fields must all match. */
export interface BanTarget {
  /** An address or CIDR range (IPv4, IPv6, IPv4-mapped). */
  ip?: string;
  clientId?: string;
  username?: string;
}

export interface BanSpec {
  /** Milliseconds; undefined = permanent. */
  duration?: number;
  /** Why (kept in the ban and in events; shown to operators, never to the client). */
  reason?: string;
  /** Who banned: an operator name, a detector id. */
  actor?: string;
}

export interface Ban {
  readonly id: string;
  /** Canonical text of the address or range (`10.0.0.5`, `10.0.0.0/8`, `2001:db8::/32`). */
  readonly ip: string | undefined;
  readonly clientId: string | undefined;
  readonly username: string | undefined;
  readonly reason: string | undefined;
  readonly actor: string | undefined;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  /** Epoch milliseconds; undefined = permanent. */
  readonly expiresAt: number | undefined;
}

export interface BansOptions {
  /** Most bans kept (default 100 000). */
  maxBans?: number;
  /** Milliseconds between sweeps of expired bans (default 60 000). */
  sweepInterval?: number;
  /** Bans in force from the start (durations count from broker start). */
  bans?: Array<BanTarget & BanSpec>;
}

export interface Bans extends Middleware {
  /** Ban a party: live connections are closed now, new ones refused. Banning the same target again updates that ban (the later expiry wins). */
  ban(target: BanTarget, spec?: BanSpec): Ban;
  /** Lift a ban by id; false when there is none. */
  unban(id: string, actor?: string): boolean;
  /** Bans in force (expired ones are dropped first), oldest first. */
  list(): Ban[];
  /** The ban in force for a party with these attributes, if any. */
  check(party: { ip?: string; clientId?: string; username?: string }): Ban | undefined;
  /**
   * Whether an address-only ban covers `ip` now: for the core's check at TCP accept (`addAcceptCheck`),
   * so a banned address is refused before its TLS handshake. Synchronous, no allocation when none applies.
   */
  bannedAddress(ip: string): boolean;
  readonly size: number;
}

export class BanError extends BastionError {
  constructor(code: 'BASTION_ERR_BAN' | 'BASTION_ERR_BAN_LIMIT', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'BanError';
  }
}

interface Entry {
  ban: Ban;
  range: IpRange | undefined;
  key: string;
}

const BANNED_ADDRESS = deny('banned', 'the client address is banned');
const BANNED_CLIENT = deny('banned', 'the client id is banned');
const BANNED_USER = deny('banned', 'the username is banned');

function validateTarget(target: BanTarget): { range: IpRange | undefined; clientId: string | undefined; username: string | undefined } {
  if (typeof target !== 'object' || target === null) throw new BanError('BASTION_ERR_BAN', 'a ban needs a target object with ip, clientId and/or username');
  for (const k of Object.keys(target)) if (k !== 'ip' && k !== 'clientId' && k !== 'username') throw new BanError('BASTION_ERR_BAN', `unknown ban target field "${k}" (known: ip, clientId, username)`);
  const { ip, clientId, username } = target;
  if (ip === undefined && clientId === undefined && username === undefined) throw new BanError('BASTION_ERR_BAN', 'a ban needs at least one of ip, clientId, username');
  let range: IpRange | undefined;
  if (ip !== undefined) {
    try {
      range = parseCidr(ip);
    } catch (err) {
      if (err instanceof CidrError) throw new BanError('BASTION_ERR_BAN', `ban ip: ${err.message}`, { cause: err });
      throw err;
    }
  }
  for (const [name, v] of [['clientId', clientId], ['username', username]] as const) {
    if (v !== undefined && (typeof v !== 'string' || v === '')) throw new BanError('BASTION_ERR_BAN', `ban ${name} must be a non-empty string`);
  }
  return { range, clientId, username };
}

function validateSpec(spec: BanSpec): void {
  const { duration, reason, actor } = spec;
  if (duration !== undefined && (typeof duration !== 'number' || !Number.isFinite(duration) || duration <= 0)) {
    throw new BanError('BASTION_ERR_BAN', 'ban duration must be a positive number of milliseconds (leave it out for a permanent ban)');
  }
  if (reason !== undefined && typeof reason !== 'string') throw new BanError('BASTION_ERR_BAN', 'ban reason must be a string');
  if (actor !== undefined && typeof actor !== 'string') throw new BanError('BASTION_ERR_BAN', 'ban actor must be a string');
}

function addSet<K>(map: Map<K, Set<Entry>>, k: K, e: Entry): void {
  let s = map.get(k);
  if (!s) map.set(k, (s = new Set()));
  s.add(e);
}

function deleteSet<K>(map: Map<K, Set<Entry>>, k: K, e: Entry): void {
  const s = map.get(k);
  if (!s) return;
  s.delete(e);
  if (s.size === 0) map.delete(k);
}

export function bans(opts: BansOptions = {}): Bans {
  const maxBans = opts.maxBans ?? 100_000;
  if (!Number.isInteger(maxBans) || maxBans < 1) throw new BanError('BASTION_ERR_BAN', 'maxBans must be a positive integer');
  const sweepInterval = opts.sweepInterval ?? 60_000;
  const byId = new Map<string, Entry>(); // insertion order = age
  const byKey = new Map<string, Entry>(); // one ban per distinct target
  const temporary = new Set<Entry>(); // insertion order: the first is the oldest temporary ban
  const addressOnly = new PrefixIndex<Entry>();
  const byClientId = new Map<string, Set<Entry>>(); // bans naming a client id and no username
  const byUsername = new Map<string, Set<Entry>>(); // bans naming a username
  let ctx: BrokerContext | undefined;
  let sweeper: NodeJS.Timeout | undefined;

  const emit = (type: 'ban.added' | 'ban.removed' | 'ban.expired', e: Entry, extra: Record<string, unknown> = {}) => {
    if (!ctx) return;
    const b = e.ban;
    const detail = { id: b.id, ip: b.ip, clientId: b.clientId, username: b.username, expiresAt: b.expiresAt, actor: b.actor, banReason: b.reason, ...extra };
    const message = type === 'ban.added' ? `banned${b.reason ? `: ${b.reason}` : ''}` : type === 'ban.expired' ? 'ban expired' : 'ban lifted';
    if (type === 'ban.added') ctx.logger.warn({ ban: detail }, type);
    else ctx.logger.info({ ban: detail }, type);
    ctx.events.emit({
      type,
      time: Date.now(),
      control: 'PR.SS-4',
      source: 'bans',
      clientId: b.clientId,
      username: b.username,
      remoteAddress: b.ip,
      reason: type === 'ban.added' ? 'banned' : undefined,
      message,
      detail,
    });
  };

  const index = (e: Entry, add: boolean) => {
    const { clientId, username } = e.ban;
    if (username !== undefined) (add ? addSet : deleteSet)(byUsername, username, e);
    else if (clientId !== undefined) (add ? addSet : deleteSet)(byClientId, clientId, e);
    else if (e.range) (add ? addressOnly.add(e.range, e) : addressOnly.delete(e.range, e));
  };

  const remove = (e: Entry, why: 'ban.removed' | 'ban.expired', extra?: Record<string, unknown>) => {
    if (byId.get(e.ban.id) !== e) return;
    byId.delete(e.ban.id);
    byKey.delete(e.key);
    temporary.delete(e);
    index(e, false);
    emit(why, e, extra);
  };

  const expired = (e: Entry, now: number) => e.ban.expiresAt !== undefined && e.ban.expiresAt <= now;

  const sweep = () => {
    const now = Date.now();
    for (const e of [...temporary]) if (expired(e, now)) remove(e, 'ban.expired');
  };

  /** Does a ban's every field match this party? A field the party lacks never matches. */
  const matches = (e: Entry, addr: IpAddress | undefined, clientId: string | undefined, username: string | undefined) =>
    (e.range === undefined || (addr !== undefined && rangeContains(e.range, addr))) &&
    (e.ban.clientId === undefined || e.ban.clientId === clientId) &&
    (e.ban.username === undefined || e.ban.username === username);

  /** First live ban among candidates matching the party; expired candidates met on the way are removed. */
  const firstLive = (candidates: Iterable<Entry> | undefined, addr: IpAddress | undefined, clientId: string | undefined, username: string | undefined): Entry | undefined => {
    if (candidates === undefined) return undefined;
    const now = Date.now();
    let stale: Entry[] | undefined;
    let found: Entry | undefined;
    for (const e of candidates) {
      if (expired(e, now)) (stale ??= []).push(e);
      else if (found === undefined && matches(e, addr, clientId, username)) found = e;
    }
    if (stale) for (const e of stale) remove(e, 'ban.expired');
    return found;
  };

  const clientMatches = (e: Entry) => (c: ClientInfo) => matches(e, parseAddress(c.remoteAddress), c.id, c.username);

  const ban = (target: BanTarget, spec: BanSpec = {}): Ban => {
    const { range, clientId, username } = validateTarget(target);
    validateSpec(spec);
    const now = Date.now();
    const ip = range ? formatRange(range) : undefined;
    const key = JSON.stringify([ip ?? null, clientId ?? null, username ?? null]);
    const expiresAt = spec.duration === undefined ? undefined : now + spec.duration;
    let e = byKey.get(key);
    if (e && expired(e, now)) {
      remove(e, 'ban.expired');
      e = undefined;
    }
    let updated = false;
    if (e) {
      // the same target again: one ban, the later expiry wins (a permanent ban stays permanent)
      const prev = e.ban;
      const later = prev.expiresAt === undefined || expiresAt === undefined ? undefined : Math.max(prev.expiresAt, expiresAt);
      e.ban = Object.freeze({ ...prev, expiresAt: later, reason: spec.reason ?? prev.reason, actor: spec.actor ?? prev.actor });
      if (later === undefined) temporary.delete(e);
      updated = true;
    } else {
      if (byId.size >= maxBans) sweep();
      if (byId.size >= maxBans) {
        const oldest = temporary.values().next().value as Entry | undefined;
        if (!oldest) throw new BanError('BASTION_ERR_BAN_LIMIT', `the ban table is full (${maxBans} permanent bans); lift some first`);
        remove(oldest, 'ban.removed', { evicted: true, limit: maxBans });
      }
      e = {
        ban: Object.freeze({ id: randomUUID(), ip, clientId, username, reason: spec.reason, actor: spec.actor, createdAt: now, expiresAt }),
        range,
        key,
      };
      byId.set(e.ban.id, e);
      byKey.set(key, e);
      if (expiresAt !== undefined) temporary.add(e);
      index(e, true);
    }
    const kicked = ctx ? ctx.disconnectWhere(clientMatches(e), 'kicked', `banned${spec.reason ? `: ${spec.reason}` : ''}`) : 0;
    emit('ban.added', e, { kicked, updated });
    return e.ban;
  };

  for (const b of opts.bans ?? []) {
    const { duration, reason, actor, ...target } = b;
    ban(target, { duration, reason, actor });
  }

  const mw: Bans = {
    name: 'bans',
    controls: ['PR.SS-4', 'RS.RP-3'],

    get size() {
      return byId.size;
    },

    setup(context) {
      ctx = context;
      sweeper = setInterval(sweep, sweepInterval);
      sweeper.unref();
    },

    onConnection(conn: ConnectionInfo): Verdict {
      if (addressOnly.empty) return undefined;
      const addr = parseAddress(conn.remoteAddress);
      if (addr === undefined) return undefined;
      return firstLive(addressOnly.lookup(addr), addr, undefined, undefined) ? BANNED_ADDRESS : undefined;
    },

    onConnect(client: ClientInfo, packet: ConnectPacketInfo): Verdict {
      if (byClientId.size === 0 && byUsername.size === 0) return undefined;
      const byId = byClientId.size > 0 ? byClientId.get(packet.clientId) : undefined;
      const byName = byUsername.size > 0 && packet.username !== undefined ? byUsername.get(packet.username) : undefined;
      if (byId === undefined && byName === undefined) return undefined;
      const addr = parseAddress(client.remoteAddress);
      if (byId !== undefined && firstLive(byId, addr, packet.clientId, undefined)) return BANNED_CLIENT;
      // The claimed username: a banned name is refused whatever password comes with it.
      if (byName !== undefined && firstLive(byName, addr, packet.clientId, packet.username)) return BANNED_USER;
      return undefined;
    },

    onConnected(client: ClientInfo) {
      // Re-check every kind of ban once the session is up: a ban added while this client was between
      // its checks and CONNACK was not seen by disconnectWhere (the core lists a client only once
      // Aedes marks it connected), and the identity may come from elsewhere than the CONNECT
      // username (a certificate CN).
      if (byId.size === 0 || !ctx) return;
      const addr = parseAddress(client.remoteAddress);
      const e =
        (addr && !addressOnly.empty ? firstLive(addressOnly.lookup(addr), addr, client.id, client.username) : undefined) ??
        firstLive(byClientId.get(client.id), addr, client.id, client.username) ??
        (client.username !== undefined ? firstLive(byUsername.get(client.username), addr, client.id, client.username) : undefined);
      if (e) ctx.disconnect(client.id, 'kicked', `banned${e.ban.reason ? `: ${e.ban.reason}` : ''}`);
    },

    ban,

    unban(id, actor) {
      const e = byId.get(id);
      if (!e) return false;
      remove(e, 'ban.removed', actor !== undefined ? { liftedBy: actor } : {});
      return true;
    },

    list() {
      sweep();
      return [...byId.values()].map((e) => ({ ...e.ban }));
    },

    check(party) {
      const addr = party.ip !== undefined ? parseAddress(party.ip) : undefined;
      const { clientId, username } = party;
      const e =
        (addr ? firstLive(addressOnly.lookup(addr), addr, clientId, username) : undefined) ??
        (clientId !== undefined ? firstLive(byClientId.get(clientId), addr, clientId, username) : undefined) ??
        (username !== undefined ? firstLive(byUsername.get(username), addr, clientId, username) : undefined);
      return e ? { ...e.ban } : undefined;
    },

    bannedAddress(ip) {
      if (addressOnly.empty) return false;
      const addr = parseAddress(ip);
      return addr !== undefined && firstLive(addressOnly.lookup(addr), addr, undefined, undefined) !== undefined;
    },

    close() {
      clearInterval(sweeper);
      sweeper = undefined;
    },
  };
  return mw;
}
