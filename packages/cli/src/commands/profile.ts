import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { checkProfile, formatProfileIssue, profileJsonSchemaText } from '@bastion/profile';
import { CliError } from '../errors.js';

export function register(program: Command): void {
  const profile = program.command('profile').description('check a framework profile or print its JSON Schema');
  profile
    .command('check')
    .description('validate a profile; every error is reported with file, line, column and key')
    .argument('<file>', 'profile file (YAML or JSON)')
    .option('--json', 'print the result as JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      const result = await checkProfile(file);
      if (opts.json) {
        process.stdout.write(JSON.stringify(result.ok ? { ok: true, file } : { ok: false, file, errors: result.errors }, null, 2) + '\n');
      } else if (result.ok) {
        const p = result.profile;
        process.stdout.write(`${file}: OK (tier ${p.tier}, ${p.listeners.length} listener${p.listeners.length === 1 ? '' : 's'}: ${p.listeners.map((l) => `${l.protocol}://${l.host}:${l.port}`).join(', ')})\n`);
      } else {
        for (const issue of result.errors) process.stderr.write(formatProfileIssue(issue) + '\n');
        process.stderr.write(`${file}: ${result.errors.length} error${result.errors.length === 1 ? '' : 's'}\n`);
      }
      if (!result.ok) throw new CliError('profile check failed', 1);
    });
  profile
    .command('schema')
    .description('print the profile JSON Schema (for editor completion)')
    .option('-o, --out <file>', 'write it to a file instead')
    .action((opts: { out?: string }) => {
      const text = profileJsonSchemaText();
      if (opts.out) writeFileSync(opts.out, text);
      else process.stdout.write(text);
    });
}
