import type { Command } from 'commander';
import { connectStore, generateKeyFile, rotateStore } from '@bastion/persistence';
import { loadProfile } from '@bastion/profile';
import { CliError } from '../errors.js';

export function register(program: Command): void {
  const keys = program.command('keys').description('persistence keys (RC.RP-7): make a key, re-seal a store with the current key');
  keys
    .command('generate')
    .description('write a new random 32-byte key file (mode 0600; an existing file is never overwritten) and print its key id')
    .argument('<file>', 'where to write the key')
    .option('--json', 'print the result as JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      const { id } = await generateKeyFile(file);
      if (opts.json) return void process.stdout.write(JSON.stringify({ file, keyId: id }) + '\n');
      process.stdout.write(`wrote ${file} (key id ${id}); list it first under persistence.encryption.keys to make it the current key\n`);
    });
  keys
    .command('rotate')
    .description("re-seal every stored record of the profile's Redis store with its first key (also encrypts a store written unencrypted); old keys can be removed afterwards")
    .requiredOption('-p, --profile <file>', 'framework-profile file (YAML or JSON)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { profile: string; json?: boolean }) => {
      const profile = await loadProfile(opts.profile);
      const p = profile.persistence;
      if (!p.encryption) throw new CliError('persistence.encryption is not set in the profile: there is no key to rotate to');
      const conn = await connectStore(p);
      try {
        const r = await rotateStore(conn.db, conn.prefix, conn.keyring!);
        if (opts.json) process.stdout.write(JSON.stringify({ keyId: conn.keyring!.current.id, ...r }, null, 2) + '\n');
        else {
          const current = conn.keyring!.current.id;
          process.stdout.write(
            `re-sealed ${r.resealed} record${r.resealed === 1 ? '' : 's'} with key ${current} (${r.records} with a payload${r.skippedChanged ? `, ${r.skippedChanged} changed meanwhile by a broker` : ''})` +
              `${r.encryptedNow ? '; the store is now encrypted' : ''}` +
              `${r.retiredKeyIds.length ? `; no record uses ${r.retiredKeyIds.join(', ')} any more: remove ${r.retiredKeyIds.length === 1 ? 'it' : 'them'} from the profile` : ''}\n`,
          );
          for (const pr of r.problems) process.stderr.write(`bastion: ${pr.key}${pr.field === undefined ? '' : ` [${pr.field}]`}: ${pr.reason}\n`);
        }
        if (r.problems.length > 0) throw new CliError(`${r.problems.length} record${r.problems.length === 1 ? '' : 's'} could not be re-sealed`);
      } finally {
        await conn.close();
      }
    });
}
