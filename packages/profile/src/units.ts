/**
 * Sizes and durations as people write them in a profile ('256KiB', '10s', '1h30m'), parsed into
 * plain numbers (bytes, milliseconds). Numbers are taken as bytes / milliseconds unchanged.
 *
 * Sizes: B, KB/MB/GB (powers of 1000) and KiB/MiB/GiB (powers of 1024), case-insensitive,
 * optional space between number and unit, fractions allowed ('1.5MiB'), result rounded to a byte.
 * Durations: one or more `<number><unit>` parts with unit ms, s, m, h or d ('500ms', '1h30m').
 * A string of bare digits (what `${env:NAME}` yields for a number) is bytes / milliseconds.
 */

const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const SIZE_RE = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i;
const DURATION_PART_RE = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*/gy;
const DIGITS_RE = /^\d+$/;

/**
 * ECMA-262 patterns for the string forms, used in the JSON Schema so editors can flag typos.
 * They also let through any string containing `${env:NAME}` (substituted at load time).
 */
const ENV_ALTERNATIVE = '.*\\$\\{env:[^}]*\\}.*';
export const SIZE_PATTERN = `^(\\s*\\d+(\\.\\d+)?\\s*([kKmMgG][iI]?[bB]|[bB])?\\s*|${ENV_ALTERNATIVE})$`;
export const DURATION_PATTERN = `^(\\s*(\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)\\s*)+|\\s*\\d+\\s*|${ENV_ALTERNATIVE})$`;

function isNonNegativeSafe(n: number): boolean {
  return Number.isFinite(n) && n >= 0 && n <= Number.MAX_SAFE_INTEGER;
}

/** Bytes for a size, or undefined when `value` is not a size. */
export function trySize(value: unknown): number | undefined {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  }
  if (typeof value !== 'string') return undefined;
  const m = SIZE_RE.exec(value.trim());
  if (!m) return undefined;
  const factor = SIZE_UNITS[(m[2] ?? '').toLowerCase()];
  if (factor === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * factor);
  return isNonNegativeSafe(bytes) ? bytes : undefined;
}

/** Milliseconds for a duration, or undefined when `value` is not a duration. */
export function tryDuration(value: unknown): number | undefined {
  if (typeof value === 'number') {
    return isNonNegativeSafe(value) ? Math.round(value) : undefined;
  }
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (text === '') return undefined;
  if (DIGITS_RE.test(text)) {
    const n = Number(text);
    return Number.isSafeInteger(n) ? n : undefined;
  }
  DURATION_PART_RE.lastIndex = 0;
  let total = 0;
  let consumed = 0;
  let m: RegExpExecArray | null;
  while ((m = DURATION_PART_RE.exec(text)) !== null) {
    const factor = DURATION_UNITS[m[2] ?? ''];
    if (factor === undefined) return undefined;
    total += Number(m[1]) * factor;
    consumed = DURATION_PART_RE.lastIndex;
  }
  if (consumed !== text.length) return undefined;
  const ms = Math.round(total);
  return isNonNegativeSafe(ms) ? ms : undefined;
}

/** Parses a size ('256KiB', '1MB', 1024) into bytes; throws a TypeError for anything else. */
export function parseSize(value: number | string): number {
  const bytes = trySize(value);
  if (bytes === undefined) throw new TypeError(`expected a size like 256KiB, got ${JSON.stringify(value)}`);
  return bytes;
}

/** Parses a duration ('500ms', '10s', '1h30m', 250) into milliseconds; throws a TypeError otherwise. */
export function parseDuration(value: number | string): number {
  const ms = tryDuration(value);
  if (ms === undefined) throw new TypeError(`expected a duration like 10s, got ${JSON.stringify(value)}`);
  return ms;
}

/** Shortest exact spelling of a byte count: 262144 → '256KiB', 1000 → '1KB', 100 → '100B'. */
export function formatSize(bytes: number): string {
  for (const [unit, factor] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024], ['GB', 1000 ** 3], ['MB', 1000 ** 2], ['KB', 1000]] as const) {
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return `${bytes}B`;
}

/** Shortest exact spelling of a duration: 10000 → '10s', 90000 → '90s', 86400000 → '1d'. */
export function formatDuration(ms: number): string {
  for (const [unit, factor] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= factor && ms % factor === 0) return `${ms / factor}${unit}`;
  }
  return `${ms}ms`;
}
