/**
 * Persistence (PR.SS-6, RC.RP-1, RC.RP-7) from the profile's `persistence` section.
 *
 * Persistence is not middleware: the store and the mqemitter go to Aedes through the core's
 * `persistence`/`mq` options (buildBroker calls `persistenceFromProfile`). Beside them come:
 *   - a `persistence` middleware with no hooks, which reports the store's events on the security
 *     event bus and closes the store's remaining connections with the broker; other controls find
 *     the cluster-state channel on it: `broker.controls.get<PersistenceControl>('persistence')?.state`;
 *   - in a cluster, the cluster services (cluster.ts): bans, ACL changes, certificate revocations
 *     and user removals made on one node are in force on every node.
 */
import type { BrokerContext, Middleware, SecurityEvent } from '@bastion/core';
import { openStore } from '@bastion/persistence';
import type { ClusterStateChannel, Store, StoreEvent } from '@bastion/persistence';
import type { Profile } from '@bastion/profile';
import type { Logger } from 'pino';
import type { Service } from '../controls.js';
import { clusterServices } from './cluster.js';

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
    services: store.state ? clusterServices(store.state, logger) : [],
  };
}
