/**
 * `bastion reload`: make a running broker re-read its profile and everything it points to, applied
 * whole or not at all. Two ways to reach it:
 *  - a signal: SIGHUP to the pid in `--pid-file` (written by `bastion start --pid-file`) or `--pid`;
 *    the broker logs `profile.reloaded` or `profile.reload.failed` — a signal carries no answer;
 *  - the admin API: POST /v1/reload (`--url` or `--profile`, `--token-file`); prints what changed,
 *    or why nothing did, and exits 1 when the reload was refused.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { ReloadResult } from '@bastion/broker';
import { formatReloadIssue } from '@bastion/broker';
import { CliError } from '../errors.js';
import { client } from './admin.js';

interface Flags {
  pidFile?: string;
  pid?: string;
  url?: string;
  profile?: string;
  tokenFile?: string;
  ca?: string;
  cert?: string;
  key?: string;
  json?: boolean;
}

function pidFrom(o: Flags): number {
  let text: string;
  if (o.pid !== undefined) text = o.pid;
  else {
    try {
      text = readFileSync(o.pidFile as string, 'utf8');
    } catch (err) {
      throw new CliError(`cannot read --pid-file ${o.pidFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 1) throw new CliError(`not a process id: ${JSON.stringify(text.trim())}`, o.pid !== undefined ? 2 : 1);
  return pid;
}

export function register(program: Command): void {
  program
    .command('reload')
    .description("make a running broker re-read its profile (users, ACL, certificates, CRLs, limits …): applied whole or not at all")
    .option('--pid-file <file>', 'send SIGHUP to the pid in this file (bastion start --pid-file)')
    .option('--pid <pid>', 'send SIGHUP to this process')
    .option('--url <url>', 'reload through the admin API at this URL (prints the result)')
    .option('-p, --profile <file>', 'reload through the admin API whose address this profile gives')
    .option('--token-file <file>', 'file holding the admin token (else $BASTION_ADMIN_TOKEN)')
    .option('--ca <file>', 'CA certificate of the admin API (HTTPS)')
    .option('--cert <file>', 'client certificate, for an admin API that authenticates by certificate')
    .option('--key <file>', 'private key of --cert')
    .option('--json', 'print the admin API answer as JSON')
    .action(async (o: Flags) => {
      const bySignal = o.pidFile !== undefined || o.pid !== undefined;
      const byApi = o.url !== undefined || o.profile !== undefined;
      if (bySignal === byApi) throw new CliError('give either --pid-file/--pid (signal) or --url/--profile (admin API)', 2);
      if (bySignal) {
        const pid = pidFrom(o);
        try {
          process.kill(pid, 'SIGHUP');
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          throw new CliError(code === 'ESRCH' ? `no process ${pid} (is the broker running?)` : `cannot signal process ${pid}: ${code ?? (err as Error).message}`);
        }
        process.stdout.write(`bastion: sent SIGHUP to ${pid}; the broker logs profile.reloaded, or profile.reload.failed with the reasons\n`);
        return;
      }
      const api = await client({ url: o.url, profile: o.profile, tokenFile: o.tokenFile, ca: o.ca, cert: o.cert, key: o.key });
      const r = await api.request<ReloadResult>('POST', '/v1/reload');
      if (o.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      else if (r.ok) {
        process.stdout.write(`bastion: profile reloaded from ${r.source}\n`);
        for (const c of r.changes) process.stdout.write(`  ${c}\n`);
      } else {
        for (const i of r.issues) process.stderr.write(`${formatReloadIssue(i)}\n`);
      }
      if (!r.ok) throw new CliError(`reload refused; the running configuration is unchanged (${r.issues.length} issue${r.issues.length === 1 ? '' : 's'})`);
    });
}
