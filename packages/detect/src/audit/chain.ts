/**
 * The line format of the audit log: one JSON object per line, each carrying `prev` (the hash of the
 * line before it) inside the hashed body, then its own `hash` and optional `hmac` appended:
 *
 *   {"seq":7,"time":"…","type":"auth.failed",…,"prev":"<64 hex>","hash":"<64 hex>","hmac":"<64 hex>"}
 *
 * hash = SHA-256 of the body, where the body is the line without its `,"hash":…` suffix (closed
 * with `}`): the exact bytes written, so verification never depends on re-serialising JSON.
 * hmac = HMAC-SHA-256 of the same body under the profile's key. A changed, removed, inserted or
 * reordered line breaks `prev` or `seq` of the next line; without the key, an attacker who rewrites
 * the tail can recompute the hashes (keep a key, or anchor the head elsewhere), but not the HMACs.
 */
import { createHmac, hash, timingSafeEqual } from 'node:crypto';

export const GENESIS = '0'.repeat(64);
const SUFFIX = /,"hash":"([0-9a-f]{64})"(?:,"hmac":"([0-9a-f]{64})")?\}$/;

/** One-shot (no Hash object per line: ~0.4 µs against ~2 µs for createHash().update().digest()). */
export function sha256Hex(data: string | Buffer): string {
  return hash('sha256', data, 'hex');
}

/** Serialise `record` (must not contain prev/hash/hmac) chained to `prev`; returns the line without '\n'. */
export function chainLine(record: Record<string, unknown>, prev: string, key: Buffer | undefined): { line: string; hash: string } {
  const body = JSON.stringify({ ...record, prev });
  const hash = sha256Hex(body);
  const mac = key ? `,"hmac":"${createHmac('sha256', key).update(body).digest('hex')}"` : '';
  return { line: `${body.slice(0, -1)},"hash":"${hash}"${mac}}`, hash };
}

export interface ParsedLine {
  body: string;
  hash: string;
  hmac: string | undefined;
  record: Record<string, unknown> & { seq?: unknown; prev?: unknown };
}

/** Split a line into its body and suffix; undefined when it is not an audit line. */
export function parseLine(line: string): ParsedLine | undefined {
  const m = SUFFIX.exec(line);
  if (!m || m[1] === undefined) return undefined;
  const body = `${line.slice(0, m.index)}}`;
  let record: unknown;
  try {
    record = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return undefined;
  return { body, hash: m[1], hmac: m[2], record: record as ParsedLine['record'] };
}

export function hmacMatches(body: string, hmac: string, key: Buffer): boolean {
  const want = createHmac('sha256', key).update(body).digest();
  const got = Buffer.from(hmac, 'hex');
  return got.length === want.length && timingSafeEqual(got, want);
}
