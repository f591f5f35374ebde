/**
 * The on-disk PKI directory used by `bastion certs init|issue|list` and by the broker on
 * first start:
 *
 *   <dir>/ca.pem, ca-key.pem          the CA (ca.pem is written last: its presence means "initialised")
 *   <dir>/server.pem, server-key.pem  the broker's TLS server certificate
 *   <dir>/crl.pem, revoked.json       the CRL and the revocation list it is built from
 *   <dir>/clients/<name>.pem, <name>-key.pem
 *
 * Keys are written 0600, everything else 0644, all atomically; directories are created 0700.
 */
import { chmod, readFile, readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createCA, openCA } from './ca.js';
import { createCRL, parseCRL, REVOCATION_REASON_CODES, type RevocationReason, type RevokedEntry } from './crl.js';
import { PkiError } from './errors.js';
import { exists, PRIVATE_FILE_MODE, withDirLock, writePrivateFile, writePublicFile } from './files.js';
import { certificateInfo, type CertificateInfo } from './info.js';
import { issueClientCert, issueServerCert, type ClientCertOptions } from './issue.js';
import type { KeyType } from './keys.js';
import { ipToBytes } from './names.js';
import { normalizeSerial } from './serial.js';
import type { CertificateAuthority, Issued } from './types.js';

export interface PkiPaths {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  crl: string;
  /** revoked.json: JSON array of { serial, revokedAt (ISO 8601), reason? }. */
  revoked: string;
  clientsDir: string;
}

export const DEFAULT_SERVER_NAMES: readonly string[] = ['localhost', '127.0.0.1', '::1'];
export const DEFAULT_CLIENTS: readonly string[] = ['device-1', 'device-2'];
export const DEV_CA_COMMON_NAME = 'Bastion Development CA';

const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function pkiPaths(dir: string): PkiPaths {
  const d = resolve(dir);
  return {
    dir: d,
    caCert: join(d, 'ca.pem'),
    caKey: join(d, 'ca-key.pem'),
    serverCert: join(d, 'server.pem'),
    serverKey: join(d, 'server-key.pem'),
    crl: join(d, 'crl.pem'),
    revoked: join(d, 'revoked.json'),
    clientsDir: join(d, 'clients'),
  };
}

/** Checks a client name is safe to use as a file name (no path separators, no leading dot). */
export function assertClientName(name: string): void {
  if (typeof name !== 'string' || !CLIENT_NAME.test(name) || name.endsWith('-key')) {
    throw new PkiError(
      'BASTION_ERR_PKI_BAD_NAME',
      `Invalid client name ${JSON.stringify(name)}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit and not ending in "-key".`,
    );
  }
}

export function clientPaths(dir: string, name: string): { certPath: string; keyPath: string } {
  assertClientName(name);
  const { clientsDir } = pkiPaths(dir);
  return { certPath: join(clientsDir, `${name}.pem`), keyPath: join(clientsDir, `${name}-key.pem`) };
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Loads and checks the CA of a PKI directory (certificate and key must match). */
export async function loadCA(dir: string): Promise<CertificateAuthority> {
  const paths = pkiPaths(dir);
  const certPem = await readText(paths.caCert);
  const keyPem = await readText(paths.caKey);
  if (certPem === undefined || keyPem === undefined) {
    throw new PkiError(
      'BASTION_ERR_PKI_NO_CA',
      `No CA found in ${paths.dir} (missing ${certPem === undefined ? 'ca.pem' : 'ca-key.pem'}). Run \`bastion certs init --dir ${paths.dir}\` to create a development PKI, or copy your CA's ca.pem and ca-key.pem there.`,
    );
  }
  // Keys must never be readable by others; tighten a loosened file rather than keep using it as is.
  if (process.platform !== 'win32') {
    const st = await stat(paths.caKey);
    if ((st.mode & 0o077) !== 0) await chmod(paths.caKey, PRIVATE_FILE_MODE);
  }
  const ca = { certPem, keyPem };
  openCA(ca); // throws BAD_CA / KEY_MISMATCH with guidance
  return ca;
}

async function listClientNames(clientsDir: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(clientsDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return entries
    .filter((f) => f.endsWith('.pem') && !f.endsWith('-key.pem'))
    .map((f) => f.slice(0, -'.pem'.length))
    .filter((n) => CLIENT_NAME.test(n))
    .sort();
}

export interface InitDevPkiOptions {
  /** DNS names and IP literals for the server certificate. Default ['localhost', '127.0.0.1', '::1']. */
  serverNames?: string[];
  /** Client certificates to issue. Default ['device-1', 'device-2']. */
  clients?: string[];
  /** Re-create everything even if ca.pem exists. */
  force?: boolean;
  /** Key type of the CA (default 'rsa-3072'); leaf keys are 'rsa-2048'. */
  caKeyType?: KeyType;
}

export interface InitDevPkiResult {
  created: boolean;
  paths: PkiPaths;
  clients: string[];
}

/**
 * Creates a development PKI (CA, server certificate, client certificates, empty CRL).
 * Idempotent: when ca.pem already exists and `force` is not set nothing is written and
 * `created` is false (`clients` then lists the client certificates already present).
 */
export async function initDevPki(dir: string, opts: InitDevPkiOptions = {}): Promise<InitDevPkiResult> {
  const paths = pkiPaths(dir);
  const serverNames = [...new Set(opts.serverNames ?? DEFAULT_SERVER_NAMES)];
  const clients = [...new Set(opts.clients ?? DEFAULT_CLIENTS)];
  clients.forEach(assertClientName);
  if (serverNames.length === 0) {
    throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', 'serverNames must contain at least one DNS name or IP address.');
  }
  const dnsNames = serverNames.filter((n) => !ipToBytes(n));
  const ipAddresses = serverNames.filter((n) => ipToBytes(n));

  return withDirLock(paths.dir, async () => {
    if (!opts.force && (await exists(paths.caCert))) {
      return { created: false, paths, clients: await listClientNames(paths.clientsDir) };
    }
    const ca = createCA({ commonName: DEV_CA_COMMON_NAME, organization: 'Bastion', ...(opts.caKeyType ? { keyType: opts.caKeyType } : {}) });
    const authority: CertificateAuthority = { certPem: ca.certPem, keyPem: ca.keyPem };
    const server = issueServerCert(authority, { commonName: dnsNames[0] ?? serverNames[0] ?? 'localhost', dnsNames, ipAddresses });

    // ca.pem goes last: until it exists the directory counts as not initialised and a
    // crashed run is simply redone.
    await writePrivateFile(paths.caKey, ca.keyPem);
    await writePrivateFile(paths.serverKey, server.keyPem);
    await writePublicFile(paths.serverCert, server.certPem);
    for (const name of clients) {
      const issued = issueClientCert(authority, { commonName: name });
      const { certPath, keyPath } = clientPaths(paths.dir, name);
      await writePrivateFile(keyPath, issued.keyPem);
      await writePublicFile(certPath, issued.certPem);
    }
    await writePublicFile(paths.revoked, '[]\n');
    await writePublicFile(paths.crl, createCRL(authority, []));
    await writePublicFile(paths.caCert, ca.certPem);
    return { created: true, paths, clients };
  });
}

export type IssueClientToDirOptions = Omit<ClientCertOptions, 'commonName'> & {
  /** Default: the client name. */
  commonName?: string;
  /** Replace an existing certificate/key of the same name. */
  force?: boolean;
};

/** Issues a client certificate from the directory's CA into clients/<name>.pem and clients/<name>-key.pem. */
export async function issueClientToDir(
  dir: string,
  name: string,
  opts: IssueClientToDirOptions = {},
): Promise<{ certPath: string; keyPath: string; issued: Issued }> {
  const { certPath, keyPath } = clientPaths(dir, name);
  const { force, commonName, ...rest } = opts;
  return withDirLock(pkiPaths(dir).dir, async () => {
    if (!force && ((await exists(certPath)) || (await exists(keyPath)))) {
      throw new PkiError(
        'BASTION_ERR_PKI_EXISTS',
        `A client certificate named ${JSON.stringify(name)} already exists (${certPath}). Choose another name, or re-issue it with force (--force); consider revoking the old one.`,
      );
    }
    const ca = await loadCA(dir);
    const issued = issueClientCert(ca, { ...rest, commonName: commonName ?? name });
    await writePrivateFile(keyPath, issued.keyPem);
    await writePublicFile(certPath, issued.certPem);
    return { certPath, keyPath, issued };
  });
}

export type ListedCertificate = { name: string; kind: 'ca' | 'server' | 'client'; path: string } & CertificateInfo;

/** Lists ca.pem, server.pem and clients/*.pem with their details (no private material is read). */
export async function listCertificates(dir: string): Promise<ListedCertificate[]> {
  const paths = pkiPaths(dir);
  const files: Array<{ name: string; kind: ListedCertificate['kind']; path: string }> = [
    { name: 'ca', kind: 'ca', path: paths.caCert },
    { name: 'server', kind: 'server', path: paths.serverCert },
    ...(await listClientNames(paths.clientsDir)).map((name) => ({
      name,
      kind: 'client' as const,
      path: join(paths.clientsDir, `${name}.pem`),
    })),
  ];
  const out: ListedCertificate[] = [];
  for (const f of files) {
    const pem = await readText(f.path);
    if (pem === undefined) continue;
    let info: CertificateInfo;
    try {
      info = certificateInfo(pem);
    } catch (err) {
      throw new PkiError('BASTION_ERR_PKI_BAD_CERT', `${f.path} is not a readable certificate. Re-issue it or remove the file.`, { cause: err });
    }
    out.push({ ...f, ...info });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Revocation
// ---------------------------------------------------------------------------

interface StoredRevocation {
  serial: string;
  revokedAt: string;
  reason?: RevocationReason;
}

/** Reads revoked.json (an empty list when the file does not exist). */
export async function readRevoked(dir: string): Promise<RevokedEntry[]> {
  const path = pkiPaths(dir).revoked;
  const text = await readText(path);
  if (text === undefined) return [];
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new PkiError('BASTION_ERR_PKI_BAD_CRL', `${path} is not valid JSON. Fix or remove it (it lists revoked serials).`, { cause: err });
  }
  if (!Array.isArray(data)) throw new PkiError('BASTION_ERR_PKI_BAD_CRL', `${path} must contain a JSON array.`);
  return data.map((raw: unknown, i) => {
    const e = raw as Partial<StoredRevocation>;
    const revokedAt = new Date(String(e?.revokedAt));
    if (typeof e?.serial !== 'string' || Number.isNaN(revokedAt.getTime()) || (e.reason !== undefined && !(e.reason in REVOCATION_REASON_CODES))) {
      throw new PkiError('BASTION_ERR_PKI_BAD_CRL', `${path} entry ${i} must be { "serial": hex, "revokedAt": ISO date, "reason"?: reason }.`);
    }
    const entry: RevokedEntry = { serial: normalizeSerial(e.serial), revokedAt };
    if (e.reason !== undefined) entry.reason = e.reason;
    return entry;
  });
}

async function writeCRL(dir: string, ca: CertificateAuthority, revoked: RevokedEntry[]): Promise<string> {
  const paths = pkiPaths(dir);
  let previous = 0;
  const old = await readText(paths.crl);
  if (old !== undefined) {
    try {
      previous = parseCRL(old).crlNumber ?? 0;
    } catch {
      previous = 0; // a damaged CRL is simply replaced
    }
  }
  const crlNumber = Math.max(previous + 1, Math.floor(Date.now() / 1000));
  await writePublicFile(paths.crl, createCRL(ca, revoked, { crlNumber }));
  return paths.crl;
}

/**
 * Re-signs crl.pem from revoked.json with a fresh thisUpdate/nextUpdate (7 days) and a
 * higher CRL number. A CRL past its nextUpdate makes OpenSSL reject every client, so a
 * broker that uses crl.pem should call this on start and at least daily.
 */
export async function updateCRLInDir(dir: string): Promise<{ crlPath: string; revoked: RevokedEntry[] }> {
  return withDirLock(pkiPaths(dir).dir, async () => {
    const ca = await loadCA(dir);
    const revoked = await readRevoked(dir);
    return { crlPath: await writeCRL(dir, ca, revoked), revoked };
  });
}

/**
 * Revokes a certificate by client name (clients/<name>.pem) or by hex serial, records it in
 * revoked.json and re-signs crl.pem. Revoking an already revoked serial changes nothing in
 * revoked.json.
 */
export async function revokeInDir(
  dir: string,
  nameOrSerial: string,
  reason?: RevocationReason,
): Promise<{ entry: RevokedEntry; crlPath: string }> {
  if (reason !== undefined && !(reason in REVOCATION_REASON_CODES)) {
    throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', `Unknown revocation reason ${JSON.stringify(reason)}. Use one of: ${Object.keys(REVOCATION_REASON_CODES).join(', ')}.`);
  }
  const paths = pkiPaths(dir);
  return withDirLock(paths.dir, async () => {
    const ca = await loadCA(dir);
    let serial: string;
    const certPem = CLIENT_NAME.test(nameOrSerial) ? await readText(join(paths.clientsDir, `${nameOrSerial}.pem`)) : undefined;
    if (certPem !== undefined) {
      serial = certificateInfo(certPem).serial;
    } else if (/^(0x)?[0-9a-fA-F:]+$/.test(nameOrSerial)) {
      serial = normalizeSerial(nameOrSerial);
    } else {
      throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', `No client certificate named ${JSON.stringify(nameOrSerial)} in ${paths.clientsDir}; pass a client name or a hex serial (see \`bastion certs list\`).`);
    }
    const revoked = await readRevoked(dir);
    let entry = revoked.find((e) => e.serial === serial);
    if (!entry) {
      entry = { serial, revokedAt: new Date() };
      if (reason !== undefined) entry.reason = reason;
      revoked.push(entry);
      const stored: StoredRevocation[] = revoked.map((e) => ({
        serial: e.serial,
        revokedAt: e.revokedAt.toISOString(),
        ...(e.reason !== undefined ? { reason: e.reason } : {}),
      }));
      await writePublicFile(paths.revoked, `${JSON.stringify(stored, null, 2)}\n`);
    }
    return { entry, crlPath: await writeCRL(dir, ca, revoked) };
  });
}
