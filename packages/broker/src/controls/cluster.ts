/**
 * The cluster services: what one node decides at run time is applied on every other node that
 * shares the Redis, through the sealed cluster-state channel (@bastion/persistence cluster-state.ts).
 *
 *   kind          sent when (on the deciding node)                         applied (on the others)
 *   `ban`         a ban is set or lifted (admin API, responses, bans.ban())  bans.ban() / unban(): live sessions matching it are closed
 *   `acl`         the ACL's code rules change (admin API, acl.setRules() …)  the same change: rights withdrawn from live subscriptions
 *   `revocation`  revocation.revoke() / unrevoke() (responses, embedding)    the same: that certificate's live connections are closed
 *   `user`        a user is removed, re-passworded or revoked (admin API,    the credential is revoked there (sessions closed), or the
 *                 responses)                                               users file re-read when it already holds the new password
 *
 * Each service hears its control's local changes and publishes them, and applies what other nodes
 * publish with the origin `cluster:<node id>` (or, for bans and users, while a guard is up), which
 * it never publishes again: no echo loops. Delivery is at most once, in order per sending node, to
 * the nodes connected at the time; nothing here survives a restart (docs/persistence.md#cluster).
 */
import { createHash } from 'node:crypto';
import type { Middleware, SecurityEvent } from '@bastion/core';
import type { Acl, AclRule, PasswordAuth, Revocation } from '@bastion/middleware';
import { readUsersFile } from '@bastion/middleware';
import { clusterOrigin, isClusterOrigin } from '@bastion/persistence';
import type { ClusterStateChannel, StateMeta } from '@bastion/persistence';
import type { Logger } from 'pino';
import type { Bastion } from '../broker.js';
import type { Service } from '../controls.js';

const fns = (m: unknown, ...names: string[]): boolean => typeof m === 'object' && m !== null && names.every((n) => typeof (m as Record<string, unknown>)[n] === 'function');

/** A message another node sent that this node cannot apply: logged and reported, so a diverging node is seen. */
function refused(broker: Bastion, logger: Logger, kind: string, meta: StateMeta, error: string): void {
  const event: SecurityEvent = {
    type: 'cluster.message-rejected',
    time: Date.now(),
    control: 'PR.IP-2',
    source: 'persistence',
    message: `a cluster ${kind} change from node ${meta.node} was not applied here: ${error}`,
    detail: { channel: 'state', kind, reason: 'refused', node: meta.node, error },
  };
  logger.error({ securityEvent: event }, event.type);
  broker.events.emit(event);
}

const sendFailed = (logger: Logger, kind: string) => (err: Error) => logger.error({ err, kind }, `could not send a ${kind} change to the cluster`);

// ─── bans ────────────────────────────────────────────────────────────────────────────────────────

interface BansLike {
  ban(target: { ip?: string; clientId?: string; username?: string }, spec?: { duration?: number; reason?: string; actor?: string }): unknown;
  unban(id: string, actor?: string): boolean;
  list(): Array<{ id: string; ip: string | undefined; clientId: string | undefined; username: string | undefined }>;
}

interface BanMessage {
  op: 'add' | 'remove';
  ip?: string;
  clientId?: string;
  username?: string;
  expiresAt?: number;
  reason?: string;
  actor?: string;
}

/** Bans set (or lifted) on one node, applied on the others. */
export function clusterBans(state: ClusterStateChannel, logger: Logger): Service {
  let off: Array<() => void> = [];
  return {
    name: 'cluster-bans',
    controls: ['PR.SS-4', 'RS.RP-3'],
    start(broker: Bastion) {
      const bans = broker.middleware.find((m): m is Middleware & BansLike => m.name === 'bans' && fns(m, 'ban', 'unban', 'list'));
      if (!bans) return;
      let applying = false; // bans apply synchronously: a ban applied from another node is not sent back out
      off.push(
        broker.events.on((e) => {
          if (applying || e.source !== 'bans') return; // ban.added and ban.removed only (types below)
          const d = (e.detail ?? {}) as Record<string, unknown>;
          if (d['evicted'] === true) return; // a full table on this node is this node's business
          const msg: BanMessage = {
            op: e.type === 'ban.added' ? 'add' : 'remove',
            ...(typeof d['ip'] === 'string' ? { ip: d['ip'] } : {}),
            ...(typeof d['clientId'] === 'string' ? { clientId: d['clientId'] } : {}),
            ...(typeof d['username'] === 'string' ? { username: d['username'] } : {}),
            ...(typeof d['expiresAt'] === 'number' ? { expiresAt: d['expiresAt'] } : {}),
            ...(typeof d['banReason'] === 'string' ? { reason: d['banReason'] } : {}),
            ...(typeof d['actor'] === 'string' ? { actor: d['actor'] } : {}),
          };
          state.publish('ban', msg).catch(sendFailed(logger, 'ban'));
        }, { types: ['ban.added', 'ban.removed'] }),
      );
      off.push(
        state.subscribe('ban', (data, meta) => {
          const m = data as BanMessage;
          if (m === null || typeof m !== 'object') return;
          const target = { ...(m.ip ? { ip: m.ip } : {}), ...(m.clientId ? { clientId: m.clientId } : {}), ...(m.username ? { username: m.username } : {}) };
          applying = true;
          try {
            if (m.op === 'add') {
              const duration = m.expiresAt === undefined ? undefined : m.expiresAt - Date.now();
              if (duration !== undefined && duration <= 0) return;
              bans.ban(target, { duration, reason: m.reason, actor: m.actor ?? clusterOrigin(meta) });
            } else if (m.op === 'remove') {
              const same = bans.list().find((b) => b.ip === m.ip && b.clientId === m.clientId && b.username === m.username);
              if (same) bans.unban(same.id, clusterOrigin(meta));
            }
          } finally {
            applying = false;
          }
        }),
      );
    },
    stop() {
      for (const f of off) f();
      off = [];
    },
  };
}

// ─── ACL ─────────────────────────────────────────────────────────────────────────────────────────

type AclMessage = { op: 'replace'; rules: AclRule[] } | { op: 'add'; rule: AclRule } | { op: 'remove'; id: string };

/**
 * Changes of the ACL's code rules (profile + API; not the rules file, which is each node's own).
 * A replace carries the whole rule set, so every node that hears it ends with the same set; an add
 * whose id is already there replaces that rule (last writer wins per id); a remove is by id.
 */
export function clusterAcl(state: ClusterStateChannel, logger: Logger): Service {
  let off: Array<() => void> = [];
  return {
    name: 'cluster-acl',
    controls: ['PR.AC-5'],
    start(broker: Bastion) {
      const acl = broker.middleware.find((m): m is Acl => m.name === 'acl' && fns(m, 'onChange', 'setRules', 'addRule', 'removeRule', 'codeRules'));
      if (!acl) return;
      off.push(
        acl.onChange((c) => {
          if (isClusterOrigin(c.origin)) return; // applied for another node
          const msg: AclMessage = c.op === 'replace' ? { op: 'replace', rules: c.rules } : c.op === 'add' ? { op: 'add', rule: c.rule } : { op: 'remove', id: c.id };
          state.publish('acl', msg).catch(sendFailed(logger, 'acl'));
        }),
      );
      off.push(
        state.subscribe('acl', (data, meta) => {
          const m = data as Partial<{ op: string; rules: unknown; rule: unknown; id: unknown }> | null;
          const origin = clusterOrigin(meta);
          const fail = (error: string) => refused(broker, logger, 'acl', meta, error);
          let run: Promise<unknown>;
          if (m?.op === 'replace' && Array.isArray(m.rules)) {
            run = acl.setRules(m.rules as AclRule[], { origin });
          } else if (m?.op === 'add' && typeof m.rule === 'object' && m.rule !== null) {
            const rule = m.rule as AclRule;
            const current = acl.codeRules();
            run = rule.id !== undefined && current.some((r) => r.id === rule.id) ? acl.setRules(current.map((r) => (r.id === rule.id ? rule : r)), { origin }) : acl.addRule(rule, { origin });
          } else if (m?.op === 'remove' && typeof m.id === 'string') {
            run = acl.removeRule(m.id, { origin });
          } else {
            return fail('malformed message');
          }
          // validated whole on this node too: a rule it refuses (an id its rules file uses …) changes nothing here
          run.catch((err: Error) => fail(err.message));
        }),
      );
    },
    stop() {
      for (const f of off) f();
      off = [];
    },
  };
}

// ─── certificate revocation ──────────────────────────────────────────────────────────────────────

type RevocationReason = NonNullable<NonNullable<Parameters<Revocation['revoke']>[1]>['reason']>;
const REVOCATION_REASONS = new Set<string>(['unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'certificateHold', 'removeFromCRL', 'privilegeWithdrawn', 'aACompromise']);

/** Revocations made through the API (`revocation.revoke()`: responses, embedding code), applied on the others. CRL files are each node's own. */
export function clusterRevocation(state: ClusterStateChannel, logger: Logger): Service {
  let off: Array<() => void> = [];
  return {
    name: 'cluster-revocation',
    controls: ['RS.RP-1'],
    start(broker: Bastion) {
      const revocation = broker.middleware.find((m): m is Revocation => m.name === 'revocation' && fns(m, 'onChange', 'revoke', 'unrevoke'));
      if (revocation) {
        off.push(
          revocation.onChange((c) => {
            if (isClusterOrigin(c.origin)) return;
            const { origin: _, ...msg } = c;
            state.publish('revocation', msg).catch(sendFailed(logger, 'revocation'));
          }),
        );
      }
      off.push(
        state.subscribe('revocation', (data, meta) => {
          const m = data as Partial<{ op: string; serial: unknown; issuer: unknown; reason: unknown }> | null;
          const fail = (error: string) => refused(broker, logger, 'revocation', meta, error);
          if (typeof m?.serial !== 'string' || !/^[0-9a-fA-F]{1,128}$/.test(m.serial)) return fail('malformed message');
          if (!revocation) return fail(`certificate ${m.serial}: revocation is not enabled on this node`);
          const origin = clusterOrigin(meta);
          try {
            if (m.op === 'revoke') {
              const issuer = typeof m.issuer === 'string' ? m.issuer : undefined;
              const reason = typeof m.reason === 'string' && REVOCATION_REASONS.has(m.reason) ? (m.reason as RevocationReason) : undefined;
              revocation.revoke(m.serial, { origin, ...(issuer === undefined ? {} : { issuer }), ...(reason === undefined ? {} : { reason }) });
            } else if (m.op === 'unrevoke') {
              revocation.unrevoke(m.serial, { origin });
            } else fail('malformed message');
          } catch (err) {
            fail((err as Error).message);
          }
        }),
      );
    },
    stop() {
      for (const f of off) f();
      off = [];
    },
  };
}

// ─── users (password authentication) ─────────────────────────────────────────────────────────────

interface UserMessage {
  op: 'add' | 'remove' | 'password' | 'revoke';
  username: string;
  /** SHA-256 of the new scrypt hash (password changes): the hash itself never leaves the node. */
  fp?: string;
}

const fingerprint = (hash: string) => createHash('sha256').update(hash).digest('hex');

/**
 * Users changed through the admin API (which writes this node's users file) or revoked by a response.
 * Each node has its own users file, so the others cannot take a new password from the message;
 * they enforce the part that takes rights away at once: a removed or revoked user, or one whose
 * password changed while this node's file still holds the old one, is revoked here (sessions closed,
 * the old credential refused until this node's users file gives a new password). A node whose users
 * file already holds the new password (a shared file) re-reads it instead. An added user can log in
 * on a node once that node's users file has it.
 */
export function clusterUsers(state: ClusterStateChannel, logger: Logger): Service {
  let off: Array<() => void> = [];
  return {
    name: 'cluster-users',
    controls: ['PR.AC-3', 'RS.RP-2'],
    start(broker: Bastion) {
      const passwords = broker.middleware.find((m): m is PasswordAuth => m.name === 'passwords' && fns(m, 'revoke', 'hasUser', 'reload'));
      if (!passwords) return;
      const usersFile = () => broker.profile.authentication.passwords?.file;
      const send = (msg: UserMessage) => state.publish('user', msg).catch(sendFailed(logger, 'user'));
      off.push(
        broker.events.on((e) => {
          const d = (e.detail ?? {}) as Record<string, unknown>;
          const username = d['username'] ?? e.username;
          if (typeof username !== 'string') return;
          if (e.type === 'admin.action' && typeof d['status'] === 'number' && d['status'] < 400) {
            if (d['action'] === 'users.add') void send({ op: 'add', username });
            else if (d['action'] === 'users.remove') void send({ op: 'remove', username });
            else if (d['action'] === 'users.password') {
              const file = usersFile();
              if (file === undefined) return;
              // the admin API wrote the file before it answered: its hash is the new password's
              readUsersFile(file)
                .then((users) => {
                  const u = users.get(username);
                  return send(u ? { op: 'password', username, fp: fingerprint(u.hash) } : { op: 'remove', username });
                })
                .catch((err: Error) => logger.error({ err, username }, 'could not send a password change to the cluster'));
            }
          } else if (e.type === 'response.action' && d['action'] === 'revoke' && d['outcome'] === 'done' && d['credential'] === 'password') {
            void send({ op: 'revoke', username });
          }
        }, { types: ['admin.action', 'response.action'] }),
      );
      // passwords.revoke() raises neither admin.action nor response.action: what is applied here is never sent back out
      const revokeHere = (username: string) => void passwords.revoke(username);
      off.push(
        state.subscribe('user', (data, meta) => {
          const m = data as Partial<UserMessage> | null;
          const fail = (error: string) => refused(broker, logger, 'user', meta, error);
          if (typeof m?.username !== 'string' || m.username === '') return fail('malformed message');
          const username = m.username;
          const file = usersFile();
          if (m.op === 'remove' || m.op === 'revoke') {
            if (passwords.hasUser(username)) revokeHere(username);
            logger.info({ username, node: meta.node, op: m.op }, 'cluster: credential revoked here');
          } else if (m.op === 'password' && typeof m.fp === 'string') {
            const fp = m.fp;
            const here = file === undefined ? Promise.resolve(undefined) : readUsersFile(file).then((users) => users.get(username));
            here
              .then(async (u) => {
                if (u !== undefined && fingerprint(u.hash) === fp) {
                  await passwords.reload(); // this node's file has the new password already (shared file): take it now
                } else if (passwords.hasUser(username)) {
                  revokeHere(username);
                  logger.warn({ username, node: meta.node }, 'cluster: password changed on another node; the old one is refused here until this node\'s users file has the new one');
                }
              })
              .catch((err: Error) => fail(err.message));
          } else if (m.op === 'add') {
            if (file !== undefined) passwords.reload().catch((err: Error) => fail(err.message));
          } else {
            fail('malformed message');
          }
        }),
      );
    },
    stop() {
      for (const f of off) f();
      off = [];
    },
  };
}

/** Every cluster service, for a node with a cluster-state channel. */
export function clusterServices(state: ClusterStateChannel, logger: Logger): Service[] {
  return [clusterBans(state, logger), clusterAcl(state, logger), clusterRevocation(state, logger), clusterUsers(state, logger)];
}
