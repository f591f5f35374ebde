import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import {
  CA_PASSPHRASE_ENV,
  KEY_TYPES,
  REVOCATION_REASON_CODES,
  caPassphrase,
  initDevPki,
  issueClientToDir,
  issueServerToDir,
  listCertificates,
  parseCRL,
  pkiPaths,
  renewInDir,
  revokeInDir,
  updateCRLInDir,
  writePublicFile,
  crlToDer,
  type KeyType,
  type RevocationReason,
} from '@bastion/pki';
import { CliError } from '../errors.js';

function days(v: string, flag = '--days'): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 36500) throw new CliError(`${flag} must be a whole number from 1 to 36500, got "${v}"`, 2);
  return n;
}

function keyType(v: string | undefined): { keyType?: KeyType } {
  if (v === undefined) return {};
  if (!KEY_TYPES.includes(v as KeyType)) throw new CliError(`--key-type must be one of ${KEY_TYPES.join(', ')}, got "${v}"`, 2);
  return { keyType: v as KeyType };
}

/** 'keyCompromise', 'key-compromise', 'KEY_COMPROMISE' or the RFC 5280 code '1'. */
function reason(v: string | undefined, flag = '--reason'): RevocationReason | undefined {
  if (v === undefined) return undefined;
  const flat = v.toLowerCase().replace(/[-_\s]/g, '');
  for (const [name, code] of Object.entries(REVOCATION_REASON_CODES)) {
    if (name.toLowerCase() === flat || String(code) === v) return name as RevocationReason;
  }
  throw new CliError(`${flag} must be one of ${Object.keys(REVOCATION_REASON_CODES).join(', ')}, got "${v}"`, 2);
}

const list = (v?: string) => (v ? v.split(',').map((s) => s.trim()).filter(Boolean) : undefined);
const json = (value: unknown) => process.stdout.write(JSON.stringify(value, null, 2) + '\n');
const say = (line: string) => process.stdout.write(line + '\n');

function requirePki(dir: string): void {
  if (!existsSync(pkiPaths(dir).caCert)) throw new CliError(`no PKI in ${dir} (no ca.pem); create one with \`bastion certs init --dir ${dir}\``);
}

function crlDaysOption(v: string | undefined): { crlDays?: number } {
  return v === undefined ? {} : { crlDays: days(v, '--crl-days') };
}

export function register(program: Command): void {
  const certs = program
    .command('certs')
    .description(`the PKI: a CA, server and client certificates, revocation and CRLs (keys written mode 0600; an encrypted CA key is opened with $${CA_PASSPHRASE_ENV})`);
  certs
    .command('init')
    .description('create a CA (or use an existing one), a server certificate and client certificates, and an empty CRL')
    .option('-d, --dir <dir>', 'PKI directory', 'certs-dev')
    .option('--force', 'overwrite an existing PKI')
    .option('--ca-cert <file>', 'use this existing CA certificate (with --ca-key) instead of creating a CA')
    .option('--ca-key <file>', 'the private key of --ca-cert (encrypted keys are opened with $' + CA_PASSPHRASE_ENV + ')')
    .option('--encrypt-ca-key', `store the CA key encrypted with the passphrase in $${CA_PASSPHRASE_ENV}`)
    .option('--server-names <names>', 'comma-separated DNS names and IP addresses of the server certificate', 'localhost,127.0.0.1,::1')
    .option('--clients <names>', 'comma-separated client certificates to issue', 'device-1,device-2')
    .option('--key-type <type>', `key type of the server and client certificates (${KEY_TYPES.join(', ')})`)
    .option('--ca-key-type <type>', 'key type of a new CA (default rsa-3072)')
    .option('--crl-days <n>', 'days until the first CRL needs re-signing', '7')
    .option('--json', 'print the result as JSON')
    .action(
      async (opts: {
        dir: string;
        force?: boolean;
        caCert?: string;
        caKey?: string;
        encryptCaKey?: boolean;
        serverNames: string;
        clients: string;
        keyType?: string;
        caKeyType?: string;
        crlDays: string;
        json?: boolean;
      }) => {
        if ((opts.caCert === undefined) !== (opts.caKey === undefined)) throw new CliError('--ca-cert and --ca-key go together', 2);
        const passphrase = caPassphrase();
        if (opts.encryptCaKey && passphrase === undefined) throw new CliError(`--encrypt-ca-key needs the passphrase in $${CA_PASSPHRASE_ENV}`, 2);
        const read = (f: string) => {
          try {
            return readFileSync(f, 'utf8');
          } catch (err) {
            throw new CliError(`cannot read ${f}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
          }
        };
        const caKeyType = keyType(opts.caKeyType).keyType;
        const r = await initDevPki(opts.dir, {
          force: opts.force,
          serverNames: list(opts.serverNames),
          clients: list(opts.clients) ?? [],
          ...keyType(opts.keyType),
          ...(caKeyType ? { caKeyType } : {}),
          ...(opts.caCert && opts.caKey ? { ca: { certPem: read(opts.caCert), keyPem: read(opts.caKey) } } : {}),
          ...(opts.encryptCaKey && passphrase !== undefined ? { caPassphrase: passphrase } : {}),
          crlDays: days(opts.crlDays, '--crl-days'),
        });
        if (opts.json) return void json({ created: r.created, dir: r.paths.dir, clients: r.clients, encryptedCaKey: r.created ? !!opts.encryptCaKey : undefined });
        if (!r.created) say(`${r.paths.dir} already holds a PKI; nothing written (use --force to replace it)`);
        else say(`created ${opts.caCert ? 'from the given CA' : 'CA'}, server certificate and clients ${r.clients.join(', ') || '(none)'} in ${r.paths.dir}${opts.encryptCaKey ? ' (CA key encrypted)' : ''}`);
      },
    );

  const issue = certs.command('issue').description("issue a certificate from the PKI directory's CA");
  issue
    .command('client')
    .description('issue a client certificate')
    .argument('<name>', 'certificate name (also its CN unless --cn)')
    .option('-d, --dir <dir>', 'PKI directory', 'certs-dev')
    .option('--cn <cn>', 'common name')
    .option('--ou <ou>', 'organizational unit')
    .option('--dns <names>', 'comma-separated SAN DNS names')
    .option('--uri <uris>', 'comma-separated SAN URIs')
    .option('--email <emails>', 'comma-separated SAN email addresses')
    .option('--days <n>', 'validity in days', '365')
    .option('--key-type <type>', `key type (${KEY_TYPES.join(', ')}; default rsa-2048)`)
    .option('--force', 'replace an existing certificate of that name')
    .option('--json', 'print the result as JSON')
    .action(
      async (
        name: string,
        opts: { dir: string; cn?: string; ou?: string; dns?: string; uri?: string; email?: string; days: string; keyType?: string; force?: boolean; json?: boolean },
      ) => {
        const r = await issueClientToDir(opts.dir, name, {
          commonName: opts.cn,
          ...(opts.ou === undefined ? {} : { organizationalUnit: opts.ou }),
          dnsNames: list(opts.dns),
          uris: list(opts.uri),
          emails: list(opts.email),
          validityDays: days(opts.days),
          ...keyType(opts.keyType),
          force: opts.force,
        });
        if (opts.json) return void json({ name, cert: r.certPath, key: r.keyPath, serial: r.issued.serial, subject: r.issued.subject, notAfter: r.issued.notAfter });
        say(`issued ${name}: ${r.certPath} (key ${r.keyPath}, serial ${r.issued.serial}, valid until ${r.issued.notAfter.toISOString()})`);
      },
    );
  issue
    .command('server')
    .description('issue a server certificate: server.pem (no name) or servers/<name>.pem')
    .argument('[name]', 'certificate name; omitted: the broker\'s server.pem')
    .option('-d, --dir <dir>', 'PKI directory', 'certs-dev')
    .option('--dns <names>', 'comma-separated SAN DNS names')
    .option('--ip <addresses>', 'comma-separated SAN IP addresses (IPv4 or IPv6)')
    .option('--cn <cn>', 'common name (default: the first DNS name or IP address)')
    .option('--days <n>', 'validity in days', '825')
    .option('--key-type <type>', `key type (${KEY_TYPES.join(', ')}; default rsa-2048)`)
    .option('--force', 'replace an existing certificate (the old one is archived)')
    .option('--json', 'print the result as JSON')
    .action(async (name: string | undefined, opts: { dir: string; dns?: string; ip?: string; cn?: string; days: string; keyType?: string; force?: boolean; json?: boolean }) => {
      const dnsNames = list(opts.dns) ?? [];
      const ipAddresses = list(opts.ip) ?? [];
      if (dnsNames.length === 0 && ipAddresses.length === 0) throw new CliError('give the names clients connect to: --dns and/or --ip', 2);
      const r = await issueServerToDir(opts.dir, name, {
        dnsNames,
        ipAddresses,
        ...(opts.cn === undefined ? {} : { commonName: opts.cn }),
        validityDays: days(opts.days),
        ...keyType(opts.keyType),
        force: opts.force,
      });
      if (opts.json) return void json({ name: name ?? 'server', cert: r.certPath, key: r.keyPath, serial: r.issued.serial, subject: r.issued.subject, notAfter: r.issued.notAfter, archived: r.archived });
      say(`issued server certificate ${r.certPath} (key ${r.keyPath}, serial ${r.issued.serial}, valid until ${r.issued.notAfter.toISOString()})`);
    });

  certs
    .command('renew')
    .description("reissue a certificate with a new key and serial (same subject and SANs); the old one is archived, and revoked with --revoke-old")
    .argument('<name>', "'server', a client name, or a server name from servers/")
    .option('-d, --dir <dir>', 'PKI directory', 'certs-dev')
    .option('--kind <kind>', 'client or server, when both have that name')
    .option('--days <n>', 'validity in days (default: the old certificate\'s lifetime)')
    .option('--key-type <type>', `key type (default: the old certificate's; ${KEY_TYPES.join(', ')})`)
    .option('--revoke-old [reason]', 'also revoke the replaced certificate (reason default: superseded)')
    .option('--crl-days <n>', 'days until the re-signed CRL needs re-signing (with --revoke-old)')
    .option('--json', 'print the result as JSON')
    .action(async (name: string, opts: { dir: string; kind?: string; days?: string; keyType?: string; revokeOld?: string | boolean; crlDays?: string; json?: boolean }) => {
      requirePki(opts.dir);
      if (opts.kind !== undefined && opts.kind !== 'client' && opts.kind !== 'server') throw new CliError(`--kind must be client or server, got "${opts.kind}"`, 2);
      const revokeOld = opts.revokeOld === undefined || opts.revokeOld === false ? undefined : opts.revokeOld === true ? 'superseded' : reason(opts.revokeOld, '--revoke-old');
      const r = await renewInDir(opts.dir, name, {
        ...(opts.kind ? { kind: opts.kind as 'client' | 'server' } : {}),
        ...(opts.days === undefined ? {} : { validityDays: days(opts.days) }),
        ...keyType(opts.keyType),
        ...(revokeOld ? { revokeOld } : {}),
        ...crlDaysOption(opts.crlDays),
      });
      if (opts.json) {
        return void json({
          name,
          kind: r.kind,
          cert: r.certPath,
          key: r.keyPath,
          serial: r.issued.serial,
          notAfter: r.issued.notAfter,
          previous: r.previous,
          revoked: r.revoked,
        });
      }
      say(`renewed ${name}: ${r.certPath} (serial ${r.issued.serial}, valid until ${r.issued.notAfter.toISOString()}); replaced serial ${r.previous.serial}${r.revoked ? ` revoked (${r.revoked.reason ?? 'unspecified'})` : ' archived'}`);
    });

  certs
    .command('revoke')
    .description('revoke a certificate and re-sign crl.pem (a running broker that watches it disconnects the holder)')
    .argument('<target>', "a certificate name ('server', a client, a server in servers/), a certificate file, or a hex serial")
    .option('-d, --dir <dir>', 'PKI directory', 'certs-dev')
    .option('-r, --reason <reason>', `why (${Object.keys(REVOCATION_REASON_CODES).join(', ')})`)
    .option('--crl-days <n>', 'days until the re-signed CRL needs re-signing', '7')
    .option('--json', 'print the result as JSON')
    .action(async (target: string, opts: { dir: string; reason?: string; crlDays: string; json?: boolean }) => {
      requirePki(opts.dir);
      const why = reason(opts.reason);
      const r = await revokeInDir(opts.dir, target, why, crlDaysOption(opts.crlDays));
      if (opts.json) return void json({ target, serial: r.entry.serial, subject: r.subject, reason: r.entry.reason, revokedAt: r.entry.revokedAt, alreadyRevoked: r.alreadyRevoked, crl: r.crlPath });
      say(
        r.alreadyRevoked
          ? `serial ${r.entry.serial} was already revoked; ${r.crlPath} re-signed`
          : `revoked serial ${r.entry.serial}${r.subject ? ` (${r.subject})` : ''}${r.entry.reason ? `, reason ${r.entry.reason}` : ''}; ${r.crlPath} re-signed`,
      );
    });

  certs
    .command('crl')
    .description('re-sign crl.pem from revoked.json with a new nextUpdate (run it well before the CRL goes stale, e.g. daily)')
    .option('-d, --dir <dir>', 'PKI directory', 'certs-dev')
    .option('--days <n>', 'days until nextUpdate', '7')
    .option('-o, --out <file>', 'also write the CRL to this file')
    .option('--der', 'write --out as DER instead of PEM')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { dir: string; days: string; out?: string; der?: boolean; json?: boolean }) => {
      requirePki(opts.dir);
      if (opts.der && !opts.out) throw new CliError('--der needs --out', 2);
      const r = await updateCRLInDir(opts.dir, { crlDays: days(opts.days) });
      const pem = readFileSync(r.crlPath, 'utf8');
      const crl = parseCRL(pem);
      if (opts.out) await writePublicFile(opts.out, opts.der ? crlToDer(pem) : pem);
      const info = { crl: r.crlPath, out: opts.out, crlNumber: crl.crlNumber, thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate, revoked: crl.revoked };
      if (opts.json) return void json(info);
      say(`${r.crlPath}: CRL number ${crl.crlNumber}, ${crl.revoked.length} revoked, next update ${crl.nextUpdate?.toISOString()}${opts.out ? `; also written to ${opts.out}${opts.der ? ' (DER)' : ''}` : ''}`);
    });

  certs
    .command('list')
    .description('list the certificates in the PKI directory with serial, expiry and status (valid, expired, not-yet-valid, revoked)')
    .option('-d, --dir <dir>', 'PKI directory', 'certs-dev')
    .option('--all', 'also list certificates replaced by renewals (archive/)')
    .option('--json', 'print as JSON')
    .action(async (opts: { dir: string; all?: boolean; json?: boolean }) => {
      requirePki(opts.dir);
      const certsList = await listCertificates(opts.dir, { archived: !!opts.all });
      if (opts.json) return void json(certsList);
      const rows = certsList.map((c) => [c.kind, c.archived ? `(${c.name})` : c.name, c.subject, c.serial, c.publicKey, c.notAfter.toISOString().slice(0, 10), c.status]);
      const head = ['KIND', 'NAME', 'SUBJECT', 'SERIAL', 'KEY', 'EXPIRES', 'STATUS'];
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
      for (const r of [head, ...rows]) say(r.map((c, i) => String(c).padEnd(widths[i] as number)).join('  ').trimEnd());
    });
}
