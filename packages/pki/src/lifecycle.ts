/**
 * Certificate lifecycle in the PKI directory beyond first issue: server certificates, renewal
 * with a new key (RC.RP-5), and the archive that keeps every replaced certificate listed (ID.AM-4).
 *
 * Replacing a certificate writes the new key first and the certificate second, each atomically, so
 * a broker watching the files sees at worst a short cert/key mismatch (which it waits out) and
 * never a torn file. The replaced certificate goes to archive/<name>-<serial>.pem; its key is
 * overwritten, never archived.
 */
import { createPublicKey } from 'node:crypto';
import { join } from 'node:path';
import type { RevocationReason, RevokedEntry } from './crl.js';
import { REVOCATION_REASON_CODES } from './crl.js';
import { PkiError } from './errors.js';
import { exists, withDirLock, writePrivateFile, writePublicFile } from './files.js';
import { issueClientCert, issueServerCert, type ServerCertOptions } from './issue.js';
import { keyTypeOf, type KeyType } from './keys.js';
import { ipToBytes } from './names.js';
import {
  assertClientName,
  loadCA,
  pkiPaths,
  readRevoked,
  readText,
  writeCRL,
  writeRevoked,
  type CaAccess,
  type CrlOptions,
} from './store.js';
import type { CertificateAuthority, Issued } from './types.js';
import { parseCertificate, type ParsedCertificate } from './x509.js';

const DAY_MS = 24 * 60 * 60 * 1000;

export type CertificateKind = 'server' | 'client';

/** server.pem for the name 'server' (or none), servers/<name>.pem otherwise. */
export function serverPaths(dir: string, name?: string): { certPath: string; keyPath: string } {
  const paths = pkiPaths(dir);
  if (name === undefined || name === 'server') return { certPath: paths.serverCert, keyPath: paths.serverKey };
  assertClientName(name);
  return { certPath: join(paths.serversDir, `${name}.pem`), keyPath: join(paths.serversDir, `${name}-key.pem`) };
}

async function archive(dir: string, name: string, certPath: string): Promise<string | undefined> {
  const old = await readText(certPath);
  if (old === undefined) return undefined;
  let serial = 'unreadable';
  try {
    serial = parseCertificate(old).serial;
  } catch {
    /* archived under a placeholder: it is kept for the record, not trusted */
  }
  const target = join(pkiPaths(dir).archiveDir, `${name}-${serial}.pem`);
  await writePublicFile(target, old);
  return target;
}

async function install(dir: string, name: string, paths: { certPath: string; keyPath: string }, issued: Issued): Promise<string | undefined> {
  const archived = await archive(dir, name, paths.certPath);
  await writePrivateFile(paths.keyPath, issued.keyPem);
  await writePublicFile(paths.certPath, issued.certPem);
  return archived;
}

export type IssueServerToDirOptions = Omit<ServerCertOptions, 'commonName'> &
  CaAccess & {
    /** Default: the first DNS name, else the first IP address. */
    commonName?: string;
    /** Replace an existing certificate of that name (the old one is archived). */
    force?: boolean;
  };

/**
 * Issues a TLS server certificate from the directory's CA into server.pem (name omitted or
 * 'server') or servers/<name>.pem, with the given DNS and IP subject alternative names.
 */
export async function issueServerToDir(
  dir: string,
  name: string | undefined,
  opts: IssueServerToDirOptions,
): Promise<{ certPath: string; keyPath: string; issued: Issued; archived?: string }> {
  const paths = serverPaths(dir, name);
  const { force, commonName, passphrase, ...rest } = opts;
  const cn = commonName ?? rest.dnsNames?.[0] ?? rest.ipAddresses?.[0];
  if (cn === undefined) {
    throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', 'A server certificate needs at least one DNS name or IP address (e.g. --dns mqtt.example.com --ip 10.0.0.5).');
  }
  return withDirLock(pkiPaths(dir).dir, async () => {
    if (!force && ((await exists(paths.certPath)) || (await exists(paths.keyPath)))) {
      throw new PkiError(
        'BASTION_ERR_PKI_EXISTS',
        `A server certificate already exists at ${paths.certPath}. Use force (--force) to replace it (the old one is archived), or \`bastion certs renew ${name ?? 'server'}\` to renew it with a new key.`,
      );
    }
    const ca = await loadCA(dir, { passphrase });
    const issued = issueServerCert(ca, { ...rest, commonName: cn });
    const archived = await install(dir, name ?? 'server', paths, issued);
    return archived === undefined ? { ...paths, issued } : { ...paths, issued, archived };
  });
}

export interface RenewOptions extends CrlOptions {
  /** Which certificate a name means when both a client and a server have it. */
  kind?: CertificateKind;
  /** Default: the lifetime of the certificate being renewed. */
  validityDays?: number;
  /** Default: the key type of the certificate being renewed (rsa-2048 when it cannot be reused). */
  keyType?: KeyType;
  /** Revoke the replaced certificate with this reason (e.g. 'superseded', or 'keyCompromise'). */
  revokeOld?: RevocationReason;
}

export interface RenewResult {
  kind: CertificateKind;
  certPath: string;
  keyPath: string;
  issued: Issued;
  previous: { serial: string; notAfter: Date; archived?: string };
  /** Present when `revokeOld` was given. */
  revoked?: RevokedEntry;
}

async function locate(dir: string, name: string, kind: CertificateKind | undefined): Promise<{ kind: CertificateKind; certPath: string; keyPath: string }> {
  const paths = pkiPaths(dir);
  if (name === 'ca') {
    throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', 'The CA is not renewed in place: create a new CA and re-issue the certificates it signs.');
  }
  if (name === 'server' && kind !== 'client') return { kind: 'server', certPath: paths.serverCert, keyPath: paths.serverKey };
  assertClientName(name);
  const client = { kind: 'client' as const, certPath: join(paths.clientsDir, `${name}.pem`), keyPath: join(paths.clientsDir, `${name}-key.pem`) };
  const server = { kind: 'server' as const, ...serverPaths(dir, name) };
  const found = [client, server].filter((c) => kind === undefined || c.kind === kind);
  const present: Array<typeof client | typeof server> = [];
  for (const c of found) if (await exists(c.certPath)) present.push(c);
  if (present.length === 0) throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', `No certificate named ${JSON.stringify(name)} in ${paths.dir} (see \`bastion certs list\`).`);
  if (present.length > 1) throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', `Both a client and a server certificate are named ${JSON.stringify(name)}; say which (--kind client or --kind server).`);
  return present[0] as typeof client | typeof server;
}

function attribute(cert: ParsedCertificate, shortName: string): string | undefined {
  for (const rdn of cert.subject) for (const a of rdn) if (a.shortName === shortName && !a.hex) return a.value;
  return undefined;
}

function reusableKeyType(cert: ParsedCertificate): KeyType | undefined {
  try {
    return keyTypeOf(createPublicKey({ key: cert.spkiDer, format: 'der', type: 'spki' }));
  } catch {
    return undefined;
  }
}

function reissue(ca: CertificateAuthority, kind: CertificateKind, old: ParsedCertificate, opts: RenewOptions): Issued {
  const lifetimeDays = Math.max(1, Math.round((old.notAfter.getTime() - old.notBefore.getTime()) / DAY_MS));
  const common = {
    validityDays: opts.validityDays ?? lifetimeDays,
    ...(opts.keyType ?? reusableKeyType(old) ? { keyType: (opts.keyType ?? reusableKeyType(old)) as KeyType } : {}),
  };
  const cn = attribute(old, 'CN');
  const alt = old.altNames;
  if (kind === 'server') {
    const commonName = cn ?? alt.dnsNames[0] ?? alt.ipAddresses[0];
    if (commonName === undefined) throw new PkiError('BASTION_ERR_PKI_BAD_CERT', 'The server certificate has neither a common name nor a SAN to renew it for.');
    return issueServerCert(ca, { commonName, dnsNames: [...alt.dnsNames], ipAddresses: alt.ipAddresses.filter((ip) => ipToBytes(ip)), ...common });
  }
  if (cn === undefined) throw new PkiError('BASTION_ERR_PKI_BAD_CERT', 'The client certificate has no common name to renew it for.');
  const ou = attribute(old, 'OU');
  return issueClientCert(ca, {
    commonName: cn,
    dnsNames: [...alt.dnsNames],
    uris: [...alt.uris],
    emails: [...alt.emails],
    ...(ou === undefined ? {} : { organizationalUnit: ou }),
    ...common,
  });
}

/**
 * Renews a certificate of the directory ('server', a client name, or a server in servers/): a new
 * key and a new serial for the same subject and SANs, valid for the same number of days unless
 * `validityDays`. The replaced certificate is archived, and revoked too when `revokeOld` says why
 * (its holder is then disconnected by a broker that watches the CRL).
 */
export async function renewInDir(dir: string, name: string, opts: RenewOptions = {}): Promise<RenewResult> {
  if (opts.revokeOld !== undefined && !(opts.revokeOld in REVOCATION_REASON_CODES)) {
    throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', `Unknown revocation reason ${JSON.stringify(opts.revokeOld)}. Use one of: ${Object.keys(REVOCATION_REASON_CODES).join(', ')}.`);
  }
  return withDirLock(pkiPaths(dir).dir, async () => {
    const ca = await loadCA(dir, opts);
    const where = await locate(dir, name, opts.kind);
    const oldPem = (await readText(where.certPath)) as string;
    const old = parseCertificate(oldPem);
    if (!old.issuerDer.equals(parseCertificate(ca.certPem).subjectDer)) {
      throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', `${where.certPath} was not issued by this directory's CA; it cannot be renewed here.`);
    }
    const issued = reissue(ca, where.kind, old, opts);
    const archived = await install(dir, name, where, issued);
    const out: RenewResult = {
      kind: where.kind,
      certPath: where.certPath,
      keyPath: where.keyPath,
      issued,
      previous: archived === undefined ? { serial: old.serial, notAfter: old.notAfter } : { serial: old.serial, notAfter: old.notAfter, archived },
    };
    if (opts.revokeOld !== undefined) {
      const revoked = await readRevoked(dir);
      let entry = revoked.find((e) => e.serial === old.serial);
      if (!entry) {
        entry = { serial: old.serial, revokedAt: new Date(), reason: opts.revokeOld };
        revoked.push(entry);
        await writeRevoked(dir, revoked);
      }
      await writeCRL(dir, ca, revoked, opts);
      out.revoked = entry;
    }
    return out;
  });
}
