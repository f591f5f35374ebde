import type { Command } from 'commander';
import { setUserPassword, validateUsername } from '@bastion/middleware';
import { CliError } from '../errors.js';
import { readSecret } from '../secret-input.js';

export function register(program: Command): void {
  program
    .command('passwd')
    .description('add a user to a users file or change its password (the password is read without echo; from a pipe: one line)')
    .argument('<file>', 'users file (created with mode 0600 if missing)')
    .argument('<user>', 'username')
    .option('-g, --groups <list>', 'comma-separated groups, e.g. operators,dms')
    .action(async (file: string, user: string, opts: { groups?: string }) => {
      const bad = validateUsername(user);
      if (bad) throw new CliError(bad, 2);
      const password = await readSecret(`Password for ${user}: `);
      if (process.stdin.isTTY) {
        const again = await readSecret('Repeat it: ');
        if (again !== password) throw new CliError('the passwords did not match; nothing changed');
      }
      if (password.length < 8) throw new CliError('a password needs at least 8 characters; nothing changed');
      const groups = opts.groups ? opts.groups.split(',').map((g) => g.trim()).filter(Boolean) : undefined;
      const { created } = await setUserPassword(file, user, password, { groups });
      process.stdout.write(`${created ? 'added' : 'updated'} user ${user} in ${file}\n`);
    });
}
