/**
 * Glob patterns for client ids: `*` matches any run of characters (also none), `?` exactly one;
 * everything else is literal. Exact patterns go to a Set, the others to one anchored RegExp.
 */
export function isGlob(pattern: string): boolean {
  return pattern.includes('*') || pattern.includes('?');
}

export function globSource(pattern: string): string {
  let out = '';
  for (const ch of pattern) {
    if (ch === '*') out += '.*';
    else if (ch === '?') out += '.';
    else out += ch.replace(/[\\^$.|+()[\]{}\-/]/g, '\\$&');
  }
  return out;
}

/** A compiled list of patterns: `test(s)` is true when any pattern matches the whole of `s`. */
export class GlobSet {
  readonly patterns: readonly string[];
  readonly #exact: Set<string>;
  readonly #re: RegExp | undefined;

  constructor(patterns: Iterable<string> = []) {
    const list = [...patterns];
    this.patterns = Object.freeze(list);
    this.#exact = new Set(list.filter((p) => !isGlob(p)));
    const globs = list.filter(isGlob);
    this.#re = globs.length === 0 ? undefined : new RegExp(`^(?:${globs.map(globSource).join('|')})$`, 's');
  }

  get size(): number {
    return this.patterns.length;
  }

  test(s: string): boolean {
    return this.#exact.has(s) || (this.#re !== undefined && this.#re.test(s));
  }
}
