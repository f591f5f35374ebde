/**
 * The `bastion` command. Every subcommand has --help; bad flags and missing files print one clear
 * line and exit non-zero (2 for usage errors, 1 for failures), never a stack trace.
 */
import { Command, CommanderError } from 'commander';
import { register as start } from './commands/start.js';
import { register as profile } from './commands/profile.js';
import { register as reload } from './commands/reload.js';
import { register as passwd } from './commands/passwd.js';
import { register as certs } from './commands/certs.js';
import { register as admin } from './commands/admin.js';
import { register as audit } from './commands/audit.js';
import { register as backup } from './commands/backup.js';
import { register as restore } from './commands/restore.js';
import { register as keys } from './commands/keys.js';
import { register as identify } from './commands/identify.js';
import { reportError } from './errors.js';

export function buildProgram(): Command {
  const program = new Command('bastion')
    .description('Bastion: a security-hardened MQTT broker whose posture is one framework-profile file (NIST CSF)')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  start(program);
  reload(program);
  profile(program);
  passwd(program);
  certs(program);
  admin(program);
  identify(program);
  audit(program);
  backup(program);
  restore(program);
  keys(program);
  for (const cmd of program.commands) applyExitOverride(cmd);
  return program;
}

function applyExitOverride(cmd: Command): void {
  cmd.exitOverride();
  cmd.showHelpAfterError('(run with --help for usage)');
  for (const sub of cmd.commands) applyExitOverride(sub);
}

export async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version exit 0; usage errors were printed by commander
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return 2;
    }
    return reportError(err);
  }
}
