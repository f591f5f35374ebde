/**
 * Persistence (PR.SS-6, RC.RP-1, RC.RP-7) from the profile's `persistence` section.
 *
 * Persistence is not middleware: the store and the mqemitter go to Aedes through the core's
 * `persistence`/`mq` options (buildBroker calls `persistenceFromProfile`). Beside them come:
 *   - a `persistence` middleware with no hooks, which reports the store's events on the security
 *     event bus and closes the store's remaining connections with the broker; other controls find
 *     the cluster-state channel on it: `broker.controls.get<PersistenceControl>('persistence')?.state`;
 *   - in a cluster, the `cluster-bans` service: bans set on one node are in force on every node.
 */
import type { BrokerContext, Middleware, SecurityEvent } from '@bastion/core';
import { openStore } from '@bastion/persistence';
import type { ClusterStateChannel, Store, StoreEvent } from '@bastion/persistence';
import type { Profile } from '@bastion/profile';
import type { Logger } from 'pino';
import type { Bastion } from '../broker.js';
import type { Service } from '../controls.js';

export interface PersistenceControl extends Middleware {
  readonly store: Store;
  /** The cluster-state channel (cluster mode), for other controls: publish/subscribe sealed state changes. */
  readonly state: ClusterStateChannel | undefined;
}

export interface PersistenceWiring {
  /** For CoreBrokerOptions.persistence (undefined: Aedes' own memory store). */
  readonly persistence: unknown;
  /** For CoreBrokerOptions.mq (undefined: Aedes' in-process mqemitter). */
  readonly mq: unknown;
  readonly middleware: readonly Middleware[];
  readonly services: readonly Service[];
}

const NONE: PersistenceWiring = { persistence: undefined, mq: undefined, middleware: [], services: [] };

function securityEvent(e: StoreEvent): SecurityEvent {
  const time = Date.now();
  switch (e.type) {
    case 'unavailable':
      return { type: 'persistence.unavailable', time, control: 'RC.RP-1', source: 'persistence', message: `Redis connection lost (${e.connection}); retrying`, detail: { connection: e.connection, error: e.error } };
    case 'restored':
      return { type: 'persistence.restored', time, control: 'RC.RP-1', source: 'persistence', message: 'Redis connections restored', detail: { downMs: e.downMs } };
    case 'record-rejected':
      return {
        type: 'persistence.record-rejected',
        time,
        control: 'PR.SS-6',
        source: 'persistence',
        clientId: e.clientId,
        topic: e.topic,
        message: `a stored record did not open (${e.reason}) and was not served`,
        detail: { kind: e.kind, reason: e.reason, keyId: e.keyId },
      };
    case 'cluster-rejected':
      return { type: 'cluster.message-rejected', time, control: 'PR.IP-2', source: 'persistence', message: `a cluster ${e.channel} message was dropped (${e.reason})`, detail: { channel: e.channel, reason: e.reason, keyId: e.keyId } };
    case 'state-listener-failed':
      return { type: 'middleware.error', time, control: 'PR.SS-6', source: 'persistence', message: `a cluster-state listener for "${e.kind}" failed: ${e.error}` };
  }
}

function persistenceControl(store: Store, logger: Logger): PersistenceControl {
  return {
    name: 'persistence',
    controls: ['PR.SS-6', 'RC.RP-1', 'RC.RP-7'],
    store,
    state: store.state,
    setup(ctx: BrokerContext) {
      store.onEvent = (e) => {
        const event = securityEvent(e);
        if (e.type === 'restored') logger.info({ securityEvent: event }, event.type);
        else if (e.type === 'unavailable') logger.error({ securityEvent: event }, event.type);
        else logger.warn({ securityEvent: event }, event.type);
        ctx.events.emit(event);
      };
    },
    async close() {
      store.onEvent = undefined;
      await store.close();
    },
  };
}

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

function isBans(m: Middleware): m is Middleware & BansLike {
  const b = m as Partial<BansLike>;
  return m.name === 'bans' && typeof b.ban === 'function' && typeof b.unban === 'function' && typeof b.list === 'function';
}

/** Bans set (or lifted) on one node, applied on the others through the cluster-state channel. */
function clusterBans(state: ClusterStateChannel, logger: Logger): Service {
  let off: Array<() => void> = [];
  return {
    name: 'cluster-bans',
    controls: ['PR.SS-4', 'RS.RP-3'],
    start(broker: Bastion) {
      const bans = broker.middleware.find(isBans);
      if (!bans) return;
      let applying = false; // a ban applied from another node is not sent back out
      off.push(
        broker.events.on((e) => {
          if (applying || e.source !== 'bans' || (e.type !== 'ban.added' && e.type !== 'ban.removed')) return;
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
          state.publish('ban', msg).catch((err: Error) => logger.error({ err }, 'could not send a ban to the cluster'));
        }),
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
              bans.ban(target, { duration, reason: m.reason, actor: m.actor ?? `cluster:${meta.node}` });
            } else if (m.op === 'remove') {
              const same = bans.list().find((b) => b.ip === m.ip && b.clientId === m.clientId && b.username === m.username);
              if (same) bans.unban(same.id, `cluster:${meta.node}`);
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

/** The persistence and mq for Aedes, the `persistence` middleware and the cluster services; NONE for the default memory store. */
export async function persistenceFromProfile(profile: Profile, logger: Logger): Promise<PersistenceWiring> {
  const p = profile.persistence;
  if (p === undefined || (p.store === 'memory' && p.encryption === undefined && !p.cluster)) return NONE;
  const store = await openStore(p);
  logger.info({ store: p.store, cluster: p.cluster, encrypted: store.keyring !== undefined, keyId: store.keyring?.current.id }, 'persistence');
  return {
    persistence: store.persistence,
    mq: store.mq,
    middleware: [persistenceControl(store, logger)],
    services: store.state ? [clusterBans(store.state, logger)] : [],
  };
}
