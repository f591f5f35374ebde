/**
 * `bastion audit verify`: walk audit files in chain order and report the first line where the
 * chain breaks — a modified line (hash or HMAC mismatch), a removed, inserted or reordered line
 * (`prev` or `seq` out of step), or a line that is not an audit line at all.
 */
import { readFile } from 'node:fs/promises';
import { GENESIS, hmacMatches, parseLine, sha256Hex } from './chain.js';

export interface VerifyOptions {
  /** The HMAC key: every line must then carry a valid `hmac`. */
  key?: Buffer | undefined;
}

export interface ChainBreak {
  file: string;
  /** 1-based line number within that file. */
  line: number;
  seq?: number | undefined;
  reason: string;
}

export interface VerifyResult {
  ok: boolean;
  /** Lines checked (up to and including the break). */
  lines: number;
  files: Array<{ file: string; lines: number; firstSeq: number | undefined; lastSeq: number | undefined }>;
  /** The chain's first `seq` and its `prev` (GENESIS when the log starts there; else older files are missing). */
  start: { seq: number; prev: string } | undefined;
  /** The last line's seq and hash: compare with an anchor kept elsewhere to detect a cut tail. */
  head: { seq: number; hash: string } | undefined;
  break: ChainBreak | undefined;
}

function firstSeq(text: string): number | undefined {
  const nl = text.indexOf('\n');
  const p = parseLine(nl === -1 ? text : text.slice(0, nl));
  return typeof p?.record.seq === 'number' ? p.record.seq : undefined;
}

/** Verify files as one chain. They are put in order of their first `seq` (rotated files may be given in any order). */
export async function verifyAuditFiles(files: string[], opts: VerifyOptions = {}): Promise<VerifyResult> {
  const loaded = await Promise.all(files.map(async (file) => ({ file, text: await readFile(file, 'utf8') })));
  const ordered = loaded
    .map((f, i) => ({ ...f, i, first: firstSeq(f.text) }))
    .sort((a, b) => (a.first ?? Infinity) - (b.first ?? Infinity) || a.i - b.i);
  const result: VerifyResult = { ok: true, lines: 0, files: [], start: undefined, head: undefined, break: undefined };
  let prevHash: string | undefined;
  let prevSeq: number | undefined;
  const fail = (file: string, line: number, reason: string, seq?: number): VerifyResult => {
    result.ok = false;
    result.break = { file, line, seq, reason };
    return result;
  };
  for (const { file, text } of ordered) {
    const entry = { file, lines: 0, firstSeq: undefined as number | undefined, lastSeq: undefined as number | undefined };
    result.files.push(entry);
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    for (let i = 0; i < lines.length; i++) {
      const raw = lines[i] as string;
      const n = i + 1;
      result.lines++;
      entry.lines++;
      const p = parseLine(raw);
      if (!p) return fail(file, n, 'not an audit line (damaged, truncated or inserted by hand)');
      const seq = p.record.seq;
      const prev = p.record.prev;
      if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || typeof prev !== 'string') return fail(file, n, 'audit line without seq or prev');
      if (sha256Hex(p.body) !== p.hash) return fail(file, n, 'hash mismatch: the line was modified', seq);
      if (opts.key) {
        if (p.hmac === undefined) return fail(file, n, 'no hmac on this line, but a key was given', seq);
        if (!hmacMatches(p.body, p.hmac, opts.key)) return fail(file, n, 'hmac mismatch: the line was modified or written without the key', seq);
      }
      if (prevHash === undefined) {
        result.start = { seq, prev };
        if (seq === 1 && prev !== GENESIS) return fail(file, n, 'the first line does not start the chain (prev is not the genesis hash)', seq);
      } else {
        if (seq !== (prevSeq as number) + 1) {
          const why = seq <= (prevSeq as number) ? 'lines reordered or repeated' : 'lines removed';
          return fail(file, n, `sequence break: expected seq ${(prevSeq as number) + 1}, found ${seq} (${why})`, seq);
        }
        if (prev !== prevHash) return fail(file, n, 'chain break: prev does not match the hash of the line before (a line was removed, inserted or reordered)', seq);
      }
      entry.firstSeq ??= seq;
      entry.lastSeq = seq;
      prevHash = p.hash;
      prevSeq = seq;
      result.head = { seq, hash: p.hash };
    }
  }
  return result;
}
