import { describe, it, expect, afterEach } from 'vitest';
import { mkdtemp, readFile, rm, writeFile, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { accept, createCoreBroker, isBastionError, type AuthVerdict, type BastionBroker, type Middleware, type SecurityEvent } from '@bastion/core';
import { acl, AclRuleError, readAclFile, type Acl, type AclAction, type AclIdentity, type AclOptions, type AclRule } from '@bastion/middleware';
import { connect, tryConnect, isRefusal, closed, waitFor } from './support/mqtt.js';

const silent = pino({ level: 'silent' });
let broker: BastionBroker | undefined;
const clients: mqtt.MqttClient[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await broker?.close();
  broker = undefined;
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/**
 * A test authenticator: the CONNECT username is the identity (no password check), groups from a table.
 * Keeps the tests about the ACL, not about scrypt.
 */
function trustUsernames(groups: Record<string, string[]> = {}): Middleware {
  return {
    name: 'trust-usernames',
    controls: ['PR.AC-3'],
    authenticate: (_c, creds): AuthVerdict => (creds.username ? accept('password', creds.username, groups[creds.username] ?? []) : undefined),
  };
}

async function start(control: Acl, extra: Record<string, unknown> = {}, groups: Record<string, string[]> = {}) {
  broker = await createCoreBroker({ listeners: [{ transport: 'mqtt', host: '127.0.0.1', port: 0 }], middleware: [trustUsernames(groups), control], logger: silent, anonymous: true, ...extra });
  const [tcp] = Object.values(broker.addresses());
  const events: SecurityEvent[] = [];
  broker.events.on((e) => events.push(e));
  return { url: `mqtt://127.0.0.1:${tcp!.port}`, events };
}

async function client(url: string, opts: mqtt.IClientOptions = {}) {
  const c = await connect(url, opts);
  clients.push(c);
  return c;
}

/** SUBACK return codes (mqtt.js rejects subscribeAsync when one is 0x80, so read them from the packet). */
async function granted(c: mqtt.MqttClient, topics: string[]): Promise<number[]> {
  try {
    return (await c.subscribeAsync(topics)).map((g) => g.qos);
  } catch (err) {
    const packet = (err as { packet?: { granted?: number[] } }).packet;
    if (!packet?.granted) throw err;
    return packet.granted;
  }
}

/** Resolve with the topics `sub` receives before the marker `end` arrives. */
function until(sub: mqtt.MqttClient, end = 'marker/end'): Promise<string[]> {
  const got: string[] = [];
  return new Promise((resolve) => {
    const on = (topic: string) => {
      if (topic === end) {
        sub.off('message', on);
        resolve(got);
      } else got.push(topic);
    };
    sub.on('message', on);
  });
}

/** Publish `topics` in order, then a marker on `end`; resolve with what `sub` received before the marker. */
async function deliveredBefore(sub: mqtt.MqttClient, pub: mqtt.MqttClient, topics: string[], end = 'marker/end'): Promise<string[]> {
  const got = until(sub, end);
  for (const t of topics) await pub.publishAsync(t, 'x', { qos: 1 });
  await pub.publishAsync(end, 'end', { qos: 1 });
  return got;
}

const everyone = (actions: AclAction[], topics: string[], extra: Partial<AclRule> = {}): AclRule => ({ effect: 'allow', actions, topics, ...extra });
/** Rules every test needs: the marker topic is open to all. */
const MARKER = everyone(['publish', 'subscribe', 'read'], ['marker/#'], { id: 'marker' });

describe('ACL: placeholders', () => {
  it('devices/%u/# lets alice publish under her name only; %c does the same for client ids', async () => {
    const control = acl({
      publishDenied: 'drop',
      rules: [
        MARKER,
        everyone(['publish'], ['devices/%u/#']),
        everyone(['publish'], ['clients/%c/status']),
        { effect: 'allow', users: ['observer'], actions: ['subscribe', 'read'], topics: ['#'] },
      ],
    });
    const { url, events } = await start(control);
    const observer = await client(url, { username: 'observer' });
    await observer.subscribeAsync('#');
    const alice = await client(url, { username: 'alice', clientId: 'dev-1' });
    const got = await deliveredBefore(observer, alice, ['devices/alice/x', 'devices/bob/x', 'devices/alice', 'clients/dev-1/status', 'clients/dev-2/status']);
    expect(got).toEqual(['devices/alice/x', 'devices/alice', 'clients/dev-1/status']);
    expect(events.filter((e) => e.type === 'publish.denied').map((e) => e.topic)).toEqual(['devices/bob/x', 'clients/dev-2/status']);
    expect(events.find((e) => e.type === 'publish.denied')).toMatchObject({ source: 'acl', control: 'PR.AC-5', username: 'alice', reason: 'not-authorized' });

    // an anonymous client has no %u: nothing under devices/ is its own
    const anon = await client(url, { clientId: 'anon-1' });
    expect(await deliveredBefore(observer, anon, ['devices//x', 'devices/undefined/x', 'clients/anon-1/status'])).toEqual(['clients/anon-1/status']);
  });

  it('a value with +, # or / never stands in for a placeholder (no injection)', () => {
    const control = acl({ rules: [everyone(['publish', 'subscribe', 'read'], ['devices/%u/#', 'c/%c/x'])] });
    expect(control.check({ username: 'a' }, 'publish', 'devices/a/b/x').effect).toBe('allow');
    // 'a/b' spliced into the filter would give devices/a/b/# and allow this
    expect(control.check({ username: 'a/b' }, 'publish', 'devices/a/b/x').effect).toBe('deny');
    expect(control.check({ username: '+' }, 'subscribe', 'devices/+/#').effect).toBe('deny');
    expect(control.check({ username: '#' }, 'subscribe', 'devices/#').effect).toBe('deny');
    expect(control.check({ username: 'x+' }, 'publish', 'devices/x+/y').effect).toBe('deny');
    expect(control.check({ id: '#' }, 'subscribe', 'c/#').effect).toBe('deny');
    expect(control.check({ id: 'dev' }, 'subscribe', 'c/dev/x').effect).toBe('allow');
    // a $-value does not reach $-topics through a first-level placeholder
    const first = acl({ rules: [everyone(['publish'], ['%u/#'])] });
    expect(first.check({ username: 'bob' }, 'publish', 'bob/x').effect).toBe('allow');
    expect(first.check({ username: '$SYS' }, 'publish', '$SYS/x').effect).toBe('deny');
  });

  it('%cn and certificate selectors use the verified certificate subject', () => {
    const control = acl({
      rules: [
        everyone(['publish'], ['sensors/%cn/#']),
        { effect: 'allow', certificate: { ou: 'ops', o: 'Acme' }, actions: ['subscribe'], topics: ['ops/#'] },
      ],
    });
    const cert = (cn: string, ou: string | string[], o = 'Acme'): AclIdentity => ({ certificate: { commonName: cn, subject: { CN: cn, OU: ou, O: o } } });
    expect(control.check(cert('s1', 'x'), 'publish', 'sensors/s1/t').effect).toBe('allow');
    expect(control.check(cert('s1', 'x'), 'publish', 'sensors/s2/t').effect).toBe('deny');
    expect(control.check({ username: 's1' }, 'publish', 'sensors/s1/t').effect).toBe('deny'); // no certificate, no %cn
    expect(control.check(cert('a', ['eng', 'ops']), 'subscribe', 'ops/#').effect).toBe('allow');
    expect(control.check(cert('a', 'ops', 'Other'), 'subscribe', 'ops/#').effect).toBe('deny');
    expect(control.check(cert('a', 'eng'), 'subscribe', 'ops/#').effect).toBe('deny');
  });
});

describe('ACL: evaluation order and selectors', () => {
  it('higher priority first, then list order; the first matching rule decides; otherwise defaultEffect', () => {
    const rules: AclRule[] = [
      { id: 'allow-all', effect: 'allow', actions: ['publish'], topics: ['#'] },
      { id: 'deny-secret', effect: 'deny', actions: ['publish'], topics: ['secret/#'], priority: 10 },
      { id: 'allow-secret-ops', effect: 'allow', groups: ['ops'], actions: ['publish'], topics: ['secret/ops'], priority: 10 },
      { id: 'allow-secret-ops-late', effect: 'allow', groups: ['ops'], actions: ['publish'], topics: ['secret/#'], priority: 20 },
    ];
    const control = acl({ rules });
    expect(control.check({ username: 'u' }, 'publish', 'a/b')).toMatchObject({ effect: 'allow', index: 0 });
    expect(control.check({ username: 'u' }, 'publish', 'secret/x')).toMatchObject({ effect: 'deny', rule: { id: 'deny-secret' } });
    // equal priority 10: deny-secret comes first in the list and wins over allow-secret-ops
    expect(control.check({ username: 'u', groups: ['eng'] }, 'publish', 'secret/ops')).toMatchObject({ effect: 'deny', index: 1 });
    // priority 20 beats both
    expect(control.check({ username: 'u', groups: ['ops'] }, 'publish', 'secret/ops')).toMatchObject({ effect: 'allow', rule: { id: 'allow-secret-ops-late' } });
    expect(control.check({}, 'subscribe', 'a')).toMatchObject({ effect: 'deny', rule: undefined, index: -1 });
    expect(acl({ defaultEffect: 'allow' }).check({}, 'subscribe', 'a').effect).toBe('allow');
  });

  it('selectors combine with AND; users ["*"] means any authenticated user; client ids take globs', () => {
    const control = acl({
      rules: [
        { effect: 'allow', users: ['*'], actions: ['publish'], topics: ['members/#'] },
        { effect: 'allow', users: ['alice'], groups: ['ops'], actions: ['publish'], topics: ['ops/#'] },
        { effect: 'allow', clientIds: ['sensor-*', 'probe-?'], actions: ['publish'], topics: ['telemetry/#'] },
      ],
    });
    expect(control.check({ username: 'x' }, 'publish', 'members/a').effect).toBe('allow');
    expect(control.check({ id: 'c1' }, 'publish', 'members/a').effect).toBe('deny');
    expect(control.check({ username: 'alice', groups: ['ops'] }, 'publish', 'ops/a').effect).toBe('allow');
    expect(control.check({ username: 'alice', groups: ['eng'] }, 'publish', 'ops/a').effect).toBe('deny');
    expect(control.check({ username: 'bob', groups: ['ops'] }, 'publish', 'ops/a').effect).toBe('deny');
    expect(control.check({ id: 'sensor-17' }, 'publish', 'telemetry/t').effect).toBe('allow');
    expect(control.check({ id: 'probe-1' }, 'publish', 'telemetry/t').effect).toBe('allow');
    expect(control.check({ id: 'probe-12' }, 'publish', 'telemetry/t').effect).toBe('deny');
    expect(control.check({ id: 'xsensor-1' }, 'publish', 'telemetry/t').effect).toBe('deny');
  });

  it('wildcards at the first level do not match $ topics', () => {
    const control = acl({ rules: [everyone(['publish', 'read', 'subscribe'], ['#', '+/x'])] });
    expect(control.check({}, 'read', 'a/x').effect).toBe('allow');
    expect(control.check({}, 'read', '$SYS/x').effect).toBe('deny');
    expect(control.check({}, 'subscribe', '$SYS/#').effect).toBe('deny');
    expect(acl({ rules: [everyone(['read'], ['$SYS/#'])] }).check({}, 'read', '$SYS/broker/uptime').effect).toBe('allow');
  });
});

describe('ACL: subscribe, read and retained messages', () => {
  it('a subscription filter is granted only by a rule whose filter covers it', async () => {
    const control = acl({
      rules: [
        { effect: 'allow', users: ['u'], actions: ['subscribe'], topics: ['a/b', 'c/#', 'd/+/x', 'e/+'] },
        { effect: 'deny', users: ['u'], actions: ['subscribe'], topics: ['c/secret'] },
      ],
    });
    const { url } = await start(control);
    const c = await client(url, { username: 'u' });
    expect(await granted(c, ['a/#', 'a/+', 'a/b', 'c/#', 'c/x/#', 'c/+/y', 'd/+/x', 'd/q/x', 'd/#', 'e/+', 'e/#', 'c/secret'])).toEqual([
      128, 128, 0, 0, 0, 0, 0, 0, 128, 0, 128, 0,
    ]);
    // c/secret: the deny rule comes after the covering allow c/# in the list: the allow decides
    const strict = acl({ rules: [{ effect: 'deny', actions: ['subscribe'], topics: ['c/secret'] }, everyone(['subscribe'], ['c/#'])] });
    expect(strict.check({}, 'subscribe', 'c/secret').effect).toBe('deny');
    // a deny rule refuses only filters it covers; c/# stays allowed (read rights guard the data)
    expect(strict.check({}, 'subscribe', 'c/#').effect).toBe('allow');
  });

  it('a client subscribed to # receives only what it may read, retained messages included', async () => {
    const control = acl({
      publishDenied: 'drop',
      rules: [MARKER, everyone(['publish', 'subscribe'], ['#']), everyone(['read'], ['public/#']), { effect: 'allow', users: ['admin'], actions: ['read'], topics: ['#'] }],
    });
    const { url, events } = await start(control);
    const pub = await client(url, { username: 'pub' });
    await pub.publishAsync('public/r', 'retained-public', { qos: 1, retain: true });
    await pub.publishAsync('private/r', 'retained-private', { qos: 1, retain: true });

    const reader = await client(url, { username: 'reader' });
    const admin = await client(url, { username: 'admin' });
    const seen = (c: mqtt.MqttClient) => {
      const topics: string[] = [];
      c.on('message', (t) => topics.push(t));
      return topics;
    };
    const readerSaw = seen(reader);
    const adminSaw = seen(admin);
    expect(await granted(reader, ['#'])).toEqual([0]);
    expect(await granted(admin, ['#'])).toEqual([0]);
    // the retained private message went through authorizeForward and was withheld from the reader
    await waitFor(() => events.some((e) => e.type === 'forward.denied' && e.topic === 'private/r' && e.username === 'reader'), 3000, 'retained private/r withheld');
    await waitFor(() => adminSaw.length === 2 && readerSaw.length === 1, 3000, 'retained messages');
    expect(adminSaw.sort()).toEqual(['private/r', 'public/r']);
    expect(readerSaw).toEqual(['public/r']);

    const adminGot = until(admin);
    expect(await deliveredBefore(reader, pub, ['public/a', 'private/b', 'public/c'])).toEqual(['public/a', 'public/c']);
    expect(await adminGot).toEqual(['public/a', 'private/b', 'public/c']);
    expect(events.some((e) => e.type === 'forward.denied' && e.topic === 'private/b' && e.username === 'reader' && e.source === 'acl')).toBe(true);
  });

  it('a will to a forbidden topic is refused at CONNECT (CONNACK 5)', async () => {
    const control = acl({ rules: [everyone(['publish'], ['status/%c'])] });
    const { url, events } = await start(control);
    const refused = await tryConnect(url, { clientId: 'dev-9', will: { topic: 'alarms/all', payload: Buffer.from('gone'), qos: 0, retain: false } });
    expect(isRefusal(refused) && refused.code).toBe(5);
    expect(events.find((e) => e.type === 'publish.denied')).toMatchObject({ topic: 'alarms/all', source: 'acl', clientId: 'dev-9' });
    // someone else's status topic is forbidden too; its own is fine
    const other = await tryConnect(url, { clientId: 'dev-9', will: { topic: 'status/dev-8', payload: Buffer.from('gone'), qos: 0, retain: false } });
    expect(isRefusal(other) && other.code).toBe(5);
    await client(url, { clientId: 'dev-9', will: { topic: 'status/dev-9', payload: Buffer.from('gone'), qos: 0, retain: false } });
  });
});

describe('ACL: live changes', () => {
  const rules = (): AclRule[] => [
    MARKER,
    everyone(['publish'], ['#'], { id: 'pub' }),
    everyone(['subscribe'], ['news/#'], { id: 'sub-news' }),
    everyone(['read'], ['news/#'], { id: 'read-news' }),
  ];

  it('a rule removed at runtime stops delivery to an existing subscription within one message', async () => {
    const control = acl({ rules: rules() });
    const { url } = await start(control);
    const sub = await client(url);
    await sub.subscribeAsync(['news/#', 'marker/#']);
    const pub = await client(url);
    expect(await deliveredBefore(sub, pub, ['news/1'])).toEqual(['news/1']);
    const generation = control.generation;
    expect(await control.removeRule('read-news')).toBe(true);
    expect(control.generation).toBe(generation + 1);
    expect(await deliveredBefore(sub, pub, ['news/2'])).toEqual([]); // the very next message is withheld
    expect(await control.removeRule('read-news')).toBe(false);
    await control.addRule(everyone(['read'], ['news/#'], { id: 'read-news' }));
    expect(await deliveredBefore(sub, pub, ['news/3'])).toEqual(['news/3']);
  });

  it('withdraws live subscriptions the new rules refuse (onRevoked: unsubscribe)', async () => {
    const control = acl({ rules: rules() });
    const { url, events } = await start(control);
    const sub = await client(url);
    await sub.subscribeAsync(['news/#', 'marker/#']);
    const pub = await client(url);
    // read stays allowed, subscribe is withdrawn: the subscription itself must go
    const change = await control.setRules(rules().filter((r) => r.id !== 'sub-news'));
    expect(change).toEqual({ rules: 3, withdrawn: 1, disconnected: 0 });
    expect(await deliveredBefore(sub, pub, ['news/4'])).toEqual([]);
    expect(sub.connected).toBe(true);
    expect(events.find((e) => e.type === 'subscribe.denied')).toMatchObject({ topic: 'news/#', message: 'subscription withdrawn after a rule change' });
    expect(events.find((e) => e.type === 'acl.changed')).toMatchObject({ source: 'acl', control: 'PR.AC-5', detail: { withdrawn: 1 } });
  });

  it("onRevoked: 'disconnect' closes the clients that lost a subscription, and only those", async () => {
    const control = acl({ onRevoked: 'disconnect', rules: [...rules(), everyone(['subscribe', 'read'], ['weather/#'], { id: 'weather' })] });
    const { url, events } = await start(control);
    const loser = await client(url);
    await loser.subscribeAsync(['news/#']);
    const keeper = await client(url);
    await keeper.subscribeAsync(['weather/#']);
    const gone = closed(loser);
    const change = await control.removeRule('sub-news');
    expect(change).toBe(true);
    await gone;
    expect(keeper.connected).toBe(true);
    expect(events.find((e) => e.type === 'client.disconnected')).toMatchObject({ reason: 'kicked', clientId: loser.options.clientId });
    expect(events.find((e) => e.type === 'acl.changed')).toMatchObject({ detail: { withdrawn: 1, disconnected: 1 } });
  });

  it('a bad rule set is refused whole and the old rules stay', async () => {
    const control = acl({ publishDenied: 'drop', rules: rules() });
    const { url } = await start(control);
    const before = control.rules();
    const generation = control.generation;
    const bad = [...rules(), everyone(['publish'], ['x/#/y'], { id: 'broken' })];
    const err = await control.setRules(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AclRuleError);
    expect(err).toMatchObject({ code: 'BASTION_ERR_ACL_RULE', index: 4, ruleId: 'broken', field: 'topics[0]' });
    expect(control.rules()).toEqual(before);
    expect(control.generation).toBe(generation);

    const cases: Array<[unknown, Partial<AclRuleError>]> = [
      [[{ effect: 'maybe', actions: ['publish'], topics: ['a'] }], { index: 0, field: 'effect' }],
      [[MARKER, { effect: 'allow', actions: ['write'], topics: ['a'] }], { index: 1, field: 'actions[0]' }],
      [[{ effect: 'allow', actions: ['publish'], topics: ['a/%u-x'] }], { field: 'topics[0]' }],
      [[{ effect: 'allow', actions: ['publish'], topic: ['a'] }], { field: 'topic' }],
      [[{ effect: 'allow', users: [], actions: ['publish'], topics: ['a'] }], { field: 'users' }],
      [[{ id: 'x', effect: 'allow', actions: ['read'], topics: ['a'] }, { id: 'x', effect: 'deny', actions: ['read'], topics: ['b'] }], { index: 1, field: 'id', ruleId: 'x' }],
      [[{ effect: 'allow', priority: 'high', actions: ['read'], topics: ['a'] }], { field: 'priority' }],
      [[{ effect: 'allow', certificate: { cn: 'a', uid: 'b' }, actions: ['read'], topics: ['a'] }], { field: 'certificate.uid' }],
      ['not a list', { index: -1, field: 'rules' }],
    ];
    for (const [input, expected] of cases) {
      const e = await control.setRules(input as AclRule[]).catch((x: unknown) => x);
      expect(isBastionError(e, 'BASTION_ERR_ACL_RULE'), JSON.stringify(input)).toBe(true);
      expect(e).toMatchObject(expected);
    }
    expect(() => acl({ rules: [{ effect: 'allow', actions: [], topics: ['a'] }] })).toThrow(AclRuleError);
    // the old rules still work over the wire
    const sub = await client(url);
    await sub.subscribeAsync(['news/#', 'marker/#']);
    expect(await deliveredBefore(sub, await client(url), ['news/ok'])).toEqual(['news/ok']);
    expect(control.generation).toBe(generation);
  });
});

describe('ACL: rules file', () => {
  async function dir() {
    const d = await mkdtemp(join(tmpdir(), 'bastion-acl-'));
    dirs.push(d);
    return d;
  }

  it('loads YAML, reloads on change (validate, then swap), and keeps the old rules when the file is bad', async () => {
    const file = join(await dir(), 'acl.yaml');
    await writeFile(file, ['- id: marker', '  effect: allow', '  actions: [publish, subscribe, read]', '  topics: ["marker/#"]', '- id: a', '  effect: allow', '  actions: [publish, subscribe, read]', '  topics: ["a/#"]', ''].join('\n'));
    const control = acl({ file, reloadDebounce: 20, publishDenied: 'drop' });
    const { url, events } = await start(control);
    expect(control.rules().map((r) => r.id)).toEqual(['marker', 'a']);
    const sub = await client(url);
    expect(await granted(sub, ['a/#', 'b/#', 'marker/#'])).toEqual([0, 128, 0]);
    const pub = await client(url);
    expect(await deliveredBefore(sub, pub, ['a/1', 'b/1'])).toEqual(['a/1']);

    // replace the file the way editors do (write elsewhere, rename over it)
    let generation = control.generation;
    await writeFile(`${file}.tmp`, JSON.stringify([{ id: 'marker', effect: 'allow', actions: ['publish', 'subscribe', 'read'], topics: ['marker/#'] }, { id: 'b', effect: 'allow', actions: ['publish', 'subscribe', 'read'], topics: ['b/#'] }]));
    await rename(`${file}.tmp`, file);
    await waitFor(() => control.generation > generation, 3000, 'the rules file reload');
    expect(control.rules().map((r) => r.id)).toEqual(['marker', 'b']);
    await waitFor(() => events.some((e) => e.type === 'acl.changed'), 3000, 'acl.changed');
    expect(events.filter((e) => e.type === 'subscribe.denied' && e.message === 'subscription withdrawn after a rule change').map((e) => e.topic)).toEqual(['a/#']);
    expect(await granted(sub, ['b/#'])).toEqual([0]);
    expect(await deliveredBefore(sub, pub, ['a/2', 'b/2'])).toEqual(['b/2']);

    // a bad file: an error event, the old rules stay
    generation = control.generation;
    await writeFile(file, '- id: c\n  effect: allow\n  actions: [publish]\n  topics: ["c/#/d"]\n');
    const failed = () => events.filter((e) => e.type === 'acl.reload.failed').map((e) => e.message ?? '');
    await waitFor(() => failed().some((m) => /rule 0 \(id "c"\), topics\[0\]/.test(m)), 3000, 'acl.reload.failed naming the rule');
    expect(control.generation).toBe(generation);
    expect(await deliveredBefore(sub, pub, ['b/3'])).toEqual(['b/3']);
    // an empty file (an editor mid-save) is refused too
    const empties = () => failed().filter((m) => /empty/.test(m)).length;
    const emptiesBefore = empties();
    await writeFile(file, '');
    await waitFor(() => empties() > emptiesBefore, 3000, 'acl.reload.failed for the empty file');
    expect(control.generation).toBe(generation);
    expect(control.rules().map((r) => r.id)).toEqual(['marker', 'b']);
  });

  it('reads JSON and { rules: [...] }; ids must be unique across code and file rules; a bad file fails the start', async () => {
    const d = await dir();
    const json = join(d, 'acl.json');
    await writeFile(json, JSON.stringify({ rules: [{ id: 'j', effect: 'deny', actions: ['read'], topics: ['#'] }] }));
    expect((await readAclFile(json)).rules).toEqual([{ id: 'j', effect: 'deny', actions: ['read'], topics: ['#'] }]);
    await expect(readAclFile(json, new Set(['j']))).rejects.toMatchObject({ code: 'BASTION_ERR_ACL_RULE', field: 'id', source: json });
    await writeFile(json, '{ "rules": [ }');
    await expect(readAclFile(json)).rejects.toMatchObject({ field: 'file', message: expect.stringMatching(/not valid JSON/) });
    const control = acl({ file: json });
    await expect(createCoreBroker({ listeners: [{ transport: 'mqtt', host: '127.0.0.1', port: 0 }], middleware: [control], logger: silent })).rejects.toMatchObject({ code: 'BASTION_ERR_ACL_RULE' });
  });
});

// ---- 10,000 rules against an independent, linear reference --------------------------------------

function topicMatches(filter: string[], topic: string[], value: (ph: string) => string | undefined): boolean {
  if (topic[0]?.startsWith('$') && (filter[0] === '#' || filter[0] === '+' || filter[0]?.startsWith('%'))) return false;
  for (let i = 0; i < filter.length; i++) {
    const f = filter[i]!;
    if (f === '#') return true;
    if (i >= topic.length) return false;
    if (f === '+') continue;
    if (f === '%u' || f === '%c' || f === '%cn') {
      if (value(f) !== topic[i]) return false;
      continue;
    }
    if (f !== topic[i]) return false;
  }
  return filter.length === topic.length;
}

/** Does rule filter R cover subscription filter S? Enumerate: R must match S read as a topic, with S's wildcards matched only by wildcards at least as wide. */
function covers(rule: string[], sub: string[], value: (ph: string) => string | undefined): boolean {
  if (sub[0]?.startsWith('$') && (rule[0] === '#' || rule[0] === '+' || rule[0]?.startsWith('%'))) return false;
  for (let i = 0; i < rule.length; i++) {
    const r = rule[i]!;
    if (r === '#') return true;
    if (i >= sub.length) return false;
    const s = sub[i]!;
    if (s === '#') return false;
    if (r === '+') continue;
    if (s === '+') return false;
    if (r.startsWith('%')) {
      if (value(r) !== s) return false;
      continue;
    }
    if (r !== s) return false;
  }
  return rule.length === sub.length;
}

/** Rules in evaluation order: priority descending, then list order. */
function evaluationOrder(rules: AclRule[]): AclRule[] {
  return rules
    .map((r, i) => ({ r, i }))
    .sort((a, b) => (b.r.priority ?? 0) - (a.r.priority ?? 0) || a.i - b.i)
    .map((x) => x.r);
}

function referenceDecision(order: AclRule[], who: { username?: string; id: string; groups: string[] }, action: AclAction, topic: string, defaultEffect: 'allow' | 'deny') {
  const valid = (v: string | undefined) => (v && !/[+#/\u0000]/.test(v) ? v : undefined);
  const value = (ph: string) => (ph === '%u' ? valid(who.username) : ph === '%c' ? valid(who.id) : undefined);
  for (const r of order) {
    if (!r.actions.includes(action)) continue;
    if (r.users && !(who.username !== undefined && (r.users.includes('*') || r.users.includes(who.username)))) continue;
    if (r.groups && !who.groups.some((g) => r.groups!.includes(g))) continue;
    if (r.clientIds && !r.clientIds.some((p) => new RegExp(`^${p.split('*').map((x) => x.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&')).join('.*')}$`).test(who.id))) continue;
    const t = topic.split('/');
    const hit = r.topics.some((f) => (action === 'subscribe' ? covers(f.split('/'), t, value) : topicMatches(f.split('/'), t, value)));
    if (hit) return r.effect;
  }
  return defaultEffect;
}

describe('ACL: 10,000 rules', () => {
  // a deterministic PRNG so a failure can be replayed
  let seed = 42;
  const rnd = (n: number) => {
    // mulberry32
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
  const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)]!;
  const words = ['a', 'b', 'c', 'fleet', 'cmd', 'telemetry', 'x'];

  function generate(): AclRule[] {
    const rules: AclRule[] = [];
    for (let i = 0; i < 10_000; i++) {
      const kind = i % 10;
      const effect = rnd(4) === 0 ? 'deny' : 'allow';
      const actions = (['publish', 'subscribe', 'read'] as const).filter(() => rnd(2) === 0);
      if (actions.length === 0) actions.push('publish');
      const level = () => pick(['+', '%u', '%c', ...words, `u${rnd(50)}`]);
      const filter = [pick(words), level(), level()].slice(0, 1 + rnd(3)).join('/') + (rnd(3) === 0 ? '/#' : '');
      const rule: AclRule = { id: `r${i}`, effect, actions: [...actions], topics: [filter], priority: rnd(5) === 0 ? rnd(3) : 0 };
      if (kind < 6) rule.users = [`u${rnd(200)}`];
      else if (kind === 6) rule.groups = [`g${rnd(10)}`];
      else if (kind === 7) rule.clientIds = [rnd(2) === 0 ? `c${rnd(200)}` : `c${rnd(20)}*`];
      else if (kind === 8) rule.users = ['*'];
      rules.push(rule);
    }
    return rules;
  }

  it('the compiled tries agree with a linear reference on random questions, and the rules hold over the wire', async () => {
    const rules = generate();
    const input: AclRule[] = [...rules, { id: 'tail', effect: 'allow', users: ['u7'], actions: ['publish'], topics: ['own/u7/#'] }];
    const control = acl({ rules: input, publishDenied: 'drop' });
    expect(control.rules()).toEqual(input);
    const order = evaluationOrder(input); // the reference reads the rules as written, not as the ACL kept them
    let allows = 0;
    const word = () => pick([...words, `u${rnd(50)}`]);
    for (let q = 0; q < 4000; q++) {
      let who: { username?: string; id: string; groups: string[] } = { username: rnd(10) === 0 ? undefined : `u${rnd(200)}`, id: `c${rnd(200)}`, groups: rnd(2) ? [`g${rnd(10)}`] : [] };
      const action = pick(['publish', 'subscribe', 'read'] as const);
      let topic: string;
      if (rnd(10) < 7) {
        // a question near a random rule: its identity (mostly), a topic made from its filter
        const r = pick(rules);
        if (rnd(5) > 0) {
          const u = r.users?.[0];
          who = {
            username: u && u !== '*' ? u : `u${rnd(200)}`,
            id: r.clientIds?.[0]?.replace('*', String(rnd(30))) ?? `c${rnd(200)}`,
            groups: r.groups ? [...r.groups] : who.groups,
          };
        }
        const levels: string[] = [];
        for (const l of r.topics[0]!.split('/')) {
          if (l === '#') for (let k = rnd(3); k > 0; k--) levels.push(action === 'subscribe' && rnd(3) === 0 ? '+' : word());
          else if (l === '+') levels.push(action === 'subscribe' && rnd(2) === 0 ? '+' : word());
          else if (l === '%u') levels.push(action === 'subscribe' && rnd(4) === 0 ? '+' : rnd(6) === 0 ? word() : (who.username ?? 'n'));
          else if (l === '%c') levels.push(action === 'subscribe' && rnd(4) === 0 ? '+' : rnd(6) === 0 ? word() : who.id);
          else levels.push(rnd(12) === 0 ? word() : l);
        }
        if (action === 'subscribe' && levels.length > 0 && rnd(4) === 0) levels[rnd(levels.length)] = '+';
        if (action === 'subscribe' && rnd(4) === 0) levels.push('#');
        if (levels.length === 0) levels.push(word());
        topic = levels.join('/');
      } else {
        const levels = [pick(words), pick([...words, who.username ?? 'u0', who.id, `u${rnd(50)}`]), pick([...words, who.id, who.username ?? 'n'])].slice(0, 1 + rnd(3));
        if (action === 'subscribe' && rnd(3) === 0) levels[rnd(levels.length)] = '+';
        if (action === 'subscribe' && rnd(4) === 0) levels.push('#');
        topic = levels.join('/');
      }
      const expected = referenceDecision(order, who, action, topic, 'deny');
      const got = control.check(who, action, topic).effect;
      if (got !== expected) throw new Error(`disagreement on ${JSON.stringify({ who, action, topic })}: compiled ${got}, reference ${expected}`);
      if (got === 'allow') allows++;
    }
    expect(allows).toBeGreaterThan(500); // the sample exercises both answers
    expect(allows).toBeLessThan(3500);

    const { url, events } = await start(control);
    const u7 = await client(url, { username: 'u7', clientId: 'u7-device' });
    await u7.publishAsync('own/u7/a', 'x', { qos: 1 });
    await u7.publishAsync('own/u8/a', 'x', { qos: 1 });
    await waitFor(() => events.some((e) => e.type === 'publish.denied'), 3000, 'the denial');
    expect(events.filter((e) => e.type === 'publish.denied').map((e) => e.topic)).toEqual(['own/u8/a']);
  });
});

describe('docs/acl.md', () => {
  it('the example rules file loads and means what the page says', async () => {
    const page = await readFile(new URL('../docs/acl.md', import.meta.url), 'utf8');
    const yaml = /```yaml\n([\s\S]*?)```/.exec(page)?.[1];
    expect(yaml).toBeDefined();
    const d = await mkdtemp(join(tmpdir(), 'bastion-acl-doc-'));
    dirs.push(d);
    await writeFile(join(d, 'acl.yaml'), yaml!);
    const { rules } = await readAclFile(join(d, 'acl.yaml'));
    const control = acl({ rules });
    const device = { username: 'dev-1', id: 'dev-1' };
    const dash = { username: 'dash', id: 'dash-01', groups: ['dashboards'] };
    const acme = { commonName: 'op', subject: { CN: 'op', O: 'Acme' } };
    expect(control.check(device, 'publish', 'devices/dev-1/temp').effect).toBe('allow');
    expect(control.check(device, 'publish', 'devices/dev-2/temp').effect).toBe('deny');
    expect(control.check(device, 'publish', 'status/dev-1').effect).toBe('allow');
    expect(control.check({ id: 'anon' }, 'publish', 'status/anon').effect).toBe('allow');
    expect(control.check({ id: 'anon' }, 'read', 'devices/anon/x').effect).toBe('deny');
    expect(control.check(dash, 'read', 'devices/dev-1/temp').effect).toBe('allow');
    expect(control.check(dash, 'read', 'devices/dev-1/commands/reboot')).toMatchObject({ effect: 'deny', rule: { id: 'no-commands-for-dashboards' } });
    expect(control.check(dash, 'subscribe', 'devices/#').effect).toBe('allow');
    expect(control.check(dash, 'subscribe', 'devices/+/commands/#').effect).toBe('deny');
    expect(control.check(dash, 'publish', 'devices/dev-1/temp').effect).toBe('deny');
    expect(control.check({ username: 'op', groups: ['ops'], certificate: acme }, 'publish', 'anything/at/all').effect).toBe('allow');
    expect(control.check({ username: 'op', groups: ['ops'] }, 'publish', 'anything/at/all').effect).toBe('deny');
  });
});

describe('ACL: options', () => {
  it('validates its own options', () => {
    expect(() => acl({ defaultEffect: 'maybe' } as unknown as AclOptions)).toThrow(AclRuleError);
  });
});
