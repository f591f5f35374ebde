import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { initDevPki, issueClientToDir, listCertificates, pkiPaths } from '@bastion/pki';
import { CliError } from '../errors.js';

function days(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 36500) throw new CliError(`--days must be a whole number from 1 to 36500, got "${v}"`, 2);
  return n;
}

export function register(program: Command): void {
  const certs = program.command('certs').description('the PKI: a CA, server and client certificates (keys written mode 0600)');
  certs
    .command('init')
    .description('create a development CA, a server certificate (localhost, 127.0.0.1, ::1) and two client certificates')
    .option('-d, --dir <dir>', 'PKI directory', 'certs-dev')
    .option('--force', 'overwrite an existing PKI')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { dir: string; force?: boolean; json?: boolean }) => {
      const r = await initDevPki(opts.dir, { force: opts.force });
      if (opts.json) return void process.stdout.write(JSON.stringify({ created: r.created, dir: r.paths.dir, clients: r.clients }, null, 2) + '\n');
      if (!r.created) process.stdout.write(`${r.paths.dir} already holds a PKI; nothing written (use --force to replace it)\n`);
      else process.stdout.write(`created CA, server certificate and clients ${r.clients.join(', ')} in ${r.paths.dir}\n`);
    });
  const issue = certs.command('issue').description('issue a certificate from the PKI directory\'s CA');
  issue
    .command('client')
    .description('issue a client certificate')
    .argument('<name>', 'certificate name (also its CN unless --cn)')
    .option('-d, --dir <dir>', 'PKI directory', 'certs-dev')
    .option('--cn <cn>', 'common name')
    .option('--dns <names>', 'comma-separated SAN DNS names')
    .option('--uri <uris>', 'comma-separated SAN URIs')
    .option('--email <emails>', 'comma-separated SAN email addresses')
    .option('--days <n>', 'validity in days', '365')
    .option('--force', 'replace an existing certificate of that name')
    .option('--json', 'print the result as JSON')
    .action(async (name: string, opts: { dir: string; cn?: string; dns?: string; uri?: string; email?: string; days: string; force?: boolean; json?: boolean }) => {
      const list = (v?: string) => (v ? v.split(',').map((s) => s.trim()).filter(Boolean) : undefined);
      const r = await issueClientToDir(opts.dir, name, {
        commonName: opts.cn,
        dnsNames: list(opts.dns),
        uris: list(opts.uri),
        emails: list(opts.email),
        validityDays: days(opts.days),
        force: opts.force,
      });
      if (opts.json) return void process.stdout.write(JSON.stringify({ name, cert: r.certPath, key: r.keyPath, serial: r.issued.serial, notAfter: r.issued.notAfter }, null, 2) + '\n');
      process.stdout.write(`issued ${name}: ${r.certPath} (key ${r.keyPath}, serial ${r.issued.serial}, valid until ${r.issued.notAfter.toISOString()})\n`);
    });
  certs
    .command('list')
    .description('list the certificates in the PKI directory')
    .option('-d, --dir <dir>', 'PKI directory', 'certs-dev')
    .option('--json', 'print as JSON')
    .action(async (opts: { dir: string; json?: boolean }) => {
      if (!existsSync(pkiPaths(opts.dir).caCert)) throw new CliError(`no PKI in ${opts.dir} (no ca.pem); create one with \`bastion certs init --dir ${opts.dir}\``);
      const list = await listCertificates(opts.dir);
      if (opts.json) return void process.stdout.write(JSON.stringify(list, null, 2) + '\n');
      const rows = list.map((c) => [c.kind, c.name, c.subject, c.serial, c.notAfter.toISOString().slice(0, 10)]);
      const head = ['KIND', 'NAME', 'SUBJECT', 'SERIAL', 'EXPIRES'];
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
      for (const r of [head, ...rows]) process.stdout.write(r.map((c, i) => String(c).padEnd(widths[i] as number)).join('  ').trimEnd() + '\n');
    });
}
