/**
 * What the admin API needs of a running broker, as small interfaces: Bastion (`@bastion/broker`)
 * satisfies them, and so does a core broker with middleware given in code. Controls are found by
 * middleware name among the broker's middleware ('acl', 'bans', 'passwords') and checked by shape,
 * so the API works with whichever of them a profile or an embedder put in.
 */
import type { ClientInfo, DisconnectReason, Middleware, SecurityEventBus } from '@bastion/core';
import type { Acl, Bans, PasswordAuth } from '@bastion/middleware';
import type { Logger } from 'pino';

export interface AdminHost {
  readonly events: SecurityEventBus;
  readonly logger: Logger;
  /** Every middleware of the broker, in chain order. */
  readonly middleware: readonly Middleware[];
  clients(): Iterable<ClientInfo>;
  client(id: string): ClientInfo | undefined;
  disconnect(clientId: string, reason: DisconnectReason, detail?: string): boolean;
  /** Live subscriptions of a connected client (core ≥ issue 3). */
  subscriptionsOf?(clientId: string): ReadonlyArray<{ topic: string; qos: number }> | undefined;
}

/** The parts of the ACL middleware the API uses. */
export type AclControl = Pick<Acl, 'setRules' | 'addRule' | 'removeRule' | 'rules' | 'generation'>;
/** The parts of the bans middleware the API uses. */
export type BansControl = Pick<Bans, 'ban' | 'unban' | 'list'>;
/** The parts of the passwords middleware the API uses. */
export type PasswordsControl = Pick<PasswordAuth, 'setUsers' | 'hasUser'>;

function named(host: AdminHost, name: string): Record<string, unknown> | undefined {
  return host.middleware.find((m) => m.name === name) as unknown as Record<string, unknown> | undefined;
}

const fns = (m: Record<string, unknown> | undefined, ...names: string[]) => m !== undefined && names.every((n) => typeof m[n] === 'function');

export function aclOf(host: AdminHost): AclControl | undefined {
  const m = named(host, 'acl');
  return fns(m, 'setRules', 'addRule', 'removeRule', 'rules') ? (m as unknown as AclControl) : undefined;
}

export function bansOf(host: AdminHost): BansControl | undefined {
  const m = named(host, 'bans');
  return fns(m, 'ban', 'unban', 'list') ? (m as unknown as BansControl) : undefined;
}

export function passwordsOf(host: AdminHost): PasswordsControl | undefined {
  const m = named(host, 'passwords');
  return fns(m, 'setUsers', 'hasUser') ? (m as unknown as PasswordsControl) : undefined;
}

/** The parts of the response engine (@bastion/detect `responses`) the API uses, checked by shape. */
export interface ResponsesControl {
  revoke(username: string, opts?: { actor?: string; reason?: string }): unknown;
  blockTopic(topic: string, opts?: { actor?: string; reason?: string; duration?: number }): unknown;
  unblockTopic(topic: string, opts?: { actor?: string }): boolean;
  blockedTopics(): Array<{ topic: string; expiresAt: number | undefined }>;
  lockdown(opts?: { actor?: string; reason?: string; duration?: number; disconnectOthers?: boolean }): unknown;
  liftLockdown(opts?: { actor?: string }): boolean;
  readonly lockedDown: boolean;
  shutdown(opts?: { actor?: string; reason?: string }): unknown;
  history(): unknown[];
}

export function responsesOf(host: AdminHost): ResponsesControl | undefined {
  const m = named(host, 'responses');
  return fns(m, 'revoke', 'blockTopic', 'unblockTopic', 'lockdown', 'liftLockdown', 'shutdown', 'history') ? (m as unknown as ResponsesControl) : undefined;
}
