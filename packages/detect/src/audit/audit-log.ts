/**
 * The audit log (PR.PT-1, PR.IP-4): every security event, detection, response action and admin
 * action as one hash-chained JSON line (see chain.ts), in an append-only file rotated by size with
 * the chain carried across files. Optional publish receipts record, for configured topics, who
 * published what: client id, username, certificate fingerprint, topic, SHA-256 of the payload, time.
 */
import { createHash } from 'node:crypto';
import type { BrokerContext, ClientInfo, PublishPacket, SecurityEvent, SecurityEventBus } from '@bastion/core';
import { GENESIS, chainLine, parseLine } from './chain.js';
import { RotatingWriter } from './writer.js';

type Logger = BrokerContext['logger'];

export interface AuditLogOptions {
  /** The active file; rotated files sit beside it as `<file>.1`, `<file>.2`, … */
  file: string;
  /** Rotate when the active file would exceed this many bytes (default 64 MiB). */
  maxSize?: number;
  /** Rotated files kept; 0 keeps all (default 0). */
  maxFiles?: number;
  /** HMAC-SHA-256 key (at least 16 bytes): every line also carries an HMAC. */
  key?: Buffer | undefined;
  /** fsync after every batch of lines (default false: the OS page cache decides). */
  fsync?: boolean;
  /** Event types not written (e.g. 'forward.denied' on a very busy broker). */
  exclude?: string[];
  /** Topic filters whose PUBLISHes get a receipt line. */
  receipts?: string[];
  logger?: Logger | undefined;
}

export interface AuditHead {
  readonly seq: number;
  readonly hash: string;
  readonly file: string;
}

export const DEFAULT_MAX_SIZE = 64 * 1024 * 1024;

/**
 * A topic test compiled from MQTT filters, cheap enough to run on every PUBLISH: exact topics in a
 * Set, `prefix/#` filters as startsWith, and only filters with `+` (or `#` elsewhere) split.
 */
export function topicMatcher(filters: readonly string[]): (topic: string) => boolean {
  const exact = new Set<string>();
  const prefixes: string[] = []; // 'a/b/' for 'a/b/#'
  const parents: string[] = []; // 'a/b', which 'a/b/#' also matches
  const general: string[][] = [];
  for (const f of filters) {
    if (!f.includes('+') && !f.includes('#')) exact.add(f);
    else if (f === '#') return () => true;
    else if (f.endsWith('/#') && !f.includes('+') && f.indexOf('#') === f.length - 1) {
      prefixes.push(f.slice(0, -1));
      parents.push(f.slice(0, -2));
    }
    else general.push(f.split('/'));
  }
  if (filters.length === 0) return () => false;
  return (topic) => {
    if (exact.has(topic)) return true;
    for (let i = 0; i < prefixes.length; i++) if (topic.startsWith(prefixes[i] as string) || topic === parents[i]) return true;
    if (general.length === 0) return false;
    const t = topic.split('/');
    for (const f of general) if (levelsMatch(f, t)) return true;
    return false;
  };
}

function levelsMatch(f: string[], t: string[]): boolean {
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

/** What may change on an open log (a profile reload); the file may not. */
export type AuditLogSettings = Pick<AuditLogOptions, 'key' | 'maxSize' | 'maxFiles' | 'fsync' | 'exclude' | 'receipts'>;

export class AuditLog {
  readonly file: string;
  readonly #writer: RotatingWriter;
  #key: Buffer | undefined;
  #exclude: ReadonlySet<string>;
  #receipts: readonly string[];
  #wants: (topic: string) => boolean;
  readonly #logger: Logger | undefined;
  #seq = 0;
  #prev = GENESIS;
  #open = false;
  #lines = 0;

  private constructor(o: AuditLogOptions) {
    if (o.key !== undefined && o.key.length < 16) throw new RangeError('the audit HMAC key must be at least 16 bytes');
    this.file = o.file;
    this.#writer = new RotatingWriter(o.file, { maxSize: o.maxSize ?? DEFAULT_MAX_SIZE, maxFiles: o.maxFiles ?? 0, fsync: o.fsync ?? false });
    this.#key = o.key;
    this.#exclude = new Set(o.exclude ?? []);
    this.#receipts = o.receipts ?? [];
    this.#wants = topicMatcher(this.#receipts);
    this.#logger = o.logger;
  }

  /** Open (or continue) the log at `file`. */
  static open(o: AuditLogOptions): AuditLog {
    const log = new AuditLog(o);
    const { lastLine, repaired } = log.#writer.open();
    if (lastLine !== undefined) {
      const p = parseLine(lastLine);
      if (p && typeof p.record.seq === 'number') {
        log.#seq = p.record.seq;
        log.#prev = p.hash;
      } else {
        // not ours, or damaged: start a new chain segment after it; verify will point at the damage
        log.#logger?.error({ file: o.file }, 'the last line of the audit log is not an audit line; the chain restarts after it');
      }
    }
    log.#open = true;
    if (repaired > 0) {
      log.#logger?.error({ file: o.file, bytes: repaired }, 'audit log ended with a partial line (a crash mid-write?); it was cut');
      log.append({ type: 'audit.repaired', detail: { discardedBytes: repaired } });
    }
    return log;
  }

  get head(): AuditHead {
    return { seq: this.#seq, hash: this.#prev, file: this.file };
  }

  /** Lines written since open. */
  get lines(): number {
    return this.#lines;
  }

  get receiptTopics(): readonly string[] {
    return this.#receipts;
  }

  /**
   * Carry another log's chain on into this one (a reload moving the log to a new file): its first
   * line then follows `head` as across a rotation. Only before this log has a chain of its own.
   */
  continueFrom(head: Pick<AuditHead, 'seq' | 'hash'>): boolean {
    if (this.#seq !== 0 || this.#lines !== 0) return false;
    this.#seq = head.seq;
    this.#prev = head.hash;
    return true;
  }

  /**
   * New settings for this file (a profile reload). Another HMAC key rotates the file first, so each
   * file's lines carry HMACs under one key (`bastion audit verify --key-file` per file).
   */
  reconfigure(o: AuditLogSettings): void {
    if (o.key !== undefined && o.key.length < 16) throw new RangeError('the audit HMAC key must be at least 16 bytes');
    this.#writer.setOptions({ maxSize: o.maxSize ?? DEFAULT_MAX_SIZE, maxFiles: o.maxFiles ?? 0, fsync: o.fsync ?? false });
    this.#exclude = new Set(o.exclude ?? []);
    this.#receipts = o.receipts ?? [];
    this.#wants = topicMatcher(this.#receipts);
    const rekey = !(o.key === undefined ? this.#key === undefined : this.#key !== undefined && o.key.equals(this.#key));
    this.#key = o.key;
    if (rekey && this.#open && this.#writer.size > 0) this.#rotate(this.#seq + 1, new Date().toISOString(), { reason: 'HMAC key changed' });
  }

  /** Rotate, and open the new file with a record naming its predecessor; the chain runs on through it. */
  #rotate(seq: number, time: string, detail: Record<string, unknown> = {}): void {
    const rotatedTo = this.#writer.rotate();
    const marker = chainLine({ seq, time, type: 'audit.rotated', detail: { previousFile: rotatedTo, ...detail } }, this.#prev, this.#key);
    this.#writer.write(marker.line);
    this.#prev = marker.hash;
    this.#seq = seq;
    this.#lines++;
  }

  /** Append one record (`type` required); `seq`, `time` and the chain fields are added. */
  append(record: { type: string } & Record<string, unknown>, at: number = Date.now()): void {
    if (!this.#open) return;
    const seq = this.#seq + 1;
    const entry = { seq, time: new Date(at).toISOString(), ...record };
    let { line, hash } = chainLine(entry, this.#prev, this.#key);
    if (this.#writer.wouldOverflow(Buffer.byteLength(line) + 1)) {
      this.#rotate(seq, entry.time);
      ({ line, hash } = chainLine({ ...entry, seq: seq + 1 }, this.#prev, this.#key));
      this.#seq = seq + 1;
    } else {
      this.#seq = seq;
    }
    this.#writer.write(line);
    this.#prev = hash;
    this.#lines++;
  }

  /** A security event from the bus. */
  event(e: SecurityEvent): void {
    if (this.#exclude.has(e.type)) return;
    const { time, ...rest } = e;
    this.append(rest, time);
  }

  /** Write every bus event from now on; returns the unsubscribe function. */
  attach(bus: SecurityEventBus): () => void {
    return bus.on((e) => this.event(e));
  }

  /** Is `topic` one of the receipt topics? */
  wantsReceipt(topic: string): boolean {
    return this.#wants(topic);
  }

  /** A publish receipt (non-repudiation, PR.IP-4). */
  receipt(client: Pick<ClientInfo, 'id' | 'username' | 'remoteAddress' | 'certificate'> | undefined, packet: Pick<PublishPacket, 'topic' | 'payload' | 'qos' | 'retain'>): void {
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    this.append({
      type: 'publish.receipt',
      control: 'PR.IP-4',
      source: 'audit',
      clientId: client?.id,
      username: client?.username,
      remoteAddress: client?.remoteAddress,
      topic: packet.topic,
      detail: {
        certificateFingerprint: client?.certificate?.fingerprint256,
        certificateSerial: client?.certificate?.serial,
        payloadSha256: createHash('sha256').update(payload).digest('hex'),
        payloadBytes: payload.length,
        qos: packet.qos,
        retain: packet.retain,
      },
    });
  }

  flush(): void {
    this.#writer.flush();
  }

  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#writer.close();
  }
}
