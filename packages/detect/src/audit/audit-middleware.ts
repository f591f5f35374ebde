/**
 * The audit log as a middleware with no hooks: it opens the log when the broker sets up, writes
 * every bus event from then on, and closes last-but-not-least with the middleware, after every
 * client has been closed (so the final disconnects are in the log too).
 */
import { existsSync, statSync, unlinkSync, accessSync, constants as fsConstants } from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { BrokerContext, ClientInfo, Middleware, PublishPacket } from '@bastion/core';
import { BastionError } from '@bastion/core';
import { AuditLog, DEFAULT_MAX_SIZE, topicMatcher } from './audit-log.js';
import type { AuditLogOptions, AuditHead } from './audit-log.js';

export type AuditOptions = Omit<AuditLogOptions, 'logger'> & { start?: Record<string, unknown> };

/** A change to another audit's settings, prepared (what can fail is done) and not yet in force. */
export interface AuditChange {
  /** Put it in force: switch files or settings. Does not fail on a prepared change. */
  commit(): void;
  /** Release what was prepared (a new file opened, closed again; removed when it was made for this). */
  abort(): void;
}

export interface Audit extends Middleware {
  /** The open log (undefined before setup and after close). */
  readonly log: AuditLog | undefined;
  readonly head: AuditHead | undefined;
  /** Write an admin action or any other record that is not a bus event. */
  record(record: { type: string } & Record<string, unknown>): void;
  /** Is `topic` a receipt topic? (Cheap: call it on every PUBLISH, look the client up only when true.) */
  wantsReceipt(topic: string): boolean;
  /** The receipt topics in force. */
  readonly receiptTopics: readonly string[];
  /** Write a publish receipt (PR.IP-4). */
  receipt(client: Pick<ClientInfo, 'id' | 'username' | 'remoteAddress' | 'certificate'> | undefined, packet: PublishPacket): void;
  /** Whether `to` (another `audit()`, e.g. built from a reloaded profile) would write differently: file, settings or key. */
  differs(to: Audit): boolean;
  /**
   * Take `to`'s settings (a profile reload), in two steps. Here, what can fail: another file is
   * opened (a throw leaves everything as it was); the same file is checked writable. `commit()`:
   * another file — the old one ends with `audit.stopped`, the new one starts with `audit.started`
   * naming the old file and its head, and a new file carries the old chain on (as across a
   * rotation; a file that already holds a chain continues its own); the same file — the settings
   * change in place and an `audit.reconfigured` line says so (another HMAC key rotates first).
   */
  prepareChange(to: Audit): AuditChange;
}

/** The options each audit() was made with, for differs/prepareChange between two of them. */
const optionsOf = new WeakMap<Audit, AuditOptions>();

const sameKey = (a: Buffer | undefined, b: Buffer | undefined) => (a === undefined ? b === undefined : b !== undefined && a.equals(b));

/** The settings that tell two logs apart (start labels excluded), key bytes aside. */
const shape = (o: AuditOptions) => ({
  file: path.resolve(o.file),
  maxSize: o.maxSize ?? DEFAULT_MAX_SIZE,
  maxFiles: o.maxFiles ?? 0,
  fsync: o.fsync ?? false,
  exclude: o.exclude ?? [],
  receipts: o.receipts ?? [],
});

function changedKeys(a: AuditOptions, b: AuditOptions): string[] {
  const x = shape(a) as Record<string, unknown>;
  const y = shape(b) as Record<string, unknown>;
  const out = Object.keys(x).filter((k) => !isDeepStrictEqual(x[k], y[k]));
  if (!sameKey(a.key, b.key)) out.push('hmacKey');
  return out;
}

export function audit(initial: AuditOptions): Audit {
  let opts = initial;
  let log: AuditLog | undefined;
  let off: (() => void) | undefined;
  let ctx: BrokerContext | undefined;
  let wants = topicMatcher(opts.receipts ?? []);

  const optionsFrom = (to: Audit): AuditOptions => {
    const o = optionsOf.get(to);
    if (o === undefined) throw new BastionError('BASTION_ERR_AUDIT', 'not an audit log made by audit()');
    return o;
  };

  const mw: Audit = {
    name: 'audit',
    controls: ['PR.PT-1', 'PR.IP-4'],
    get log() {
      return log;
    },
    get head() {
      return log?.head;
    },
    get receiptTopics() {
      return opts.receipts ?? [];
    },
    setup(context) {
      ctx = context;
      log = AuditLog.open({ ...opts, logger: context.logger });
      log.append({ type: 'audit.started', control: 'PR.PT-1', source: 'audit', detail: { pid: process.pid, hmac: opts.key !== undefined, ...opts.start } });
      off = log.attach(context.events);
      context.logger.info({ file: log.file, seq: log.head.seq }, 'audit log open');
    },
    record(r) {
      log?.append(r);
    },
    wantsReceipt: (topic) => wants(topic),
    receipt(client, packet) {
      log?.receipt(client, packet);
    },
    differs(to) {
      return changedKeys(opts, optionsFrom(to)).length > 0;
    },
    prepareChange(to) {
      const next = optionsFrom(to);
      const changed = changedKeys(opts, next);
      const adopt = () => {
        opts = next;
        wants = topicMatcher(opts.receipts ?? []);
      };
      const running = log;
      const c = ctx;
      if (running === undefined || c === undefined) return { commit: adopt, abort() {} };
      if (shape(next).file === shape(opts).file) {
        // the file stays open; a rotation (new key) renames in its directory: it must be writable
        const dir = path.dirname(running.file);
        try {
          accessSync(dir, fsConstants.W_OK);
        } catch (err) {
          throw new BastionError('BASTION_ERR_AUDIT', `audit: cannot write in ${dir}: ${(err as Error).message}`, { cause: err });
        }
        return {
          commit() {
            running.reconfigure({ key: next.key, maxSize: next.maxSize, maxFiles: next.maxFiles, fsync: next.fsync, exclude: next.exclude, receipts: next.receipts });
            adopt();
            running.append({ type: 'audit.reconfigured', control: 'PR.PT-1', source: 'audit', detail: { changed, hmac: next.key !== undefined } });
          },
          abort() {},
        };
      }
      const existed = existsSync(next.file);
      let opened: AuditLog;
      try {
        opened = AuditLog.open({ ...next, logger: c.logger });
      } catch (err) {
        throw new BastionError('BASTION_ERR_AUDIT', `audit: cannot open ${next.file}: ${(err as Error).message}`, { cause: err });
      }
      return {
        commit() {
          running.append({ type: 'audit.stopped', control: 'PR.PT-1', source: 'audit', detail: { reason: 'profile reloaded', nextFile: opened.file } });
          off?.();
          running.close();
          const previous = running.head;
          const carried = opened.continueFrom(previous);
          opened.append({
            type: 'audit.started',
            control: 'PR.PT-1',
            source: 'audit',
            detail: { pid: process.pid, hmac: next.key !== undefined, ...next.start, reload: true, previousFile: previous.file, previousHead: { seq: previous.seq, hash: previous.hash }, chain: carried ? 'continued' : 'own' },
          });
          log = opened;
          off = opened.attach(c.events);
          adopt();
          c.logger.info({ file: opened.file, seq: opened.head.seq, previousFile: previous.file }, 'audit log moved');
        },
        abort() {
          opened.close();
          // made for this reload and never written: leave no trace
          try {
            if (!existed && statSync(next.file).size === 0) unlinkSync(next.file);
          } catch {
            // already gone
          }
        },
      };
    },
    close() {
      off?.();
      off = undefined;
      log?.append({ type: 'audit.stopped', control: 'PR.PT-1', source: 'audit' });
      log?.close();
      log = undefined;
    },
  };
  optionsOf.set(mw, initial);
  return mw;
}
