/**
 * The audit log as a middleware with no hooks: it opens the log when the broker sets up, writes
 * every bus event from then on, and closes last-but-not-least with the middleware, after every
 * client has been closed (so the final disconnects are in the log too).
 */
import type { ClientInfo, Middleware, PublishPacket } from '@bastion/core';
import { AuditLog, topicMatcher } from './audit-log.js';
import type { AuditLogOptions, AuditHead } from './audit-log.js';

export interface Audit extends Middleware {
  /** The open log (undefined before setup and after close). */
  readonly log: AuditLog | undefined;
  readonly head: AuditHead | undefined;
  /** Write an admin action or any other record that is not a bus event. */
  record(record: { type: string } & Record<string, unknown>): void;
  /** Is `topic` a receipt topic? (Cheap: call it on every PUBLISH, look the client up only when true.) */
  wantsReceipt(topic: string): boolean;
  /** Write a publish receipt (PR.IP-4). */
  receipt(client: Pick<ClientInfo, 'id' | 'username' | 'remoteAddress' | 'certificate'> | undefined, packet: PublishPacket): void;
}

export function audit(opts: Omit<AuditLogOptions, 'logger'> & { start?: Record<string, unknown> }): Audit {
  let log: AuditLog | undefined;
  let off: (() => void) | undefined;
  const wants = topicMatcher(opts.receipts ?? []);
  return {
    name: 'audit',
    controls: ['PR.PT-1', 'PR.IP-4'],
    get log() {
      return log;
    },
    get head() {
      return log?.head;
    },
    setup(ctx) {
      log = AuditLog.open({ ...opts, logger: ctx.logger });
      log.append({ type: 'audit.started', control: 'PR.PT-1', source: 'audit', detail: { pid: process.pid, hmac: opts.key !== undefined, ...opts.start } });
      off = log.attach(ctx.events);
      ctx.logger.info({ file: log.file, seq: log.head.seq }, 'audit log open');
    },
    record(r) {
      log?.append(r);
    },
    wantsReceipt: wants,
    receipt(client, packet) {
      log?.receipt(client, packet);
    },
    close() {
      off?.();
      off = undefined;
      log?.append({ type: 'audit.stopped', control: 'PR.PT-1', source: 'audit' });
      log?.close();
      log = undefined;
    },
  };
}
