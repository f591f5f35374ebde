/**
 * `${env:NAME}` substitution in every string value of a profile, so secrets and per-host values
 * never sit in the file. `$${env:NAME}` stands for the literal text `${env:NAME}`.
 * Values stay strings: sizes and durations accept strings, so `maxPacketSize: ${env:MAX_PACKET}` works;
 * number and boolean keys (port, anonymous, ...) cannot come from the environment.
 */
export type Env = Readonly<Record<string, string | undefined>>;
export type PathSegment = string | number;

export interface EnvProblem {
  path: PathSegment[];
  message: string;
}

const PLACEHOLDER = /\$(\$?)\{env:([^}]*)\}/g;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function substituteString(text: string, env: Env, path: PathSegment[], problems: EnvProblem[]): string {
  if (!text.includes('${env:')) return text;
  return text.replace(PLACEHOLDER, (whole: string, escaped: string, name: string) => {
    if (escaped) return whole.slice(1);
    if (!NAME.test(name)) {
      problems.push({ path, message: `invalid environment variable name ${JSON.stringify(name)} in ${JSON.stringify(whole)}` });
      return whole;
    }
    const value = env[name];
    if (value === undefined) {
      problems.push({ path, message: `environment variable ${JSON.stringify(name)} is not set` });
      return whole;
    }
    return value;
  });
}

/** A copy of `value` with placeholders in every string replaced; the input is not modified. */
export function substituteEnv(value: unknown, env: Env): { value: unknown; problems: EnvProblem[] } {
  const problems: EnvProblem[] = [];
  const walk = (node: unknown, path: PathSegment[]): unknown => {
    if (typeof node === 'string') return substituteString(node, env, path, problems);
    if (Array.isArray(node)) return node.map((item, i) => walk(item, [...path, i]));
    if (isPlainObject(node)) {
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(node)) {
        Object.defineProperty(out, key, { value: walk(item, [...path, key]), enumerable: true, writable: true, configurable: true });
      }
      return out;
    }
    return node;
  };
  return { value: walk(value, []), problems };
}
