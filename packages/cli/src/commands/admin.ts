/**
 * `bastion admin …`: the admin API from the command line. Where the API is: --url, else the
 * `admin` section of --profile, else http://127.0.0.1:8884. The token comes from --token-file or
 * the BASTION_ADMIN_TOKEN environment variable, never from a flag: a flag's value lands in shell
 * history and in every process listing (`ps`), where any local user can read it.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { AdminClient, DEFAULT_ADMIN_PORT, hashToken, newToken } from '@bastion/admin';
import type { ResponseRecord } from '@bastion/admin';
import { readAclFile, validateUsername } from '@bastion/middleware';
import { formatDuration, loadProfile } from '@bastion/profile';
import { writePrivateFile } from '@bastion/pki';
import { CliError } from '../errors.js';
import { readSecret, showSecretOnce } from '../secret-input.js';

export interface Common {
  url?: string;
  profile?: string;
  tokenFile?: string;
  ca?: string;
  cert?: string;
  key?: string;
  json?: boolean;
}

const out = (s: string): void => void process.stdout.write(s);
const printJson = (v: unknown): void => out(JSON.stringify(v, null, 2) + '\n');

function readFile(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new CliError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function readToken(o: Common): string | undefined {
  if (o.tokenFile !== undefined) {
    const text = readFile(o.tokenFile, '--token-file').toString('utf8').trim();
    if (text === '') throw new CliError(`--token-file ${o.tokenFile} is empty`);
    try {
      if ((statSync(o.tokenFile).mode & 0o077) !== 0) process.stderr.write(`bastion: warning: ${o.tokenFile} is readable by other users; chmod 600 it\n`);
    } catch {
      /* read above succeeded; the mode check is advice only */
    }
    return text;
  }
  const env = process.env.BASTION_ADMIN_TOKEN?.trim();
  return env === '' ? undefined : env;
}

/** The API URL (and a CA for HTTPS) from --url, the profile's `admin` section, or the default. */
async function endpoint(o: Common): Promise<{ url: string; ca?: Buffer | undefined }> {
  const ca = o.ca !== undefined ? readFile(o.ca, '--ca') : undefined;
  if (o.url !== undefined) return { url: o.url, ca };
  if (o.profile !== undefined) {
    const p = await loadProfile(o.profile);
    const a = p.admin;
    if (!a) throw new CliError(`${o.profile} has no admin section (the admin API is off there); pass --url`);
    if (a.port === 0) throw new CliError(`${o.profile} lets the system choose the admin port (port: 0); pass --url with the port from the log line "admin API listening"`);
    const host = a.host === '0.0.0.0' ? '127.0.0.1' : a.host === '::' ? '::1' : a.host;
    const url = `${a.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${a.port}`;
    // the admin CA usually signed the server certificate too (the dev PKI does): use it unless --ca says otherwise
    const profileCa = a.tls && a.tls.ca.length > 0 ? Buffer.concat(a.tls.ca.map((f) => readFile(f, 'admin.tls.ca'))) : undefined;
    return { url, ca: ca ?? profileCa };
  }
  return { url: `http://127.0.0.1:${DEFAULT_ADMIN_PORT}`, ca };
}

export async function client(o: Common): Promise<AdminClient> {
  if ((o.cert === undefined) !== (o.key === undefined)) throw new CliError('--cert and --key go together', 2);
  const { url, ca } = await endpoint(o);
  return new AdminClient({
    url,
    token: readToken(o),
    ca,
    cert: o.cert !== undefined ? readFile(o.cert, '--cert') : undefined,
    key: o.key !== undefined ? readFile(o.key, '--key') : undefined,
  });
}

/** The connection options every API subcommand takes. */
export function api(cmd: Command): Command {
  return cmd
    .option('--url <url>', `admin API URL (default: from --profile, else http://127.0.0.1:${DEFAULT_ADMIN_PORT})`)
    .option('-p, --profile <file>', 'read the admin API address (and CA) from this profile')
    .option('--token-file <file>', 'file holding the admin token (else $BASTION_ADMIN_TOKEN)')
    .option('--ca <file>', 'CA certificate that signed the admin API certificate (HTTPS)')
    .option('--cert <file>', 'client certificate, for an API that authenticates by certificate')
    .option('--key <file>', 'private key of --cert')
    .option('--json', 'print the answer as JSON');
}

function table(head: string[], rows: Array<Array<string | number>>): void {
  if (rows.length === 0) return;
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i] ?? '').length)));
  for (const r of [head, ...rows]) out(r.map((c, i) => String(c ?? '').padEnd(widths[i] as number)).join('  ').trimEnd() + '\n');
}

const dash = (v: unknown) => (v === null || v === undefined || v === '' ? '-' : String(v));
const day = (iso: unknown) => (typeof iso === 'string' ? iso.slice(0, 10) : '-');
const time = (iso: unknown) => (typeof iso === 'string' ? iso.slice(0, 19).replace('T', ' ') : '-');

const epoch = (ms: number) => time(new Date(ms).toISOString());

function targetOf(a: ResponseRecord): string {
  const t = a.target;
  const parts = [t.ip && `ip:${t.ip}`, t.clientId && `client:${t.clientId}`, t.username && `user:${t.username}`, t.topic && `topic:${t.topic}`].filter(Boolean);
  return parts.length > 0 ? parts.join(' ') : '-';
}

/**
 * Answer a response action: its record as JSON, or one line. The API answers 2xx even when the
 * engine did not act (skipped: allow-listed, a table full; failed): that is exit 1 with the why.
 */
function done(o: Common, a: ResponseRecord, line: () => string): void {
  if (o.json) printJson(a);
  if (a.outcome === 'skipped' || a.outcome === 'failed') throw new CliError(`${a.action} not done (${a.outcome}): ${a.why ?? 'no reason given'}`);
  if (o.json) return;
  out(a.outcome === 'dry-run' ? `dry run (responses.dryRun is on): recorded, nothing done — ${line()}\n` : `${line()}\n`);
}

function list(v: string | undefined): string[] | undefined {
  return v === undefined ? undefined : v.split(',').map((s) => s.trim()).filter(Boolean);
}

async function newPassword(user: string): Promise<string> {
  const password = await readSecret(`Password for ${user}: `);
  if (process.stdin.isTTY) {
    const again = await readSecret('Repeat it: ');
    if (again !== password) throw new CliError('the passwords did not match; nothing changed');
  }
  if (password.length < 8) throw new CliError('a password needs at least 8 characters; nothing changed');
  return password;
}

const hostPort = (address: unknown, port: unknown) => `${String(address).includes(':') ? `[${String(address)}]` : String(address)}:${String(port)}`;

/** VIA (the load balancer of a PROXY protocol listener) only when some client came through one. */
function clientRows(clients: Array<Record<string, unknown>>, via: boolean): Array<Array<string | number>> {
  return clients.map((c) => {
    const cert = c.certificate as { commonName?: string; serial?: string; validTo?: string } | null;
    const subs = c.subscriptions as unknown[] | null;
    const proxy = c.proxy as { address: string; port: number } | null | undefined;
    return [
      String(c.id),
      dash(c.username),
      hostPort(c.remoteAddress, c.remotePort),
      ...(via ? [proxy ? hostPort(proxy.address, proxy.port) : '-'] : []),
      String(c.listener),
      `${String(c.transport)}/${String(c.protocolVersion)}`,
      dash(cert?.commonName),
      dash(cert?.serial),
      cert ? day(cert.validTo) : '-',
      time(c.connectedAt),
      subs === null ? '?' : subs.length,
      `${String(c.messagesIn)}/${String(c.messagesOut)}`,
      `${String(c.bytesIn)}/${String(c.bytesOut)}`,
    ];
  });
}

export function register(program: Command): void {
  const admin = program
    .command('admin')
    .description('the admin API of a running broker: clients, kicks, bans, ACL, users, response actions (token from --token-file or $BASTION_ADMIN_TOKEN)');

  api(admin.command('health').description('is the admin API up, and what can it do here'))
    .action(async (o: Common) => {
      const h = await (await client(o)).health();
      if (o.json) return printJson(h);
      const controls = Object.entries((h.controls ?? {}) as Record<string, boolean>).map(([k, v]) => `${k} ${v ? 'on' : 'off'}`).join(', ');
      out(`${String(h.status)}: ${String(h.clients)} client(s) connected, up ${String(h.uptimeSeconds)} s; ${controls}; you are ${String(h.actor)}\n`);
    });

  api(admin.command('clients').description('list connected clients, or show one').argument('[id]', 'a client id: show that client in full'))
    .action(async (id: string | undefined, o: Common) => {
      const c = await client(o);
      if (id !== undefined) return printJson(await c.client(id));
      const { clients } = await c.clients();
      if (o.json) return printJson(clients);
      if (clients.length === 0) return out('no clients connected\n');
      const via = clients.some((x) => x.proxy !== null && x.proxy !== undefined);
      table(['CLIENT ID', 'USERNAME', 'ADDRESS', ...(via ? ['VIA'] : []), 'LISTENER', 'PROTO', 'CERT CN', 'CERT SERIAL', 'CERT EXPIRES', 'CONNECTED SINCE', 'SUBS', 'MSGS IN/OUT', 'BYTES IN/OUT'], clientRows(clients, via));
    });

  api(admin.command('kick').description('disconnect a client').argument('<id>', 'client id').option('--reason <text>', 'note recorded in the event'))
    .action(async (id: string, o: Common & { reason?: string }) => {
      const r = await (await client(o)).disconnect(id, o.reason);
      if (o.json) return printJson(r);
      out(`disconnected ${id}\n`);
    });

  api(
    admin
      .command('ban')
      .description('ban an address/range, a client id and/or a username (several: all must match); live clients that match are disconnected')
      .option('--ip <address-or-cidr>', 'address or CIDR range, e.g. 10.0.0.5 or 10.0.0.0/8')
      .option('--client-id <id>', 'MQTT client id')
      .option('--username <name>', 'username')
      .option('--for <duration>', 'how long, e.g. 15m, 24h, 7d')
      .option('--permanent', 'until lifted with `bastion admin unban`')
      .option('--reason <text>', 'why (kept with the ban)'),
  ).action(async (o: Common & { ip?: string; clientId?: string; username?: string; for?: string; permanent?: boolean; reason?: string }) => {
    if (o.ip === undefined && o.clientId === undefined && o.username === undefined) throw new CliError('name what to ban: --ip, --client-id and/or --username', 2);
    if ((o.for === undefined) === (o.permanent === undefined)) throw new CliError('give exactly one of --for <duration> and --permanent', 2);
    const r = await (await client(o)).ban({
      ...(o.ip === undefined ? {} : { ip: o.ip }),
      ...(o.clientId === undefined ? {} : { clientId: o.clientId }),
      ...(o.username === undefined ? {} : { username: o.username }),
      duration: o.permanent ? 'permanent' : (o.for as string),
      ...(o.reason === undefined ? {} : { reason: o.reason }),
    });
    if (o.json) return printJson(r.ban);
    out(`banned (id ${String(r.ban.id)}) until ${r.ban.expiresAt === null ? 'lifted' : String(r.ban.expiresAt)}\n`);
  });

  api(admin.command('unban').description('lift a ban').argument('<ban-id>', 'the id shown by `bastion admin bans`'))
    .action(async (id: string, o: Common) => {
      const r = await (await client(o)).unban(id);
      if (o.json) return printJson(r);
      out(`ban ${id} lifted\n`);
    });

  api(admin.command('bans').description('list bans in force'))
    .action(async (o: Common) => {
      const { bans } = await (await client(o)).bans();
      if (o.json) return printJson(bans);
      if (bans.length === 0) return out('no bans\n');
      table(['ID', 'IP', 'CLIENT ID', 'USERNAME', 'EXPIRES', 'BY', 'REASON'], bans.map((b) => [String(b.id), dash(b.ip), dash(b.clientId), dash(b.username), b.expiresAt === null ? 'permanent' : time(b.expiresAt), dash(b.actor), dash(b.reason)]));
    });

  const acl = admin.command('acl').description('the topic ACL, live (changes last until restart; persistent rules belong in the profile or rules file)');
  api(acl.command('list').description('rules in force, in evaluation order'))
    .action(async (o: Common) => {
      const r = await (await client(o)).acl();
      if (o.json) return printJson(r);
      if (r.rules.length === 0) return out('no rules\n');
      table(
        ['ID', 'EFFECT', 'PRIORITY', 'WHO', 'ACTIONS', 'TOPICS'],
        r.rules.map((x) => {
          const who = [
            ...((x.users as string[] | undefined) ?? []).map((u) => `user:${u}`),
            ...((x.groups as string[] | undefined) ?? []).map((g) => `group:${g}`),
            ...((x.clientIds as string[] | undefined) ?? []).map((c) => `client:${c}`),
            ...Object.entries((x.certificate as Record<string, string> | undefined) ?? {}).map(([k, v]) => `cert.${k}:${v}`),
          ];
          return [dash(x.id), String(x.effect), String(x.priority ?? 0), who.length ? who.join(',') : 'everyone', (x.actions as string[]).join(','), (x.topics as string[]).join(' ')];
        }),
      );
    });
  api(
    acl
      .command('add')
      .description('add one rule (from flags, or --rule with the rule as JSON)')
      .option('--rule <json>', 'the whole rule as JSON, e.g. \'{"effect":"allow","actions":["publish"],"topics":["a/#"]}\'')
      .option('--id <id>', 'rule id (default: one is made)')
      .option('--effect <allow|deny>', 'allow or deny')
      .option('--actions <list>', 'comma-separated: publish, subscribe, read')
      .option('--topics <list>', 'comma-separated topic filters (+, #, %u, %c, %cn)')
      .option('--users <list>', 'comma-separated usernames (* = any authenticated user)')
      .option('--groups <list>', 'comma-separated groups')
      .option('--client-ids <list>', 'comma-separated client ids or globs')
      .option('--priority <n>', 'higher first (default 0)'),
  ).action(async (o: Common & { rule?: string; id?: string; effect?: string; actions?: string; topics?: string; users?: string; groups?: string; clientIds?: string; priority?: string }) => {
    let rule: Record<string, unknown>;
    if (o.rule !== undefined) {
      try {
        rule = JSON.parse(o.rule) as Record<string, unknown>;
      } catch (err) {
        throw new CliError(`--rule is not valid JSON: ${(err as Error).message}`, 2);
      }
      if (typeof rule !== 'object' || rule === null || Array.isArray(rule)) throw new CliError('--rule must be a JSON object', 2);
    } else {
      if (o.effect === undefined || o.actions === undefined || o.topics === undefined) throw new CliError('give --effect, --actions and --topics (or --rule)', 2);
      const priority = o.priority === undefined ? undefined : Number(o.priority);
      if (priority !== undefined && !Number.isFinite(priority)) throw new CliError(`--priority must be a number, got "${o.priority}"`, 2);
      rule = { effect: o.effect, actions: list(o.actions), topics: list(o.topics) };
      for (const [k, v] of [['users', list(o.users)], ['groups', list(o.groups)], ['clientIds', list(o.clientIds)]] as const) if (v !== undefined) rule[k] = v;
      if (priority !== undefined) rule.priority = priority;
    }
    if (o.id !== undefined) rule.id = o.id;
    const r = await (await client(o)).addAclRule(rule);
    if (o.json) return printJson(r);
    out(`added rule ${String(r.rule.id)} (${String(r.change.rules)} rules in force, ${String(r.change.withdrawn)} subscriptions withdrawn)\n`);
  });
  api(acl.command('remove').description('remove a rule by id').argument('<id>', 'rule id'))
    .action(async (id: string, o: Common) => {
      const r = await (await client(o)).removeAclRule(id);
      if (o.json) return printJson(r);
      out(`removed rule ${id}\n`);
    });
  api(acl.command('replace').description('replace the rules with those of a YAML or JSON file (checked here, then all or nothing on the broker)').argument('<file>', 'a list of rules, or { rules: [...] }'))
    .action(async (file: string, o: Common) => {
      if (!existsSync(file)) throw new CliError(`no such file: ${file}`, 2);
      const { rules } = await readAclFile(file);
      const r = await (await client(o)).replaceAcl(rules);
      if (o.json) return printJson(r);
      out(`ACL replaced: ${String(r.change.rules)} rules in force, ${String(r.change.withdrawn)} subscriptions withdrawn\n`);
    });

  const users = admin.command('users').description('users of password authentication (written to the users file and applied live)');
  api(users.command('list').description('users and their live sessions'))
    .action(async (o: Common) => {
      const r = await (await client(o)).users();
      if (o.json) return printJson(r.users);
      if (r.users.length === 0) return out('no users\n');
      table(['USERNAME', 'GROUPS', 'SESSIONS'], r.users.map((u) => [u.username, u.groups.length ? u.groups.join(',') : '-', u.sessions]));
    });
  api(
    users
      .command('add')
      .description('add a user; the password is read without echo (from a pipe: one line)')
      .argument('<name>', 'username')
      .option('-g, --groups <list>', 'comma-separated groups')
      .option('--generate', 'a device token generated by the broker instead of a password, printed once on stdout'),
  ).action(async (name: string, o: Common & { groups?: string; generate?: boolean }) => {
    const bad = validateUsername(name);
    if (bad) throw new CliError(bad, 2);
    const c = await client(o);
    const password = o.generate ? undefined : await newPassword(name);
    const r = await c.addUser(name, password, list(o.groups));
    if (o.json) return printJson(r);
    if (r.token !== undefined) return showSecretOnce(`added user ${name} with a device token`, r.token);
    out(`added user ${name}\n`);
  });
  api(users.command('remove').description('remove a user; their sessions are disconnected').argument('<name>', 'username'))
    .action(async (name: string, o: Common) => {
      const r = await (await client(o)).removeUser(name);
      if (o.json) return printJson(r);
      out(`removed user ${name} (${r.disconnected} session(s) disconnected)\n`);
    });
  api(
    users
      .command('passwd')
      .description("set a user's password; their sessions are disconnected")
      .argument('<name>', 'username')
      .option('--generate', 'a new device token generated by the broker instead of a password, printed once on stdout'),
  ).action(async (name: string, o: Common & { generate?: boolean }) => {
    const c = await client(o);
    const password = o.generate ? undefined : await newPassword(name);
    const r = await c.setPassword(name, password);
    if (o.json) return printJson(r);
    if (r.token !== undefined) return showSecretOnce(`device token of ${name} replaced (${r.disconnected} session(s) disconnected)`, r.token);
    out(`password of ${name} changed (${r.disconnected} session(s) disconnected)\n`);
  });

  const responses = admin
    .command('responses')
    .description('response actions by hand (the same the response policies run, each recorded and audited): lockdown state, blocked topics and history; block or unblock a topic, lockdown, revoke, shutdown');
  api(responses.command('history', { isDefault: true }).description('lockdown state, blocked topics, and the action records (oldest first); the default'))
    .action(async (o: Common) => {
      const r = await (await client(o)).responses();
      if (o.json) return printJson(r);
      out(`lockdown: ${r.lockedDown ? 'on' : 'off'}\n`);
      if (r.blockedTopics.length === 0) out('blocked topics: none\n');
      else {
        out('blocked topics:\n');
        table(['TOPIC', 'UNTIL'], r.blockedTopics.map((b) => [b.topic, b.expiresAt === undefined ? 'unblocked' : epoch(b.expiresAt)]));
      }
      if (r.history.length === 0) return out('history: no actions yet\n');
      out('history:\n');
      table(
        ['TIME', 'ACTION', 'CONTROL', 'OUTCOME', 'TARGET', 'FOR', 'BY', 'NOTE'],
        r.history.map((a) => [epoch(a.time), a.action, a.control, a.outcome, targetOf(a), a.duration === undefined ? '-' : formatDuration(a.duration), a.actor, dash(a.why ?? (a.detection === undefined ? undefined : `detection ${a.detection}`))]),
      );
    });
  api(
    responses
      .command('block-topic')
      .description('refuse every PUBLISH to a topic or filter (+ and # allowed), from everyone, until unblocked or expired (RS.RP-4)')
      .argument('<filter>', 'topic or topic filter, e.g. grid/control/#')
      .option('--for <duration>', 'how long, e.g. 15m, 24h (default: until unblocked)')
      .option('--reason <text>', 'why (recorded)'),
  ).action(async (filter: string, o: Common & { for?: string; reason?: string }) => {
    const r = await (await client(o)).blockTopic(filter, { duration: o.for, reason: o.reason });
    done(o, r.action, () => {
      const until = r.action.detail?.expiresAt;
      return `blocked topic ${filter} ${typeof until === 'number' ? `until ${epoch(until)}` : 'until unblocked'}`;
    });
  });
  api(responses.command('unblock-topic').description('lift a topic block (the filter exactly as it was blocked)').argument('<filter>', 'topic or topic filter'))
    .action(async (filter: string, o: Common) => {
      const r = await (await client(o)).unblockTopic(filter);
      if (o.json) return printJson(r);
      out(`unblocked topic ${filter}\n`);
    });
  api(
    responses
      .command('lockdown')
      .description('on: refuse new connections except the allow-listed ones (responses.allow, responses.lockdown.allow) (RS.RP-5); off: lift it')
      .argument('<on|off>', 'on or off')
      .option('--for <duration>', 'on: how long, e.g. 30m (default: the profile\'s responses.lockdown.duration, else until lifted)')
      .option('--reason <text>', 'on: why (recorded)')
      .option('--disconnect-others', 'on: also disconnect the connected clients that are not allow-listed')
      .option('--no-disconnect-others', 'on: keep them connected (default: the profile\'s responses.lockdown.disconnectOthers)'),
  ).action(async (state: string, o: Common & { for?: string; reason?: string; disconnectOthers?: boolean }) => {
    if (state !== 'on' && state !== 'off') throw new CliError(`lockdown takes on or off, got "${state}"`, 2);
    const c = await client(o);
    if (state === 'off') {
      if (o.for !== undefined || o.reason !== undefined || o.disconnectOthers !== undefined) throw new CliError('lockdown off takes no --for, --reason or --disconnect-others', 2);
      const r = await c.liftLockdown();
      if (o.json) return printJson(r);
      return out('lockdown lifted\n');
    }
    const r = await c.lockdown({ duration: o.for, reason: o.reason, disconnectOthers: o.disconnectOthers });
    done(o, r.action, () => {
      const until = r.action.detail?.until;
      return `lockdown on ${typeof until === 'number' ? `until ${epoch(until)}` : 'until lifted'} (${String(r.action.detail?.disconnected ?? 0)} client(s) disconnected)`;
    });
  });
  api(
    responses
      .command('revoke')
      .description("revoke a user's credential: a password is removed, a certificate revoked; without a control that can, the username is banned (RS.RP-2)")
      .argument('<username>', 'the authenticated username (or certificate identity)')
      .option('--reason <text>', 'why (recorded; the CRL reason for a certificate)'),
  ).action(async (username: string, o: Common & { reason?: string }) => {
    const r = await (await client(o)).revoke(username, o.reason);
    done(o, r.action, () => {
      const d = r.action.detail ?? {};
      const how = d.via === 'ban' ? `no control can revoke it: username banned (ban ${String(d.ban)})` : d.credential === 'certificate' ? `certificate ${String(d.serial)} revoked` : 'password removed';
      return `revoked the credential of ${username}: ${how}`;
    });
  });
  api(
    responses
      .command('shutdown')
      .description('close the broker: every client is disconnected and the process ends (RS.RP-6)')
      .option('--confirm', 'required: yes, shut the broker down')
      .option('--reason <text>', 'why (recorded)'),
  ).action(async (o: Common & { confirm?: boolean; reason?: string }) => {
    if (o.confirm !== true) throw new CliError('shutting the broker down needs --confirm', 2);
    const r = await (await client(o)).shutdown(o.reason);
    done(o, r.action, () => 'shutdown requested: the broker is closing');
  });

  admin
    .command('token')
    .description('make a new admin token: prints it once, and the hash line to paste into the profile under admin.tokens')
    .option('-n, --name <name>', 'who holds it (shown in events)', 'admin')
    .option('--read-only', 'a token that may only read')
    .option('-o, --out <file>', 'write the token to this file (mode 0600) instead of printing it')
    .option('--json', 'print as JSON')
    .action(async (o: { name: string; readOnly?: boolean; out?: string; json?: boolean }) => {
      if (!/^[A-Za-z0-9._@-]{1,64}$/.test(o.name)) throw new CliError('--name is 1 to 64 letters, digits, ".", "_", "@" or "-"', 2);
      if (o.out !== undefined && existsSync(o.out)) throw new CliError(`${o.out} exists; not overwriting a token file`);
      const token = newToken();
      const hash = hashToken(token);
      if (o.out !== undefined) await writePrivateFile(o.out, token + '\n');
      const entry = `- { name: ${o.name}, hash: "${hash}"${o.readOnly ? ', readOnly: true' : ''} }`;
      if (o.json) return printJson({ name: o.name, hash, readOnly: o.readOnly === true, ...(o.out === undefined ? { token } : { tokenFile: o.out }) });
      if (o.out === undefined) out(`token (shown only now; keep it in a file readable only by you, e.g. chmod 600): ${token}\n`);
      else out(`token written to ${o.out} (mode 0600)\n`);
      out(`add under admin.tokens in the profile:\n  ${entry}\n`);
    });
}
