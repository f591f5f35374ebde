/** Reusable value schemas for profile keys: sizes, durations, paths, bounded integers. */
import { z } from 'zod';
import { show } from './messages.js';
import { DURATION_PATTERN, SIZE_PATTERN, formatDuration, formatSize, tryDuration, trySize } from './units.js';

/** A size: bytes as a number, or a string like '256KiB'. Parsed to bytes. */
export function size(bounds: { min?: number; max?: number } = {}) {
  const min = bounds.min ?? 0;
  const max = bounds.max ?? Number.MAX_SAFE_INTEGER;
  const expected = (input: unknown): string => `expected a size like 256KiB, got ${show(input)}`;
  return z
    .union([z.number(), z.string().meta({ pattern: SIZE_PATTERN })], { error: (iss) => expected(iss.input) })
    .transform((value, ctx): number => {
      const bytes = trySize(value);
      if (bytes === undefined) {
        ctx.addIssue({ code: 'custom', message: expected(value), input: value });
        return z.NEVER;
      }
      if (bytes < min || bytes > max) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a size from ${formatSize(min)} to ${formatSize(max)}, got ${show(value)}`,
          input: value,
        });
        return z.NEVER;
      }
      return bytes;
    })
    .meta({ title: 'Size' });
}

/** A duration: milliseconds as a number, or a string like '500ms', '10s', '15m', '24h', '7d'. Parsed to ms. */
export function duration(bounds: { min?: number; max?: number } = {}) {
  const min = bounds.min ?? 0;
  const max = bounds.max ?? Number.MAX_SAFE_INTEGER;
  const expected = (input: unknown): string => `expected a duration like 10s, got ${show(input)}`;
  return z
    .union([z.number(), z.string().meta({ pattern: DURATION_PATTERN })], { error: (iss) => expected(iss.input) })
    .transform((value, ctx): number => {
      const ms = tryDuration(value);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: expected(value), input: value });
        return z.NEVER;
      }
      if (ms < min || ms > max) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a duration from ${formatDuration(min)} to ${formatDuration(max)}, got ${show(value)}`,
          input: value,
        });
        return z.NEVER;
      }
      return ms;
    })
    .meta({ title: 'Duration' });
}

/** A file or directory path; relative paths resolve against the profile file's directory. */
export function pathString() {
  return z.string().min(1).meta({ title: 'Path' });
}

export function pathOrPaths() {
  return z.union([pathString(), z.array(pathString()).min(1)], {
    error: (iss) => `expected a path or a list of paths, got ${show(iss.input)}`,
  });
}

export function integerRange(min: number, max: number) {
  return z
    .number({
      error: (iss) =>
        typeof iss.input === 'number' ? `expected an integer from ${min} to ${max}, got ${show(iss.input)}` : undefined,
    })
    .int()
    .min(min)
    .max(max);
}

