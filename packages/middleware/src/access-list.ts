/**
 * Access lists (PR.SS-4): which networks may open a connection, and which client ids may connect.
 *
 * Addresses are checked at TCP accept where the broker offers it (`acceptCheck`, wired by
 * `@bastion/broker`: a refused address costs no TLS handshake and is held in the tarpit), and again
 * in `onConnection`, before a byte of CONNECT is read; client ids in `onConnect`. Deny wins; a
 * non-empty allow list admits only what it lists. IPv4, IPv6 and IPv4-mapped IPv6 are one address
 * space (see cidr.ts): `10.0.0.0/8` also matches a client seen as `::ffff:10.1.2.3`, and a rule may
 * be written either way.
 */
import type { AcceptRefusal, BrokerContext, ClientInfo, ConnectionInfo, ConnectPacketInfo, Middleware, Verdict } from '@bastion/core';
import { BastionError, deny } from '@bastion/core';
import { CidrError, CidrSet } from './cidr.js';
import { GlobSet } from './acl/glob.js';

export interface AccessListSettings {
  /** IP addresses and CIDR ranges (IPv4, IPv6, IPv4-mapped). */
  addresses?: { allow?: string[]; deny?: string[] };
  /** Client id patterns: exact, or globs with `*` (any run) and `?` (one character). */
  clientIds?: { allow?: string[]; deny?: string[] };
}

export interface AccessListOptions extends AccessListSettings {
  /** When `setLists` changes the lists, close live connections the new lists refuse (default true). */
  applyToConnected?: boolean;
}

/** The lists in force, as given. */
export interface AccessLists {
  addresses: { allow: string[]; deny: string[] };
  clientIds: { allow: string[]; deny: string[] };
}

export type ListVerdict = 'allowed' | 'denied' | 'not-listed';

export interface AccessList extends Middleware {
  /** Replace the lists: all entries are validated first (AccessListError, nothing applied). Returns how many live clients were closed. */
  setLists(lists: AccessListSettings): number;
  lists(): AccessLists;
  /** `denied`: on the deny list; `not-listed`: an allow list exists and does not name it. */
  checkAddress(address: string): ListVerdict;
  checkClientId(clientId: string): ListVerdict;
  /** The address lists as a check at TCP accept (`broker.addAcceptCheck`): the refusal, or undefined. */
  acceptCheck(remoteAddress: string): AcceptRefusal | undefined;
}

export class AccessListError extends BastionError {
  /** e.g. `addresses.deny[2]`. */
  readonly field: string;
  readonly entry: unknown;
  constructor(field: string, entry: unknown, problem: string, options?: { cause?: unknown }) {
    super('BASTION_ERR_ACCESS_LIST', `${field}: ${problem}`, options);
    this.name = 'AccessListError';
    this.field = field;
    this.entry = entry;
  }
}

const ADDRESS_DENIED = deny('not-authorized', 'the client address is on the deny list');
const ADDRESS_NOT_LISTED = deny('not-authorized', 'the client address is not on the allow list');
const DENIED_AT_ACCEPT: AcceptRefusal = Object.freeze({ limit: 'addresses.deny', reason: 'not-authorized' as const, control: 'PR.SS-4', message: 'connection refused at accept: the client address is on the deny list' });
const NOT_LISTED_AT_ACCEPT: AcceptRefusal = Object.freeze({ limit: 'addresses.allow', reason: 'not-authorized' as const, control: 'PR.SS-4', message: 'connection refused at accept: the client address is not on the allow list' });
const ID_DENIED = deny('client-id-rejected', 'the client id is on the deny list');
const ID_NOT_LISTED = deny('client-id-rejected', 'the client id is not on the allow list');

interface Compiled {
  allow: CidrSet;
  deny: CidrSet;
  idAllow: GlobSet;
  idDeny: GlobSet;
  given: AccessLists;
}

function stringList(v: unknown, field: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new AccessListError(field, v, 'must be a list of strings');
  v.forEach((e, i) => {
    if (typeof e !== 'string' || e.trim() === '') throw new AccessListError(`${field}[${i}]`, e, 'must be a non-empty string');
  });
  return [...(v as string[])];
}

function cidrs(list: string[], field: string): CidrSet {
  list.forEach((e, i) => {
    try {
      new CidrSet([e]);
    } catch (err) {
      if (err instanceof CidrError) throw new AccessListError(`${field}[${i}]`, e, err.message, { cause: err });
      throw err;
    }
  });
  return new CidrSet(list);
}

function compileAccessLists(settings: AccessListSettings): Compiled {
  if (typeof settings !== 'object' || settings === null) throw new AccessListError('lists', settings, 'must be an object with addresses and/or clientIds');
  for (const k of Object.keys(settings)) {
    if (k !== 'addresses' && k !== 'clientIds' && k !== 'applyToConnected') throw new AccessListError(k, undefined, 'unknown field (known: addresses, clientIds)');
  }
  const part = (name: 'addresses' | 'clientIds') => {
    const p = settings[name];
    if (p === undefined) return { allow: [] as string[], deny: [] as string[] };
    if (typeof p !== 'object' || p === null || Array.isArray(p)) throw new AccessListError(name, p, 'must be an object with allow and/or deny lists');
    for (const k of Object.keys(p)) if (k !== 'allow' && k !== 'deny') throw new AccessListError(`${name}.${k}`, undefined, 'unknown field (known: allow, deny)');
    return { allow: stringList(p.allow, `${name}.allow`), deny: stringList(p.deny, `${name}.deny`) };
  };
  const addresses = part('addresses');
  const clientIds = part('clientIds');
  return {
    allow: cidrs(addresses.allow, 'addresses.allow'),
    deny: cidrs(addresses.deny, 'addresses.deny'),
    idAllow: new GlobSet(clientIds.allow),
    idDeny: new GlobSet(clientIds.deny),
    given: { addresses, clientIds },
  };
}

/** Validate lists (as a profile would give them) and return them normalized; throws AccessListError. */
export function validateAccessLists(settings: AccessListSettings): AccessLists {
  return compileAccessLists(settings).given;
}

function addressVerdict(c: Compiled, address: string): ListVerdict {
  if (c.deny.size > 0 && c.deny.has(address)) return 'denied';
  if (c.allow.size > 0 && !c.allow.has(address)) return 'not-listed';
  return 'allowed';
}

function idVerdict(c: Compiled, id: string): ListVerdict {
  if (c.idDeny.size > 0 && c.idDeny.test(id)) return 'denied';
  if (c.idAllow.size > 0 && !c.idAllow.test(id)) return 'not-listed';
  return 'allowed';
}

export function accessList(opts: AccessListOptions = {}): AccessList {
  let lists = compileAccessLists(opts);
  const applyToConnected = opts.applyToConnected !== false;
  let ctx: BrokerContext | undefined;

  return {
    name: 'access-list',
    controls: ['PR.SS-4'],

    setup(context) {
      ctx = context;
    },

    onConnection(conn: ConnectionInfo): Verdict {
      const c = lists;
      if (c.deny.size === 0 && c.allow.size === 0) return undefined;
      const v = addressVerdict(c, conn.remoteAddress);
      return v === 'allowed' ? undefined : v === 'denied' ? ADDRESS_DENIED : ADDRESS_NOT_LISTED;
    },

    onConnect(_client: ClientInfo, packet: ConnectPacketInfo): Verdict {
      const c = lists;
      if (c.idDeny.size === 0 && c.idAllow.size === 0) return undefined;
      const v = idVerdict(c, packet.clientId);
      return v === 'allowed' ? undefined : v === 'denied' ? ID_DENIED : ID_NOT_LISTED;
    },

    onConnected(client: ClientInfo) {
      // A client that was mid-CONNECT while setLists ran is not yet listed by the broker, so
      // setLists could not close it: check it against the lists in force now.
      const c = lists;
      if (!ctx || (c.deny.size === 0 && c.allow.size === 0 && c.idDeny.size === 0 && c.idAllow.size === 0)) return;
      if (addressVerdict(c, client.remoteAddress) !== 'allowed' || idVerdict(c, client.id) !== 'allowed') {
        ctx.disconnect(client.id, 'kicked', 'refused by the updated access lists');
      }
    },

    setLists(settings) {
      const next = compileAccessLists(settings);
      lists = next;
      if (!ctx) return 0;
      let kicked = 0;
      if (applyToConnected) {
        kicked = ctx.disconnectWhere(
          (client) => addressVerdict(next, client.remoteAddress) !== 'allowed' || idVerdict(next, client.id) !== 'allowed',
          'kicked',
          'refused by the updated access lists',
        );
      }
      const detail = {
        addresses: { allow: next.allow.size, deny: next.deny.size },
        clientIds: { allow: next.idAllow.size, deny: next.idDeny.size },
        kicked,
      };
      ctx.logger.info({ accessList: detail }, 'access lists changed');
      ctx.events.emit({ type: 'access-list.changed', time: Date.now(), control: 'PR.SS-4', source: 'access-list', message: 'access lists changed', detail });
      return kicked;
    },

    lists() {
      return structuredClone(lists.given);
    },

    checkAddress(address) {
      return addressVerdict(lists, address);
    },

    checkClientId(clientId) {
      return idVerdict(lists, clientId);
    },

    acceptCheck(remoteAddress) {
      const c = lists;
      if (c.deny.size === 0 && c.allow.size === 0) return undefined;
      const v = addressVerdict(c, remoteAddress);
      return v === 'allowed' ? undefined : v === 'denied' ? DENIED_AT_ACCEPT : NOT_LISTED_AT_ACCEPT;
    },
  };
}
