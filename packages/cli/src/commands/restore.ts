import type { Command } from 'commander';
import { connectStore, restoreBackup } from '@bastion/persistence';
import { loadProfile } from '@bastion/profile';
import { CliError } from '../errors.js';
import { progressBar } from './backup.js';

export function register(program: Command): void {
  program
    .command('restore')
    .description("load a backup into the profile's Redis store, which must be empty; the whole file is verified before anything is written")
    .requiredOption('-p, --profile <file>', 'framework-profile file (YAML or JSON)')
    .requiredOption('-i, --in <file>', 'the backup file to read')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { profile: string; in: string; json?: boolean }) => {
      const profile = await loadProfile(opts.profile);
      if (!profile.persistence.encryption) throw new CliError('a backup opens with the persistence keys: set persistence.encryption in the profile');
      const conn = await connectStore(profile.persistence);
      const bar = progressBar('restore');
      try {
        const r = await restoreBackup(conn.db, conn.prefix, conn.keyring!, opts.in, bar.update);
        bar.done();
        if (opts.json) process.stdout.write(JSON.stringify({ file: opts.in, ...r }) + '\n');
        else process.stdout.write(`restored ${r.entries} key${r.entries === 1 ? '' : 's'} from ${opts.in}\n`);
      } finally {
        bar.done();
        await conn.close();
      }
    });
}
