import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { checkProfile, formatProfileIssue, loadProfile, profileJsonSchemaText } from '@bastion/profile';
import type { Profile } from '@bastion/profile';
import { assess, assessmentExitCode, implementationsOf, implementationsOfEffective, renderAssessment, renderAssessmentMarkdown } from '@bastion/broker';
import type { EffectiveProfile, Implementation } from '@bastion/broker';
import { CliError } from '../errors.js';
import { client } from './admin.js';

interface AssessFlags {
  profile?: string;
  target?: string;
  json?: boolean;
  markdown?: boolean;
  live?: boolean;
  url?: string;
  tokenFile?: string;
  ca?: string;
  cert?: string;
  key?: string;
}

/** The current profile and what implements it: the file with its controls built (not listening), or a running broker's effective configuration. */
async function current(o: AssessFlags): Promise<{ profile: Profile; implementations: Implementation[] }> {
  if (o.live) {
    const api = await client({ url: o.url, profile: o.profile, tokenFile: o.tokenFile, ca: o.ca, cert: o.cert, key: o.key });
    const effective = await api.request<EffectiveProfile>('GET', '/v1/profile/effective');
    return { profile: effective.profile, implementations: implementationsOfEffective(effective) };
  }
  if (o.profile === undefined) throw new CliError('profile assess needs --profile FILE (or --live with --url)', 2);
  const profile = await loadProfile(o.profile);
  return { profile, implementations: await implementationsOf(profile) };
}

export function register(program: Command): void {
  const profile = program.command('profile').description('check a framework profile, assess it against a target, or print its JSON Schema');
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
  profile
    .command('assess')
    .description('the profile against a target, subcategory by subcategory of the CSF catalog: what it enables, what implements it, the tier reached, the gaps (exit 3 when a gap remains)')
    .option('-p, --profile <file>', 'the current profile (with --live: where the admin API is, when --url is not given)')
    .option('-t, --target <file>', "the target profile: its tiers and what it enables (default: the current profile's own tiers for every broker-scope subcategory)")
    .option('--json', 'print the assessment as JSON')
    .option('--markdown', 'print the assessment as Markdown tables')
    .option('--live', "assess a running broker's effective configuration through its admin API")
    .option('--url <url>', 'admin API URL, for --live')
    .option('--token-file <file>', 'file holding the admin token, for --live (else $BASTION_ADMIN_TOKEN)')
    .option('--ca <file>', 'CA certificate of the admin API (HTTPS), for --live')
    .option('--cert <file>', 'client certificate, for an admin API that authenticates by certificate')
    .option('--key <file>', 'private key of --cert')
    .action(async (opts: AssessFlags) => {
      if (opts.json && opts.markdown) throw new CliError('choose one of --json and --markdown', 2);
      if (!opts.live && (opts.url !== undefined || opts.tokenFile !== undefined)) throw new CliError('--url and --token-file go with --live', 2);
      const now = await current(opts);
      const target = opts.target === undefined ? undefined : await loadProfile(opts.target);
      const a = assess({ ...now, ...(target === undefined ? {} : { target }), live: opts.live === true });
      process.stdout.write(opts.json ? `${JSON.stringify(a, null, 2)}\n` : opts.markdown ? renderAssessmentMarkdown(a) : renderAssessment(a));
      const code = assessmentExitCode(a);
      if (code !== 0) throw new CliError(`${a.summary.gaps} gap${a.summary.gaps === 1 ? '' : 's'} to the target remain`, code);
    });

}
