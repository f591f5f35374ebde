import type { Command } from 'commander';
import { generateDeviceToken, setUserPassword, validateUsername } from '@bastion/middleware';
import { CliError } from '../errors.js';
import { readSecret, showSecretOnce } from '../secret-input.js';

export function register(program: Command): void {
  program
    .command('passwd')
    .description('add a user to a users file or change its password (the password is read without echo; from a pipe: one line)')
    .argument('<file>', 'users file (created with mode 0600 if missing)')
    .argument('<user>', 'username')
    .option('-g, --groups <list>', 'comma-separated groups, e.g. operators,dms')
    .option('--generate', 'instead of reading a password, generate a device token (256 random bits), store its fast hash and print it once on stdout')
    .action(async (file: string, user: string, opts: { groups?: string; generate?: boolean }) => {
      const bad = validateUsername(user);
      if (bad) throw new CliError(bad, 2);
      const groups = opts.groups ? opts.groups.split(',').map((g) => g.trim()).filter(Boolean) : undefined;
      if (opts.generate) {
        const token = generateDeviceToken();
        const { created } = await setUserPassword(file, user, token, { groups, token: true });
        return showSecretOnce(`${created ? 'added' : 'updated'} user ${user} in ${file} with a new device token`, token);
      }
      const password = await readSecret(`Password for ${user}: `);
      if (process.stdin.isTTY) {
        const again = await readSecret('Repeat it: ');
        if (again !== password) throw new CliError('the passwords did not match; nothing changed');
      }
      if (password.length < 8) throw new CliError('a password needs at least 8 characters; nothing changed');
      const { created } = await setUserPassword(file, user, password, { groups });
      process.stdout.write(`${created ? 'added' : 'updated'} user ${user} in ${file}\n`);
    });
}
