/**
 * The wording of every validation message. Tests match these texts exactly, so they are built
 * here from the zod issue's facts (code, expected type, allowed values, input), never taken from
 * zod's own (localisable, version-dependent) messages.
 */

/** A value as it appears in a message: strings quoted, long structures shortened. */
export function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** JSON-ish type name of a value: string, number, boolean, null, array, object. */
export function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

const EXPECTED_NAMES: Readonly<Record<string, string>> = {
  int: 'integer',
  record: 'object',
  map: 'object',
};

interface IssueFacts {
  code?: string;
  expected?: unknown;
  input?: unknown;
  values?: unknown[];
  origin?: unknown;
  minimum?: unknown;
  maximum?: unknown;
  inclusive?: boolean;
  pattern?: unknown;
  message?: string;
}

function count(n: unknown, noun: string): string {
  return `${String(n)} ${noun}${n === 1 || n === 1n ? '' : 's'}`;
}

/**
 * Message for a zod issue that no schema gave a message of its own (used as the per-parse error
 * map). Missing keys and unknown keys are worded later, where the key names are known.
 */
export function messageFor(issue: IssueFacts): string {
  const input = issue.input;
  switch (issue.code) {
    case 'invalid_type': {
      const expected = String(issue.expected);
      if (expected === 'int' && typeof input === 'number') return `expected an integer, got ${show(input)}`;
      if (expected === 'number' && typeof input === 'number') return `expected a finite number, got ${show(input)}`;
      return `expected ${EXPECTED_NAMES[expected] ?? expected}, got ${typeOf(input)}`;
    }
    case 'invalid_value': {
      const values = issue.values ?? [];
      if (values.length === 1) return `expected ${show(values[0])}, got ${show(input)}`;
      return `expected one of ${values.map(String).join(', ')}, got ${show(input)}`;
    }
    case 'too_small': {
      if (issue.origin === 'string' && issue.minimum === 1) return 'must not be empty';
      if (issue.origin === 'array' || issue.origin === 'set') {
        return `expected at least ${count(issue.minimum, 'item')}, got ${Array.isArray(input) ? input.length : show(input)}`;
      }
      if (issue.origin === 'string') return `expected at least ${count(issue.minimum, 'character')}, got ${show(input)}`;
      return `expected a number ${issue.inclusive === false ? '>' : '>='} ${String(issue.minimum)}, got ${show(input)}`;
    }
    case 'too_big': {
      if (issue.origin === 'array' || issue.origin === 'set') {
        return `expected at most ${count(issue.maximum, 'item')}, got ${Array.isArray(input) ? input.length : show(input)}`;
      }
      if (issue.origin === 'string') return `expected at most ${count(issue.maximum, 'character')}, got ${show(input)}`;
      return `expected a number ${issue.inclusive === false ? '<' : '<='} ${String(issue.maximum)}, got ${show(input)}`;
    }
    case 'invalid_format':
      return `expected a string matching ${String(issue.pattern ?? 'the required format')}, got ${show(input)}`;
    case 'invalid_key':
      return `invalid key ${show(input)}`;
    case 'invalid_union':
      return `unexpected value ${show(input)}`;
    case 'invalid_element':
      return `invalid entry ${show(input)}`;
    default:
      return issue.message ?? `invalid value ${show(input)}`;
  }
}

/** `unknown key "prot" (did you mean "protocol"?)` */
export function unknownKeyMessage(key: string, known: readonly string[]): string {
  const suggestion = suggestKey(key, known);
  return suggestion === undefined
    ? `unknown key ${JSON.stringify(key)}`
    : `unknown key ${JSON.stringify(key)} (did you mean ${JSON.stringify(suggestion)}?)`;
}

export function missingKeyMessage(key: string): string {
  return `missing required key ${JSON.stringify(key)}`;
}

/**
 * The known key a typo most likely meant: a case-insensitive match, else a key the typo is a
 * prefix of ("prot" → "protocol", at least 3 characters typed), else the closest key within edit
 * distance 2, or 1 for keys under 4 characters (optimal string alignment: insertions, deletions,
 * substitutions, swaps of neighbours).
 */
export function suggestKey(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  const exact = known.find((k) => k.toLowerCase() === lower);
  if (exact !== undefined) return exact;
  if (lower.length >= 3) {
    const prefixed = known.filter((k) => k.toLowerCase().startsWith(lower));
    if (prefixed.length > 0) return prefixed.reduce((a, b) => (b.length < a.length ? b : a));
  }
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(lower, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  // Short keys get less slack: "xyz" is 2 edits from "sys", which is no typo.
  const allowed = Math.min(2, Math.floor(key.length / 2));
  return best !== undefined && bestDistance <= allowed ? best : undefined;
}

/** Optimal-string-alignment distance (Levenshtein plus transposition of adjacent characters). */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  const at = (i: number, j: number): number => d[i * cols + j] ?? 0;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, at(i - 2, j - 2) + 1);
      d[i * cols + j] = v;
    }
  }
  return at(a.length, b.length);
}
