import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { GENESIS, verifyAuditFiles } from '@bastion/detect';
import { CliError } from '../errors.js';

interface VerifyFlags {
  keyFile?: string;
  keyEnv?: string;
  json?: boolean;
}

async function loadKey(opts: VerifyFlags): Promise<Buffer | undefined> {
  if (opts.keyFile !== undefined && opts.keyEnv !== undefined) throw new CliError('give --key-file or --key-env, not both', 2);
  if (opts.keyFile !== undefined) {
    try {
      return Buffer.from((await readFile(opts.keyFile, 'utf8')).trim(), 'utf8');
    } catch (err) {
      throw new CliError(`cannot read the key file ${opts.keyFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if (opts.keyEnv !== undefined) {
    const v = process.env[opts.keyEnv];
    if (v === undefined || v === '') throw new CliError(`environment variable ${opts.keyEnv} is not set`);
    return Buffer.from(v, 'utf8');
  }
  return undefined;
}

export function register(program: Command): void {
  const audit = program.command('audit').description('work with the hash-chained audit log');
  audit
    .command('verify')
    .description('check the hash chain (and HMACs, with a key) of audit files; reports the first line where it breaks')
    .argument('<files...>', 'audit files: the active file and any rotated ones (<file>.1, <file>.2 …), in any order')
    .option('--key-file <file>', 'file holding the HMAC key: every line must carry a valid HMAC')
    .option('--key-env <name>', 'environment variable holding the HMAC key')
    .option('--json', 'print the result as JSON')
    .action(async (files: string[], opts: VerifyFlags) => {
      const key = await loadKey(opts);
      let result;
      try {
        result = await verifyAuditFiles(files, { key });
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new CliError(`cannot read ${e.path ?? 'an audit file'}: ${e.code ?? e.message}`);
      }
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      } else if (result.ok) {
        const h = result.head;
        const s = result.start;
        const from = s === undefined ? '' : s.prev === GENESIS ? ` from the start (seq ${s.seq})` : ` from seq ${s.seq} (earlier files not given or deleted)`;
        process.stdout.write(`OK: ${result.lines} lines in ${result.files.length} file${result.files.length === 1 ? '' : 's'}, chain intact${from}${h ? `; head seq ${h.seq} hash ${h.hash}` : ''}${key ? ', HMACs valid' : ''}\n`);
      } else {
        const b = result.break!;
        process.stderr.write(`${b.file}:${b.line}: ${b.reason}${b.seq !== undefined ? ` (seq ${b.seq})` : ''}\n`);
      }
      if (!result.ok) throw new CliError('audit verify: the chain is broken', 1);
    });
}
