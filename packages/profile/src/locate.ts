/** Maps a path inside the profile (['listeners', 0, 'port']) to a line and column of its source. */
import { isAlias, isMap, isScalar, isSeq } from 'yaml';
import type { Document, LineCounter } from 'yaml';
import type { PathSegment } from './env.js';

/**
 * key: the key itself (unknown keys, bad record keys); value: the value (wrong types, bad values);
 * parent: the object that holds the key (missing keys).
 */
export type Target = 'key' | 'value' | 'parent';

export interface Position {
  line: number;
  column: number;
}

export type Locator = (path: readonly PathSegment[], target: Target) => Position;

/** For objects given in code: there is no source text. */
export const noSource: Locator = () => ({ line: 0, column: 0 });

interface Step {
  key?: unknown;
  value?: unknown;
}

function range(node: unknown): [number, number, number] | undefined {
  const r = (node as { range?: unknown } | null | undefined)?.range;
  return Array.isArray(r) ? (r as [number, number, number]) : undefined;
}

/** A value written as nothing at all (`port:`) has an empty range; point at its key instead. */
function isEmpty(node: unknown): boolean {
  const r = range(node);
  return r === undefined || (isScalar(node) && node.value === null && r[0] === r[1]);
}

export function yamlLocator(doc: Document.Parsed, counter: LineCounter): Locator {
  const deref = (node: unknown): unknown => (isAlias(node) ? node.resolve(doc) : node);

  const child = (node: unknown, segment: PathSegment): Step | undefined => {
    const target = deref(node);
    if (isMap(target)) {
      for (let i = target.items.length - 1; i >= 0; i--) {
        const pair = target.items[i];
        if (pair === undefined) continue;
        const keyValue: unknown = isScalar(pair.key) ? pair.key.value : pair.key;
        if (String(keyValue) === String(segment)) return { key: pair.key, value: pair.value };
      }
      return undefined;
    }
    if (isSeq(target) && typeof segment === 'number') {
      const item: unknown = target.items[segment];
      return item === undefined ? undefined : { value: item };
    }
    return undefined;
  };

  /** The steps down `path` that exist in the document; shorter than path when a key is absent. */
  const walk = (path: readonly PathSegment[]): Step[] => {
    const steps: Step[] = [];
    let node: unknown = doc.contents;
    for (const segment of path) {
      const step = child(node, segment);
      if (step === undefined) break;
      steps.push(step);
      node = step.value;
    }
    return steps;
  };

  const at = (node: unknown): Position | undefined => {
    const r = range(node);
    if (r === undefined) return undefined;
    const { line, col } = counter.linePos(r[0]);
    return { line, column: col };
  };

  const root = (): Position => at(doc.contents) ?? { line: 1, column: 1 };

  /** Where a step is best pointed at: its value, or its key when the value is empty or absent. */
  const stepPosition = (step: Step, preferKey: boolean): Position | undefined => {
    if (preferKey || isEmpty(step.value)) return at(step.key) ?? at(step.value);
    return at(step.value) ?? at(step.key);
  };

  return (path, target) => {
    const wanted = target === 'parent' ? path.slice(0, -1) : path;
    const steps = walk(wanted);
    const last = steps[steps.length - 1];
    if (last === undefined) return root();
    const complete = steps.length === wanted.length;
    // A missing key points at the key of the object that should hold it; so does anything whose
    // own node is absent (defaults) — the nearest ancestor that is written in the file.
    const preferKey = !complete || target !== 'value';
    return stepPosition(last, preferKey) ?? root();
  };
}
