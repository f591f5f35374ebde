import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import { readFile } from 'node:fs/promises';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { accept, createCoreBroker, type AuthVerdict, type BastionBroker, type ListenerOptions, type Middleware, type SecurityEvent } from '@bastion/core';
import {
  accessList,
  AccessListError,
  bans,
  BanError,
  CidrError,
  CidrSet,
  PrefixIndex,
  formatRange,
  parseAddress,
  parseCidr,
  parseIPv6,
  validateAccessLists,
} from '@bastion/middleware';
import { connect, tryConnect, isRefusal, closed, waitFor } from './support/mqtt.js';

const silent = pino({ level: 'silent' });
let broker: BastionBroker | undefined;
const clients: mqtt.MqttClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
});

/** The CONNECT username is the identity (no password): the tests are about lists and bans. */
const trustUsernames: Middleware = {
  name: 'trust-usernames',
  controls: ['PR.AC-3'],
  authenticate: (_c, creds): AuthVerdict => (creds.username ? accept('password', creds.username) : undefined),
};

async function start(middleware: Middleware[], listeners: ListenerOptions[] = [{ transport: 'mqtt', host: '127.0.0.1', port: 0 }]) {
  broker = await createCoreBroker({ listeners, middleware: [trustUsernames, ...middleware], logger: silent, anonymous: true });
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  const ports = Object.values(broker.addresses()).map((a) => a.port);
  return { url: `mqtt://127.0.0.1:${ports[0]}`, ports, events };
}

async function client(url: string, opts: mqtt.IClientOptions = {}) {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

/** Wait until the broker lists the client as connected (Aedes marks it so a little after CONNACK). */
async function listed(...ids: string[]) {
  await waitFor(() => ids.every((id) => [...broker!.clients()].some((c) => c.id === id)), 3000, `clients ${ids.join(', ')} listed`);
}

/** Holds every CONNECT at onConnect until released, to act while a client is mid-CONNECT. */
function holdConnects(): { mw: Middleware; reached: Promise<void>; release: () => void } {
  let release!: () => void;
  let reachedNow!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const reached = new Promise<void>((r) => (reachedNow = r));
  return {
    mw: { name: 'hold', controls: ['PR.AC-1'], onConnect: async () => { reachedNow(); await held; } },
    reached,
    release: () => release(),
  };
}

async function ipv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(0, '::1', () => s.close(() => resolve(true)));
  });
}

describe('CIDR matcher', () => {
  it('parses IPv4, IPv6 and IPv4-mapped addresses into one address space', () => {
    expect(parseAddress('10.1.2.3')).toEqual({ version: 4, value: 0x0a010203 });
    expect(parseAddress('::ffff:10.1.2.3')).toEqual({ version: 4, value: 0x0a010203 });
    expect(parseAddress('::ffff:a01:203')).toEqual({ version: 4, value: 0x0a010203 });
    expect(parseAddress('::1')).toEqual({ version: 6, value: 1n });
    expect(parseAddress('fe80::1%eth0')).toEqual({ version: 6, value: (0xfe80n << 112n) | 1n });
    expect(parseIPv6('2001:db8:0:0:0:0:0:1')).toBe(parseIPv6('2001:db8::1'));
    expect(parseIPv6('::')).toBe(0n);
    expect(parseIPv6('1:2:3:4:5:6:7:8')).toBe(0x00010002000300040005000600070008n);
    expect(parseIPv6('64:ff9b::192.0.2.33')).toBe((0x64n << 112n) | (0xff9bn << 96n) | 0xc0000221n);
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-1', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '12345::', 'g::1', '1:2:3:4:5:6:7:', 'localhost', '::ffff:1.2.3']) {
      expect(parseAddress(bad), bad).toBeUndefined();
    }
  });

  it('parses ranges strictly and canonically', () => {
    expect(formatRange(parseCidr('10.0.0.0/8'))).toBe('10.0.0.0/8');
    expect(formatRange(parseCidr('::ffff:10.0.0.0/104'))).toBe('10.0.0.0/8');
    expect(formatRange(parseCidr('::ffff:10.0.0.7'))).toBe('10.0.0.7');
    expect(formatRange(parseCidr('2001:DB8:0:0::/32'))).toBe('2001:db8::/32');
    expect(formatRange(parseCidr('0.0.0.0/0'))).toBe('0.0.0.0/0');
    expect(() => parseCidr('10.0.0.1/8')).toThrow(/host bits set; the network is 10\.0\.0\.0\/8/);
    expect(() => parseCidr('2001:db8::1/32')).toThrow(CidrError);
    expect(() => parseCidr('10.0.0.0/33')).toThrow(/prefix/);
    expect(() => parseCidr('::/129')).toThrow(/prefix/);
    expect(() => parseCidr('10.0.0.0/08')).toThrow(/prefix/);
    expect(() => parseCidr('example.com')).toThrow(CidrError);
  });

  it('CidrSet answers membership for IPv4, IPv6 and IPv4-mapped addresses', () => {
    const set = new CidrSet(['10.0.0.0/8', '192.168.1.7', '2001:db8::/32', '::ffff:172.16.0.0/108', '10.0.0.0/9', '11.0.0.0/8']);
    expect(set.has('10.200.3.4')).toBe(true);
    expect(set.has('::ffff:10.200.3.4')).toBe(true);
    expect(set.has('11.255.255.255')).toBe(true); // adjacent ranges merged
    expect(set.has('12.0.0.0')).toBe(false);
    expect(set.has('9.255.255.255')).toBe(false);
    expect(set.has('192.168.1.7')).toBe(true);
    expect(set.has('192.168.1.8')).toBe(false);
    expect(set.has('172.31.255.255')).toBe(true); // written as IPv4-mapped /108 = 172.16.0.0/12
    expect(set.has('172.32.0.0')).toBe(false);
    expect(set.has('2001:db8:ffff::1')).toBe(true);
    expect(set.has('2001:db9::1')).toBe(false);
    expect(set.has('::1')).toBe(false);
    expect(set.has('not an address')).toBe(false);
    // ::/0 is every address, IPv4 included (as IPv4-mapped); 0.0.0.0/0 is IPv4 only
    expect(new CidrSet(['::/0']).has('8.8.8.8')).toBe(true);
    expect(new CidrSet(['0.0.0.0/0']).has('::1')).toBe(false);
    expect(new CidrSet(['0.0.0.0/0']).has('255.255.255.255')).toBe(true);
    expect(new CidrSet([]).has('1.2.3.4')).toBe(false);
    expect(() => new CidrSet(['10.0.0.0/8', 'nope'])).toThrow(expect.objectContaining({ code: 'BASTION_ERR_CIDR', entry: 'nope' }));
  });

  it('agrees with a linear check on random addresses', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
    };
    const v4 = () => [rnd(2) + 10, rnd(16), rnd(256), rnd(256)].join('.');
    const entries: string[] = [];
    for (let i = 0; i < 300; i++) {
      const p = 18 + rnd(11);
      const r = parseCidr(`${v4()}/32`);
      const v = (r as { network: number }).network;
      const net4 = v - (v % 2 ** (32 - p));
      entries.push(`${[net4 >>> 24, (net4 >>> 16) & 255, (net4 >>> 8) & 255, net4 & 255].join('.')}/${p}`);
    }
    const set = new CidrSet(entries);
    const ranges = entries.map(parseCidr);
    let hits = 0;
    for (let i = 0; i < 3000; i++) {
      const a = v4();
      const addr = parseAddress(a)!;
      const linear = ranges.some((r) => r.version === 4 && addr.version === 4 && addr.value - (addr.value % 2 ** (32 - r.prefix)) === r.network);
      expect(set.has(a), a).toBe(linear);
      if (linear) hits++;
    }
    expect(hits).toBeGreaterThan(100);
    expect(hits).toBeLessThan(2900);
  });

  it('PrefixIndex finds every value whose range holds an address', () => {
    const idx = new PrefixIndex<string>();
    idx.add(parseCidr('10.0.0.0/8'), 'net');
    idx.add(parseCidr('10.1.2.3'), 'host');
    idx.add(parseCidr('::/0'), 'all');
    idx.add(parseCidr('2001:db8::/32'), 'doc');
    expect([...idx.lookup(parseAddress('10.1.2.3')!)].sort()).toEqual(['all', 'host', 'net']);
    expect([...idx.lookup(parseAddress('::ffff:10.9.9.9')!)].sort()).toEqual(['all', 'net']);
    expect([...idx.lookup(parseAddress('2001:db8::5')!)].sort()).toEqual(['all', 'doc']);
    idx.delete(parseCidr('::/0'), 'all');
    expect([...idx.lookup(parseAddress('8.8.8.8')!)]).toEqual([]);
  });
});

describe('access lists over real sockets', () => {
  it('IPv4 CIDR: an allow list admits only what it lists; deny wins over allow', async () => {
    const control = accessList({ addresses: { allow: ['10.0.0.0/8'] } });
    const { url, events } = await start([control]);
    expect(isRefusal(await tryConnect(url))).toBe(true);
    expect(events.find((e) => e.type === 'connection.refused')).toMatchObject({ source: 'access-list', control: 'PR.SS-4', remoteAddress: '127.0.0.1', message: 'the client address is not on the allow list' });

    control.setLists({ addresses: { allow: ['127.0.0.0/8'] } });
    await client(url);
    control.setLists({ addresses: { allow: ['127.0.0.0/8'], deny: ['127.0.0.1/32'] } });
    expect(isRefusal(await tryConnect(url))).toBe(true);
    expect(events.filter((e) => e.type === 'connection.refused').at(-1)).toMatchObject({ message: 'the client address is on the deny list' });
    expect(control.checkAddress('127.0.0.2')).toBe('allowed');
    expect(control.checkAddress('127.0.0.1')).toBe('denied');
    expect(control.checkAddress('10.0.0.1')).toBe('not-listed');
  });

  it('setLists closes live connections the new lists refuse, validates whole, and keeps the old lists on error', async () => {
    const control = accessList({});
    const { url, events } = await start([control]);
    const live = await client(url, { clientId: 'keep-me' });
    await listed('keep-me');
    const gone = closed(live);
    expect(() => control.setLists({ addresses: { deny: ['127.0.0.1', '10.0.0.1/8'] } })).toThrow(expect.objectContaining({ code: 'BASTION_ERR_ACCESS_LIST', field: 'addresses.deny[1]' }));
    expect(() => control.setLists({ addresses: { alow: ['1.2.3.4'] } } as never)).toThrow(AccessListError);
    expect(() => control.setLists({ clientIds: { deny: [''] } })).toThrow(expect.objectContaining({ field: 'clientIds.deny[0]' }));
    expect(live.connected).toBe(true);
    expect(control.lists()).toEqual({ addresses: { allow: [], deny: [] }, clientIds: { allow: [], deny: [] } });
    expect(control.setLists({ addresses: { deny: ['::ffff:127.0.0.1'] } })).toBe(1);
    await gone;
    expect(events.find((e) => e.type === 'client.disconnected')).toMatchObject({ reason: 'kicked', clientId: 'keep-me' });
    expect(events.find((e) => e.type === 'access-list.changed')).toMatchObject({ source: 'access-list', detail: { kicked: 1 } });
    expect(validateAccessLists({ addresses: { allow: ['::1'] } })).toEqual({ addresses: { allow: ['::1'], deny: [] }, clientIds: { allow: [], deny: [] } });
  });

  it('IPv6 over ::1 (or the matcher, when the host has no IPv6 loopback)', async () => {
    const control = accessList({ addresses: { deny: ['::1/128'] } });
    if (!(await ipv6Loopback())) {
      expect(control.checkAddress('::1')).toBe('denied');
      expect(control.checkAddress('0:0:0:0:0:0:0:1')).toBe('denied');
      expect(control.checkAddress('127.0.0.1')).toBe('allowed');
      return;
    }
    const { ports, events } = await start([control], [{ transport: 'mqtt', host: '::1', port: 0 }]);
    const url6 = `mqtt://[::1]:${ports[0]}`;
    expect(isRefusal(await tryConnect(url6))).toBe(true);
    expect(events.find((e) => e.type === 'connection.refused')).toMatchObject({ remoteAddress: '::1', source: 'access-list' });
    control.setLists({ addresses: { allow: ['::1'] } });
    await client(url6);
    control.setLists({ addresses: { allow: ['127.0.0.0/8', '2001:db8::/32'] } }); // IPv4 loopback only: ::1 is not listed
    expect(isRefusal(await tryConnect(url6))).toBe(true);
  });

  it('IPv4-mapped: rules written either way match an IPv4 client on a dual-stack listener', async () => {
    const control = accessList({ addresses: { deny: ['::ffff:127.0.0.0/104'] } });
    const dual = await ipv6Loopback();
    const { ports, events } = await start([control], [{ transport: 'mqtt', host: dual ? '::' : '0.0.0.0', port: 0 }]);
    const url = `mqtt://127.0.0.1:${ports[0]}`;
    expect(isRefusal(await tryConnect(url))).toBe(true);
    expect(events.find((e) => e.type === 'connection.refused')).toMatchObject({ remoteAddress: '127.0.0.1' }); // unwrapped by the core
    control.setLists({ addresses: { allow: ['::ffff:127.0.0.1'] } });
    await client(url);
    control.setLists({ addresses: { allow: ['127.0.0.1'], deny: ['::ffff:7f00:1'] } });
    expect(isRefusal(await tryConnect(url))).toBe(true);
    expect(control.checkAddress('::ffff:127.0.0.1')).toBe('denied');
  });

  it('a client mid-CONNECT while setLists runs is closed once its session is up', async () => {
    const control = accessList({});
    const hold = holdConnects();
    const { url, events } = await start([control, hold.mw]);
    const attempt = tryConnect(url, { clientId: 'in-flight' });
    await hold.reached;
    expect(control.setLists({ clientIds: { deny: ['in-*'] } })).toBe(0); // not listed yet: setLists cannot see it
    hold.release();
    await attempt;
    await waitFor(() => events.some((e) => e.type === 'client.disconnected' && e.clientId === 'in-flight' && e.reason === 'kicked'), 3000, 'the in-flight client kicked');
  });

  it('client-id patterns are checked at CONNECT (CONNACK 2)', async () => {
    const control = accessList({ clientIds: { allow: ['sensor-*', 'gw-??'], deny: ['sensor-evil*'] } });
    const { url, events } = await start([control]);
    await client(url, { clientId: 'sensor-1' });
    await client(url, { clientId: 'gw-01' });
    for (const id of ['sensor-evil-2', 'other', 'gw-1', 'gw-001', 'Sensor-1']) {
      const r = await tryConnect(url, { clientId: id });
      expect(isRefusal(r) && r.code, id).toBe(2);
    }
    expect(events.filter((e) => e.type === 'connection.refused').map((e) => e.message)).toEqual([
      'the client id is on the deny list',
      ...Array(4).fill('the client id is not on the allow list'),
    ]);
    expect(control.checkClientId('sensor-x.y')).toBe('allowed'); // '.' is literal, '*' spans it
  });
});

describe('docs/access-lists.md', () => {
  it('the example settings load and mean what the page says', async () => {
    const page = await readFile(new URL('../docs/access-lists.md', import.meta.url), 'utf8');
    const settings = JSON.parse(/```json\n([\s\S]*?)```/.exec(page)![1]!);
    const lists = accessList(settings.accessList);
    expect(lists.checkAddress('10.1.2.3')).toBe('allowed');
    expect(lists.checkAddress('::ffff:10.1.2.3')).toBe('allowed');
    expect(lists.checkAddress('10.66.1.1')).toBe('denied');
    expect(lists.checkAddress('172.16.0.1')).toBe('not-listed');
    expect(lists.checkAddress('2001:db8:10:ffff::1')).toBe('allowed');
    expect(lists.checkAddress('2001:db8:11::1')).toBe('not-listed');
    expect(lists.checkClientId('plant-7')).toBe('allowed');
    expect(lists.checkClientId('plant-test-1')).toBe('denied');
    expect(lists.checkClientId('dash-01')).toBe('allowed');
    expect(lists.checkClientId('dash-1')).toBe('not-listed');
    const banList = bans(settings.bans);
    expect(banList.list()).toMatchObject([{ ip: '192.168.10.66', reason: 'decommissioned gateway', expiresAt: undefined }]);
    expect(banList.check({ ip: '::ffff:192.168.10.66' })).toBeDefined();
    // and over the wire: loopback is on the allow list, a random client id is not
    const { url } = await start([lists, banList]);
    const r = await tryConnect(url, { clientId: 'random-id' });
    expect(isRefusal(r) && r.code).toBe(2);
    await client(url, { clientId: 'ops-console' });
  });
});

describe('bans', () => {
  it('an IP ban kicks a live client and refuses reconnects until it expires', async () => {
    const control = bans({ sweepInterval: 50 });
    const { url, events } = await start([control]);
    const victim = await client(url, { clientId: 'v1' });
    await listed('v1');
    const gone = closed(victim);
    // the kick and the refused reconnect below must fit in the ban (300 ms was too little on a loaded
    // machine); the test then waits out the rest, so no longer than it needs
    const b = control.ban({ ip: '127.0.0.1' }, { duration: 1500, reason: 'flooding', actor: 'detector:flood' });
    await gone;
    expect(b).toMatchObject({ ip: '127.0.0.1', reason: 'flooding', actor: 'detector:flood' });
    expect(b.expiresAt! - b.createdAt).toBe(1500);
    expect(events.find((e) => e.type === 'ban.added')).toMatchObject({ control: 'PR.SS-4', source: 'bans', remoteAddress: '127.0.0.1', reason: 'banned', detail: { id: b.id, kicked: 1, actor: 'detector:flood' } });
    expect(events.find((e) => e.type === 'client.disconnected')).toMatchObject({ clientId: 'v1', reason: 'kicked' });

    expect(isRefusal(await tryConnect(url))).toBe(true);
    expect(events.find((e) => e.type === 'connection.refused')).toMatchObject({ source: 'bans', reason: 'banned', control: 'PR.SS-4' });
    // lifts itself: reconnect as soon as it has expired
    let back: mqtt.MqttClient | undefined;
    await waitFor(() => b.expiresAt! <= Date.now(), 3000, 'expiry');
    const r = await tryConnect(url);
    if (!isRefusal(r)) back = r;
    expect(back?.connected).toBe(true);
    back?.end(true);
    expect(events.some((e) => e.type === 'ban.expired' && e.detail?.id === b.id)).toBe(true);
    expect(control.list()).toEqual([]);
  });

  it('a client mid-CONNECT when it is banned is closed once its session is up', async () => {
    const control = bans();
    const hold = holdConnects();
    const { url, events } = await start([control, hold.mw]);
    const attempt = tryConnect(url, { clientId: 'racer' });
    await hold.reached; // past the address check already
    control.ban({ ip: '127.0.0.1' }, { duration: 60_000 });
    expect(events.find((e) => e.type === 'ban.added')?.detail).toMatchObject({ kicked: 0 });
    hold.release();
    await attempt;
    await waitFor(() => events.some((e) => e.type === 'client.disconnected' && e.clientId === 'racer' && e.reason === 'kicked'), 3000, 'the racer kicked');
  });

  it('a CIDR ban (written IPv4-mapped) refuses the whole range; unban lifts it', async () => {
    const control = bans();
    const { url, events } = await start([control]);
    const b = control.ban({ ip: '::ffff:127.0.0.0/104' }, { actor: 'ops' });
    expect(b.ip).toBe('127.0.0.0/8');
    expect(b.expiresAt).toBeUndefined();
    expect(isRefusal(await tryConnect(url))).toBe(true);
    expect(control.check({ ip: '127.9.9.9' })?.id).toBe(b.id);
    expect(control.check({ ip: '128.0.0.1' })).toBeUndefined();
    expect(control.unban(b.id, 'ops')).toBe(true);
    expect(control.unban(b.id)).toBe(false);
    await client(url);
    expect(events.find((e) => e.type === 'ban.removed')).toMatchObject({ detail: { id: b.id, liftedBy: 'ops' } });
  });

  it('a client-id ban kicks that client and refuses it at CONNECT; others stay', async () => {
    const control = bans();
    const { url, events } = await start([control]);
    const bad = await client(url, { clientId: 'rogue-7' });
    const good = await client(url, { clientId: 'good-1' });
    await listed('rogue-7', 'good-1');
    const gone = closed(bad);
    control.ban({ clientId: 'rogue-7' }, { reason: 'tampered firmware' });
    await gone;
    expect(good.connected).toBe(true);
    const r = await tryConnect(url, { clientId: 'rogue-7' });
    expect(isRefusal(r) && r.code).toBe(5);
    expect(events.find((e) => e.type === 'connection.refused')).toMatchObject({ clientId: 'rogue-7', reason: 'banned', source: 'bans' });
    await client(url, { clientId: 'rogue-8' });
  });

  it('a username ban kicks every session of that user and refuses it at CONNECT', async () => {
    const control = bans();
    const { url, events } = await start([control]);
    const m1 = await client(url, { username: 'mallory', clientId: 'm1' });
    const m2 = await client(url, { username: 'mallory', clientId: 'm2' });
    const alice = await client(url, { username: 'alice', clientId: 'alice' });
    await listed('m1', 'm2', 'alice');
    const both = Promise.all([closed(m1), closed(m2)]);
    const b = control.ban({ username: 'mallory' });
    await both;
    expect(alice.connected).toBe(true);
    expect(events.find((e) => e.type === 'ban.added')?.detail).toMatchObject({ kicked: 2 });
    const r = await tryConnect(url, { username: 'mallory', clientId: 'm3' });
    expect(isRefusal(r) && r.code).toBe(5);
    expect(events.find((e) => e.type === 'connection.refused')).toMatchObject({ username: 'mallory', clientId: 'm3', reason: 'banned', source: 'bans' });
    control.unban(b.id);
    await client(url, { username: 'mallory', clientId: 'm3' });
  });

  it('several fields must all match: this user from that network', async () => {
    const control = bans();
    const { url } = await start([control]);
    control.ban({ username: 'bob', ip: '10.0.0.0/8' });
    const bob = await client(url, { username: 'bob', clientId: 'bob' }); // bob from 127.0.0.1 is fine
    await listed('bob');
    const gone = closed(bob);
    control.ban({ username: 'bob', ip: '127.0.0.0/8' });
    await gone;
    expect(isRefusal(await tryConnect(url, { username: 'bob' }))).toBe(true);
    expect(control.check({ username: 'bob', ip: '10.1.1.1' })).toBeDefined();
    expect(control.check({ username: 'bob' })).toBeUndefined();
  });

  it('banning the same target again updates one ban; the table is bounded, oldest temporary ban evicted first', async () => {
    const control = bans({ maxBans: 3 });
    const { events } = await start([control]);
    const a = control.ban({ clientId: 'a' }, { duration: 60_000 });
    const again = control.ban({ clientId: 'a' }, { duration: 1_000, reason: 'again' });
    expect(again.id).toBe(a.id);
    expect(again.expiresAt).toBe(a.expiresAt); // the later expiry wins
    expect(control.ban({ clientId: 'a' }).expiresAt).toBeUndefined(); // permanent now
    control.ban({ clientId: 'b' }, { duration: 60_000 });
    control.ban({ clientId: 'c' }, { duration: 60_000 });
    expect(control.size).toBe(3);
    control.ban({ clientId: 'd' }, { duration: 60_000 }); // evicts b (a is permanent)
    expect(control.list().map((x) => x.clientId)).toEqual(['a', 'c', 'd']);
    expect(events.find((e) => e.type === 'ban.removed')).toMatchObject({ clientId: 'b', detail: { evicted: true, limit: 3 } });
    control.ban({ clientId: 'e' });
    control.ban({ clientId: 'f' });
    expect(() => control.ban({ clientId: 'g' })).toThrow(expect.objectContaining({ code: 'BASTION_ERR_BAN_LIMIT' }));
    expect(() => control.ban({})).toThrow(BanError);
    expect(() => control.ban({ ip: '10.0.0.1/8' })).toThrow(/host bits/);
    expect(() => control.ban({ clientId: 'x' }, { duration: -5 })).toThrow(BanError);
    expect(() => control.ban({ mac: 'aa' } as never)).toThrow(BanError);
  });
});
