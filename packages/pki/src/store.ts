/**
 * The on-disk PKI directory used by `bastion certs init|issue|list` and by the broker on
 * first start:
 *
 *   <dir>/ca.pem, ca-key.pem          the CA (ca.pem is written last: its presence means "initialised")
 *   <dir>/server.pem, server-key.pem  the broker's TLS server certificate
 *   <dir>/crl.pem, revoked.json       the CRL and the revocation list it is built from
 *   <dir>/clients/<name>.pem, <name>-key.pem
 *   <dir>/servers/<name>.pem, <name>-key.pem   further server certificates (`bastion certs issue server NAME`)
 *   <dir>/archive/<name>-<serial>.pem          certificates replaced by a renewal (never their keys)
 *
 * Keys are written 0600, everything else 0644, all atomically; directories are created 0700.
 * The CA key may be stored encrypted (PKCS#8, AES-256-CBC); its passphrase then comes from
 * `BASTION_CA_PASSPHRASE` (or the `passphrase` option), never from a file.
 */
import { chmod, readFile, readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createCA, openCA } from './ca.js';
import { createCRL, CRL_DEFAULT_LIFETIME_MS, parseCRL, REVOCATION_REASON_CODES, type RevocationReason, type RevokedEntry } from './crl.js';
import { PkiError } from './errors.js';
import { exists, PRIVATE_FILE_MODE, withDirLock, writePrivateFile, writePublicFile } from './files.js';
import { certificateInfo, type CertificateInfo } from './info.js';
import { issueClientCert, issueServerCert, type ClientCertOptions } from './issue.js';
import { encryptPrivateKeyPem, isEncryptedKeyPem, type KeyType } from './keys.js';
import { ipToBytes } from './names.js';
import { normalizeSerial } from './serial.js';
import type { CertificateAuthority, Issued } from './types.js';
import { children, decodeOid, readRoot } from './der.js';
import { parseCertificate } from './x509.js';

const OID_EXT_KEY_USAGE = '2.5.29.37';
const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

/** Environment variable holding the passphrase of an encrypted CA key. */
export const CA_PASSPHRASE_ENV = 'BASTION_CA_PASSPHRASE';

/** How to open the CA key: an explicit passphrase, else `BASTION_CA_PASSPHRASE`. */
export interface CaAccess {
  passphrase?: string;
}

export function caPassphrase(opts: CaAccess = {}): string | undefined {
  const p = opts.passphrase ?? process.env[CA_PASSPHRASE_ENV];
  return p === undefined || p === '' ? undefined : p;
}

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
  serversDir: string;
  archiveDir: string;
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
    serversDir: join(d, 'servers'),
    archiveDir: join(d, 'archive'),
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

export async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Loads and checks the CA of a PKI directory (certificate and key must match). An encrypted key
 * is opened with `opts.passphrase` or `BASTION_CA_PASSPHRASE`.
 */
export async function loadCA(dir: string, opts: CaAccess = {}): Promise<CertificateAuthority> {
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
  const passphrase = caPassphrase(opts);
  const ca: CertificateAuthority = passphrase !== undefined && isEncryptedKeyPem(keyPem) ? { certPem, keyPem, passphrase } : { certPem, keyPem };
  openCA(ca); // throws BAD_CA / KEY_MISMATCH / BAD_KEY (encrypted, wrong passphrase) with guidance
  return ca;
}

export async function listClientNames(clientsDir: string): Promise<string[]> {
  return pemNames(await readdirOrEmpty(clientsDir)).filter((n) => CLIENT_NAME.test(n));
}

export interface InitDevPkiOptions {
  /** DNS names and IP literals for the server certificate. Default ['localhost', '127.0.0.1', '::1']. */
  serverNames?: string[];
  /** Client certificates to issue. Default ['device-1', 'device-2']. */
  clients?: string[];
  /** Re-create everything even if ca.pem exists. */
  force?: boolean;
  /** Key type of the CA (default 'rsa-3072'). */
  caKeyType?: KeyType;
  /** Key type of the server and client certificates (default 'rsa-2048'). */
  keyType?: KeyType;
  /** Use this existing CA instead of creating one (its key may be encrypted: set `passphrase`). */
  ca?: CertificateAuthority;
  /** Store the CA key encrypted with this passphrase (at least 8 characters). */
  caPassphrase?: string;
  /** Lifetime of the first CRL in days (default 7). */
  crlDays?: number;
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
    let authority: CertificateAuthority;
    if (opts.ca) {
      const given = opts.ca;
      const passphrase = given.passphrase ?? (isEncryptedKeyPem(given.keyPem) ? caPassphrase({ passphrase: opts.caPassphrase }) : undefined);
      authority = passphrase === undefined ? { certPem: given.certPem, keyPem: given.keyPem } : { ...given, passphrase };
      openCA(authority); // refuse a non-CA, a mismatched key or a weak key before writing anything
    } else {
      const ca = createCA({ commonName: DEV_CA_COMMON_NAME, organization: 'Bastion', ...(opts.caKeyType ? { keyType: opts.caKeyType } : {}) });
      authority = { certPem: ca.certPem, keyPem: ca.keyPem };
    }
    const keyType = opts.keyType ? { keyType: opts.keyType } : {};
    const server = issueServerCert(authority, { commonName: dnsNames[0] ?? serverNames[0] ?? 'localhost', dnsNames, ipAddresses, ...keyType });
    let storedKey = authority.keyPem;
    if (opts.caPassphrase !== undefined && !isEncryptedKeyPem(storedKey)) storedKey = encryptPrivateKeyPem(storedKey, opts.caPassphrase);

    // ca.pem goes last: until it exists the directory counts as not initialised and a
    // crashed run is simply redone.
    await writePrivateFile(paths.caKey, storedKey);
    await writePrivateFile(paths.serverKey, server.keyPem);
    await writePublicFile(paths.serverCert, server.certPem);
    for (const name of clients) {
      const issued = issueClientCert(authority, { commonName: name, ...keyType });
      const { certPath, keyPath } = clientPaths(paths.dir, name);
      await writePrivateFile(keyPath, issued.keyPem);
      await writePublicFile(certPath, issued.certPem);
    }
    await writePublicFile(paths.revoked, '[]\n');
    await writePublicFile(paths.crl, createCRL(authority, [], crlLifetime(opts.crlDays)));
    await writePublicFile(paths.caCert, authority.certPem);
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
  opts: IssueClientToDirOptions & CaAccess = {},
): Promise<{ certPath: string; keyPath: string; issued: Issued }> {
  const { certPath, keyPath } = clientPaths(dir, name);
  const { force, commonName, passphrase, ...rest } = opts;
  return withDirLock(pkiPaths(dir).dir, async () => {
    if (!force && ((await exists(certPath)) || (await exists(keyPath)))) {
      throw new PkiError(
        'BASTION_ERR_PKI_EXISTS',
        `A client certificate named ${JSON.stringify(name)} already exists (${certPath}). Choose another name, or re-issue it with force (--force); consider revoking the old one.`,
      );
    }
    const ca = await loadCA(dir, { passphrase });
    const issued = issueClientCert(ca, { ...rest, commonName: commonName ?? name });
    await writePrivateFile(keyPath, issued.keyPem);
    await writePublicFile(certPath, issued.certPem);
    return { certPath, keyPath, issued };
  });
}

/** Where a certificate stands: what `bastion certs list` shows for lifecycle tracking (ID.AM-4). */
export type CertificateStatus = 'valid' | 'expired' | 'not-yet-valid' | 'revoked';

export type ListedCertificate = {
  name: string;
  kind: 'ca' | 'server' | 'client';
  path: string;
  status: CertificateStatus;
  /** Present for revoked certificates. */
  revocation?: { revokedAt: Date; reason?: RevocationReason };
  /** True for a certificate replaced by a renewal (archive/). */
  archived?: boolean;
} & CertificateInfo;

export interface ListCertificatesOptions {
  /** Also list certificates that renewals replaced (archive/). */
  archived?: boolean;
  /** The time statuses are computed for (default: now). */
  now?: Date;
}

function pemNames(entries: string[]): string[] {
  return entries
    .filter((f) => f.endsWith('.pem') && !f.endsWith('-key.pem'))
    .map((f) => f.slice(0, -'.pem'.length))
    .sort();
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Names of the server certificates in servers/ (not the main server.pem). */
export async function listServerNames(serversDir: string): Promise<string[]> {
  return pemNames(await readdirOrEmpty(serversDir)).filter((n) => CLIENT_NAME.test(n));
}

/**
 * Lists ca.pem, server.pem, servers/*.pem and clients/*.pem (and archive/*.pem on request) with
 * their details and status: revoked (from revoked.json), expired, not yet valid or valid.
 * No private material is read.
 */
export async function listCertificates(dir: string, opts: ListCertificatesOptions = {}): Promise<ListedCertificate[]> {
  const paths = pkiPaths(dir);
  const now = (opts.now ?? new Date()).getTime();
  const files: Array<{ name: string; kind: ListedCertificate['kind'] | undefined; path: string; archived?: boolean }> = [
    { name: 'ca', kind: 'ca', path: paths.caCert },
    { name: 'server', kind: 'server', path: paths.serverCert },
    ...(await listServerNames(paths.serversDir)).map((name) => ({ name, kind: 'server' as const, path: join(paths.serversDir, `${name}.pem`) })),
    ...(await listClientNames(paths.clientsDir)).map((name) => ({ name, kind: 'client' as const, path: join(paths.clientsDir, `${name}.pem`) })),
  ];
  if (opts.archived) {
    for (const name of pemNames(await readdirOrEmpty(paths.archiveDir))) {
      files.push({ name, kind: undefined, path: join(paths.archiveDir, `${name}.pem`), archived: true });
    }
  }
  const revoked = new Map((await readRevoked(dir)).map((e) => [e.serial, e]));
  const out: ListedCertificate[] = [];
  for (const f of files) {
    const pem = await readText(f.path);
    if (pem === undefined) continue;
    let info: CertificateInfo;
    let kind = f.kind;
    try {
      info = certificateInfo(pem);
      kind ??= kindOf(pem);
    } catch (err) {
      throw new PkiError('BASTION_ERR_PKI_BAD_CERT', `${f.path} is not a readable certificate. Re-issue it or remove the file.`, { cause: err });
    }
    const r = revoked.get(info.serial);
    const status: CertificateStatus = r
      ? 'revoked'
      : now > info.notAfter.getTime()
        ? 'expired'
        : now < info.notBefore.getTime()
          ? 'not-yet-valid'
          : 'valid';
    const entry: ListedCertificate = { name: f.name, kind, path: f.path, status, ...info };
    if (r) entry.revocation = r.reason === undefined ? { revokedAt: r.revokedAt } : { revokedAt: r.revokedAt, reason: r.reason };
    if (f.archived) entry.archived = true;
    out.push(entry);
  }
  return out;
}

/** ca, server (extKeyUsage serverAuth) or client: how an archived certificate is listed. */
function kindOf(pem: string): ListedCertificate['kind'] {
  const cert = parseCertificate(pem);
  if (cert.isCA) return 'ca';
  const eku = cert.extensions.get(OID_EXT_KEY_USAGE);
  if (!eku) return 'client';
  const oids = children(eku.value, readRoot(eku.value)).map((t) => decodeOid(eku.value, t));
  return oids.includes(OID_SERVER_AUTH) ? 'server' : 'client';
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

export async function writeRevoked(dir: string, revoked: RevokedEntry[]): Promise<void> {
  const stored: StoredRevocation[] = revoked.map((e) => ({
    serial: e.serial,
    revokedAt: e.revokedAt.toISOString(),
    ...(e.reason !== undefined ? { reason: e.reason } : {}),
  }));
  await writePublicFile(pkiPaths(dir).revoked, `${JSON.stringify(stored, null, 2)}\n`);
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** thisUpdate now, nextUpdate `days` later (default 7). */
export function crlLifetime(days: number | undefined): { thisUpdate: Date; nextUpdate: Date } {
  if (days !== undefined && (!Number.isFinite(days) || days <= 0 || days > 3660)) {
    throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', `The CRL lifetime must be from a fraction of a day to 3660 days, got ${String(days)}.`);
  }
  const thisUpdate = new Date();
  return { thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + (days === undefined ? CRL_DEFAULT_LIFETIME_MS : days * DAY_MS)) };
}

export interface CrlOptions extends CaAccess {
  /** Days until the CRL's nextUpdate (default 7). */
  crlDays?: number;
}

export async function writeCRL(dir: string, ca: CertificateAuthority, revoked: RevokedEntry[], opts: CrlOptions = {}): Promise<string> {
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
  // Strictly increasing, so a relying party can refuse an older CRL replayed in place of this one.
  const crlNumber = Math.max(previous + 1, Math.floor(Date.now() / 1000));
  await writePublicFile(paths.crl, createCRL(ca, revoked, { ...crlLifetime(opts.crlDays), crlNumber }));
  return paths.crl;
}

/**
 * Re-signs crl.pem from revoked.json with a fresh thisUpdate/nextUpdate (7 days unless
 * `crlDays`) and a higher CRL number. A CRL past its nextUpdate makes OpenSSL reject every
 * client, and Bastion's revocation check refuse or warn, so re-sign it well before that.
 */
export async function updateCRLInDir(dir: string, opts: CrlOptions = {}): Promise<{ crlPath: string; revoked: RevokedEntry[] }> {
  return withDirLock(pkiPaths(dir).dir, async () => {
    const ca = await loadCA(dir, opts);
    const revoked = await readRevoked(dir);
    return { crlPath: await writeCRL(dir, ca, revoked, opts), revoked };
  });
}

function looksLikeFile(target: string): boolean {
  return target.includes('/') || target.includes('\\') || /\.(pem|crt|cer|der)$/i.test(target);
}

/**
 * Finds the serial a revocation target names: a certificate file (PEM or DER; it must be issued
 * by this CA), a certificate name in the directory ('server', a client, a server in servers/),
 * or a hex serial.
 */
export async function resolveRevocationTarget(dir: string, target: string, ca: CertificateAuthority): Promise<{ serial: string; subject?: string; path?: string }> {
  const paths = pkiPaths(dir);
  let path: string | undefined;
  if (looksLikeFile(target)) {
    path = resolve(target);
  } else if (target === 'server') {
    path = paths.serverCert;
  } else if (CLIENT_NAME.test(target)) {
    for (const candidate of [join(paths.clientsDir, `${target}.pem`), join(paths.serversDir, `${target}.pem`)]) {
      if (await exists(candidate)) {
        path = candidate;
        break;
      }
    }
  }
  if (path !== undefined) {
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && looksLikeFile(target)) {
        throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', `No certificate file ${path}.`);
      }
      throw err;
    }
    const cert = parseCertificate(bytes);
    if (!cert.issuerDer.equals(parseCertificate(ca.certPem).subjectDer)) {
      throw new PkiError(
        'BASTION_ERR_PKI_BAD_INPUT',
        `${path} was issued by "${certificateInfo(bytes).issuer}", not by this directory's CA; revoke it with the CA that issued it.`,
      );
    }
    return { serial: cert.serial, subject: certificateInfo(bytes).subject, path };
  }
  if (/^(0x)?[0-9a-fA-F:]+$/.test(target)) return { serial: normalizeSerial(target) };
  throw new PkiError(
    'BASTION_ERR_PKI_BAD_INPUT',
    `No certificate named ${JSON.stringify(target)} in ${paths.dir}; pass a certificate name, a certificate file or a hex serial (see \`bastion certs list\`).`,
  );
}

export interface RevokeResult {
  entry: RevokedEntry;
  crlPath: string;
  /** True when the serial was already listed (revoked.json is then unchanged). */
  alreadyRevoked: boolean;
  subject?: string;
}

/**
 * Revokes a certificate by name (clients/<name>.pem, servers/<name>.pem or 'server'), by
 * certificate file, or by hex serial; records it in revoked.json and re-signs crl.pem (written
 * atomically, so a broker watching it reloads it whole). Revoking an already revoked serial
 * changes nothing in revoked.json.
 */
export async function revokeInDir(dir: string, nameOrSerial: string, reason?: RevocationReason, opts: CrlOptions = {}): Promise<RevokeResult> {
  if (reason !== undefined && !(reason in REVOCATION_REASON_CODES)) {
    throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', `Unknown revocation reason ${JSON.stringify(reason)}. Use one of: ${Object.keys(REVOCATION_REASON_CODES).join(', ')}.`);
  }
  const paths = pkiPaths(dir);
  return withDirLock(paths.dir, async () => {
    const ca = await loadCA(dir, opts);
    const target = await resolveRevocationTarget(dir, nameOrSerial, ca);
    const revoked = await readRevoked(dir);
    let entry = revoked.find((e) => e.serial === target.serial);
    const alreadyRevoked = entry !== undefined;
    if (!entry) {
      entry = { serial: target.serial, revokedAt: new Date() };
      if (reason !== undefined) entry.reason = reason;
      revoked.push(entry);
      await writeRevoked(dir, revoked);
    }
    const out: RevokeResult = { entry, crlPath: await writeCRL(dir, ca, revoked, opts), alreadyRevoked };
    if (target.subject !== undefined) out.subject = target.subject;
    return out;
  });
}
