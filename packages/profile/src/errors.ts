/** One problem in a profile, with where it is. */
export interface ProfileIssue {
  /** The profile file as given to the loader, or `<inline>` / `opts.source` for objects given in code. */
  file: string;
  /** 1-based line; 0 when there is no source text (objects given in code, unreadable files). */
  line: number;
  /** 1-based column; 0 when there is no source text. */
  column: number;
  /** Where in the profile, e.g. `listeners[0].port`; `(root)` for the profile as a whole. */
  path: string;
  message: string;
}

export const PROFILE_ERROR_CODE = 'BASTION_ERR_PROFILE';

/** `${file}:${line}:${column} ${path}: ${message}` */
export function formatProfileIssue(issue: ProfileIssue): string {
  return `${issue.file}:${issue.line}:${issue.column} ${issue.path}: ${issue.message}`;
}

/**
 * Thrown when a profile cannot be used. `issues` holds every problem found (not just the first);
 * the message lists them, one formatted issue per line.
 */
export class ProfileError extends Error {
  readonly code = PROFILE_ERROR_CODE;
  readonly issues: ProfileIssue[];

  constructor(issues: ProfileIssue[], options?: { cause?: unknown }) {
    super(issues.map(formatProfileIssue).join('\n'), options);
    this.name = 'ProfileError';
    this.issues = issues;
  }
}

/** True for a ProfileError, also one from another copy of this package (matches on `code`). */
export function isProfileError(err: unknown): err is ProfileError {
  return (
    err instanceof ProfileError ||
    (err instanceof Error && (err as { code?: unknown }).code === PROFILE_ERROR_CODE && Array.isArray((err as { issues?: unknown }).issues))
  );
}
