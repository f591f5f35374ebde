import type { Command } from 'commander';
import { connectStore, writeBackup } from '@bastion/persistence';
import type { Progress } from '@bastion/persistence';
import { loadProfile } from '@bastion/profile';
import { CliError } from '../errors.js';

/** A progress bar on stderr, only when stderr is a terminal (never in logs or pipes); at most ten redraws a second. */
export function progressBar(label: string, stream: NodeJS.WriteStream = process.stderr): { update: Progress; done(): void } {
  if (!stream.isTTY) return { update: () => undefined, done: () => undefined };
  let last = 0;
  let drawn = false;
  const draw = (done: number, total: number) => {
    const width = 30;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const fill = Math.round(frac * width);
    stream.write(`\r${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${String(Math.floor(frac * 100)).padStart(3)}% ${done}/${total}`);
    drawn = true;
  };
  return {
    update(done, total) {
      const now = Date.now();
      if (done < total && now - last < 100) return;
      last = now;
      draw(done, total);
    },
    done() {
      if (drawn) stream.write('\n');
      drawn = false;
    },
  };
}

export function register(program: Command): void {
  program
    .command('backup')
    .description("write an encrypted snapshot of the profile's Redis store (sessions, subscriptions, queues, retained messages, wills) to a file (mode 0600)")
    .requiredOption('-p, --profile <file>', 'framework-profile file (YAML or JSON)')
    .requiredOption('-o, --out <file>', 'the backup file to write')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { profile: string; out: string; json?: boolean }) => {
      const profile = await loadProfile(opts.profile);
      if (!profile.persistence.encryption) throw new CliError('a backup is sealed with the persistence keys: set persistence.encryption in the profile');
      const conn = await connectStore(profile.persistence);
      const bar = progressBar('backup');
      try {
        const r = await writeBackup(conn.db, conn.prefix, conn.keyring!, opts.out, bar.update);
        bar.done();
        if (opts.json) process.stdout.write(JSON.stringify({ file: opts.out, keyId: conn.keyring!.current.id, ...r }) + '\n');
        else process.stdout.write(`backed up ${r.entries} key${r.entries === 1 ? '' : 's'} to ${opts.out} (${r.bytes} bytes, sealed with key ${conn.keyring!.current.id})\n`);
      } finally {
        bar.done();
        await conn.close();
      }
    });
}
