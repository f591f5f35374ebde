/** CLI failures: a message for the user and an exit code; never a stack trace. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Print any error as one clear line (or the profile issues, one per line) and return the exit code. */
export function reportError(err: unknown, write: (s: string) => void = (s) => process.stderr.write(s)): number {
  if (err instanceof CliError) {
    write(`bastion: ${err.message}\n`);
    return err.exitCode;
  }
  const e = err as { code?: string; message?: string; issues?: unknown[] };
  if (e && typeof e.code === 'string' && e.code.startsWith('BASTION_ERR')) {
    write(`bastion: ${e.message}\n`);
    return 1;
  }
  if (e && typeof e.code === 'string' && e.code.startsWith('commander.')) return 1; // commander already printed it
  write(`bastion: unexpected error: ${e?.message ?? String(err)}\n`);
  if (process.env.BASTION_DEBUG) write(`${(err as Error)?.stack ?? ''}\n`);
  return 1;
}
