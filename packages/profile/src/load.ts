/** Reading a profile: from a file, from text, or from an object given in code. */
import { readFile } from 'node:fs/promises';
import { dirname, resolve as resolvePath } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type { Env } from './env.js';
import type { ProfileIssue } from './errors.js';
import { ProfileError, isProfileError } from './errors.js';
import { noSource, yamlLocator } from './locate.js';
import { resolveValue } from './resolve.js';
import type { Profile } from './types.js';

export interface ProfileOptions {
  /** Directory relative paths resolve against. Default: the profile file's directory (for objects: the working directory). */
  baseDir?: string;
  /** Where `${env:NAME}` looks names up. Default: process.env. */
  env?: Env;
}

export interface ParseOptions extends ProfileOptions {
  /** The file name used in issues; also gives the default baseDir. */
  file: string;
}

export interface ResolveOptions extends ProfileOptions {
  /** The name used as `file` in issues. Default: `<inline>`. */
  source?: string;
}

export type CheckResult = { ok: true; profile: Profile } | { ok: false; errors: ProfileIssue[] };

/** Parses profile text (YAML, or JSON, which is YAML too) and resolves it. Throws ProfileError. */
export function parseProfile(text: string, opts: ParseOptions): Profile {
  const file = opts.file;
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, version: '1.2' });
  if (doc.errors.length > 0) {
    throw new ProfileError(
      doc.errors.map((err) => {
        const { line, col } = counter.linePos(err.pos[0]);
        const message = err.code === 'MULTIPLE_DOCS' ? 'a profile is a single YAML document; found a second one' : err.message;
        return { file, line, column: col, path: '(root)', message: `invalid YAML: ${message}` };
      }),
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new ProfileError([{ file, line: 1, column: 1, path: '(root)', message: `invalid YAML: ${message}` }], { cause: err });
  }
  if (raw === null || raw === undefined) {
    throw new ProfileError([{ file, line: 1, column: 1, path: '(root)', message: 'empty profile: expected an object with at least "version: 1"' }]);
  }
  const outcome = resolveValue(raw, {
    file,
    baseDir: resolvePath(opts.baseDir ?? dirname(resolvePath(file))),
    env: opts.env ?? process.env,
    locate: yamlLocator(doc, counter),
  });
  if (!outcome.ok) throw new ProfileError(outcome.issues);
  return outcome.profile;
}

/** Validates and resolves a profile given in code (e.g. a `ProfileInput` literal). Throws ProfileError; issues have line and column 0. */
export function resolveProfile(input: unknown, opts: ResolveOptions = {}): Profile {
  const outcome = resolveValue(input, {
    file: opts.source ?? '<inline>',
    baseDir: resolvePath(opts.baseDir ?? process.cwd()),
    env: opts.env ?? process.env,
    locate: noSource,
  });
  if (!outcome.ok) throw new ProfileError(outcome.issues);
  return outcome.profile;
}

/** Reads and resolves a profile file (YAML or JSON, told apart by content). Throws ProfileError. */
export async function loadProfile(file: string, opts: ProfileOptions = {}): Promise<Profile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message =
      code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a directory, not a file' : `cannot read file (${code ?? String(err)})`;
    throw new ProfileError([{ file, line: 0, column: 0, path: '(root)', message }], { cause: err });
  }
  return parseProfile(text, { ...opts, file });
}

/** Like loadProfile, but returns the issues instead of throwing them. Other errors still throw. */
export async function checkProfile(file: string, opts: ProfileOptions = {}): Promise<CheckResult> {
  try {
    return { ok: true, profile: await loadProfile(file, opts) };
  } catch (err) {
    if (isProfileError(err)) return { ok: false, errors: err.issues };
    throw err;
  }
}
