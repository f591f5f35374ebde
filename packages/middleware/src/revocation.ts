/**
 * Certificate revocation (RS.RP-1, PR.AC-1), checked by Bastion rather than by OpenSSL so that it
 * works the same on mqtts and wss, with several CAs, live:
 *
 * - every client certificate is checked right after the TLS handshake, before CONNECT is read,
 *   against the CRL of its issuer; each CRL was verified against its CA (signature, issuer, cRLSign)
 *   when it was loaded, and a CRL older than the one in force (a lower CRL number) is refused;
 * - a CRL past its `nextUpdate` is "stale": policy `refuse` turns away new clients of that CA,
 *   `warn` lets them in and raises `crl.stale` once;
 * - CRL files are reloaded when they change (directory watch, debounced, plus a slow poll), and on
 *   `reload()`; a file that does not verify raises `crl.rejected` and the previous CRL stays;
 * - when a reload or `revoke()` revokes a certificate, every connected client presenting it is
 *   disconnected at once, with a `certificate.revoked` event naming the serial;
 * - `revoke()`/`unrevoke()` are told to change listeners (`onChange`), which is how a cluster
 *   spreads them (packages/broker/src/controls/cluster.ts); CRL files are each node's own.
 *
 * Why not OpenSSL's own CRL check (`tls.crl`)? It is refuse-only when a CRL goes stale (every client
 * of every CA is rejected), it needs the listener's secure context rebuilt to change, it never
 * touches connections that are already up, and it needs a CRL for every CA in the store. Both can
 * be used together; `tls.crl` then applies first, at the handshake.
 */
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { BastionError, denyWith, deny } from '@bastion/core';
import type { BrokerContext, ClientCertificate, ClientInfo, ConnectionInfo, Middleware, Verdict } from '@bastion/core';

type Logger = BrokerContext['logger'];
import { certificateIssuerAndSerial, normalizeSerial, type RevocationReason } from '@bastion/pki';
import { caCertificatesOf, indexByIssuer, isRejection, verifyCrlFile } from './revocation/crl-set.js';
import type { CaCertificate, CrlRejection, LoadedCrl } from './revocation/crl-set.js';
import { readWithDigest, watchFiles, type FileWatch } from './revocation/watch.js';

export type StalePolicy = 'refuse' | 'warn';

export interface RevocationOptions {
  /** CRL files, PEM or DER, one per issuing CA. */
  crl: readonly string[];
  /** CA certificate files (PEM, bundles allowed) that sign the CRLs. */
  ca: readonly string[];
  /** A CRL past its nextUpdate: refuse new clients of that CA (default) or warn. */
  stale?: StalePolicy;
  /** A certificate whose issuer no CRL covers: allow (default) or refuse. */
  unknownIssuer?: 'allow' | 'refuse';
  /** Reload when the files change (default true). */
  watch?: boolean;
  /** Debounce of file events in ms (default 150). */
  debounceMs?: number;
  /** Poll interval in ms as a fallback for fs.watch (default 60 s; 0 = off). */
  pollMs?: number;
  /** Logger to use before `setup` gives the broker's. */
  logger?: Logger;
}

export interface ReloadResult {
  /** Files whose new contents are now in force. */
  readonly loaded: readonly string[];
  readonly unchanged: readonly string[];
  /** Files refused; for each, the previous CRL (if any) stays in force. */
  readonly rejected: readonly CrlRejection[];
  /** Serials revoked by this reload that were not before. */
  readonly newlyRevoked: readonly string[];
  /** Connected clients disconnected because their certificate is now revoked. */
  readonly disconnected: number;
}

export interface CrlStatus {
  readonly file: string;
  readonly issuer?: string;
  readonly crlNumber?: number;
  readonly thisUpdate?: Date;
  readonly nextUpdate?: Date;
  readonly revoked: number;
  readonly stale: boolean;
  /** Why the current file contents were refused (the previous CRL, if any, is in force). */
  readonly error?: string;
}

export interface RevocationCheck {
  readonly revoked: boolean;
  readonly serial: string;
  readonly issuer: string;
  readonly reason?: RevocationReason;
  readonly source?: 'crl' | 'api';
  /** The CRL of that issuer is past its nextUpdate. */
  readonly stale?: boolean;
  /** No CRL covers that issuer. */
  readonly unknownIssuer?: boolean;
}

export interface RevocationChangeOptions {
  /**
   * Who made the change, for events and change listeners (default 'api'). The cluster marks what it
   * applies for another node `cluster:<node id>` and never sends that back out.
   */
  readonly origin?: string;
}

/** A revocation made or lifted through the API, as told to `onChange` listeners. */
export type RevocationChange =
  | { readonly op: 'revoke'; readonly origin: string; readonly serial: string; readonly issuer?: string; readonly reason?: RevocationReason }
  | { readonly op: 'unrevoke'; readonly origin: string; readonly serial: string };

export interface Revocation extends Middleware {
  /** Load every CRL; throws `BASTION_ERR_REVOCATION` if any is refused (used at start: no silent gaps). */
  load(): Promise<ReloadResult>;
  /** Re-read the CA and CRL files; refused files keep their previous CRL; kicks newly revoked clients. */
  reload(): Promise<ReloadResult>;
  /**
   * Revoke a serial now, in memory, until the process ends (put it in the CRL to make it last).
   * Disconnects every connected client presenting it; returns how many.
   */
  revoke(serial: string, opts?: { issuer?: string; reason?: RevocationReason } & RevocationChangeOptions): number;
  /** Lift a revocation made with `revoke()` (a CRL entry is lifted only by a newer CRL). */
  unrevoke(serial: string, opts?: RevocationChangeOptions): boolean;
  /** Serials revoked through `revoke()` (normalized), with their issuer and reason. */
  revoked(): Array<{ serial: string; issuer?: string; reason?: RevocationReason }>;
  /** Hear every `revoke()`/`unrevoke()` (not CRL changes), synchronously. Returns an unsubscribe function. */
  onChange(listener: (change: RevocationChange) => void): () => void;
  check(cert: ClientCertificate): RevocationCheck;
  status(): CrlStatus[];
}

const CONTROL = 'RS.RP-1';
const SOURCE = 'revocation';
const MAX_TIMER = 2 ** 31 - 1;
const MAX_LISTED = 100;

export function revocation(opts: RevocationOptions): Revocation {
  const crlFiles = [...new Set(opts.crl.map((f) => path.resolve(f)))];
  const caFiles = [...new Set(opts.ca.map((f) => path.resolve(f)))];
  if (crlFiles.length === 0) throw new BastionError('BASTION_ERR_REVOCATION', 'revocation needs at least one CRL file');
  if (caFiles.length === 0) throw new BastionError('BASTION_ERR_REVOCATION', 'revocation needs the CA certificate(s) that sign the CRLs (revocation.ca, or tls.ca on the listeners)');
  const stalePolicy: StalePolicy = opts.stale ?? 'refuse';
  const refuseUnknown = opts.unknownIssuer === 'refuse';

  let logger: Logger | undefined = opts.logger;
  let ctx: BrokerContext | undefined;
  let cas: CaCertificate[] = [];
  let caDigest = '';
  const byFile = new Map<string, LoadedCrl>();
  /** Why a file's current contents were refused (reported once per distinct contents and reason). */
  const refused = new Map<string, { digest: string | undefined; message: string }>();
  let byIssuer = new Map<string, LoadedCrl>();
  const apiRevoked = new Map<string, { issuer: string | undefined; reason: RevocationReason | undefined }>();
  const staleNotified = new WeakSet<LoadedCrl>();
  const ids = new WeakMap<ClientCertificate, { issuer: string; serial: string } | null>();
  let loadedOnce = false;
  let watcher: FileWatch | undefined;
  let staleTimer: NodeJS.Timeout | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  let pending: Promise<ReloadResult> | undefined;
  const listeners = new Set<(change: RevocationChange) => void>();

  function tell(change: RevocationChange): void {
    for (const l of listeners) {
      try {
        l(change);
      } catch (err) {
        (ctx?.logger ?? logger)?.error({ err }, 'a revocation change listener failed');
      }
    }
  }

  const unknownIssuer = deny('certificate-rejected', 'no CRL covers the issuer of this certificate (revocation.unknownIssuer: refuse)');
  const unreadable = deny('certificate-rejected', 'the client certificate could not be read to check its revocation');

  function emit(type: string, level: 'info' | 'warn' | 'error', fields: Record<string, unknown>, who?: ClientInfo): void {
    const event = {
      type,
      time: Date.now(),
      control: CONTROL,
      source: SOURCE,
      ...(who ? { clientId: who.id || undefined, username: who.username, remoteAddress: who.remoteAddress, listener: who.listener } : {}),
      ...fields,
    };
    (ctx?.logger ?? logger)?.[level]({ securityEvent: event }, type);
    ctx?.events.emit(event);
  }

  /** Issuer and serial in pki's forms (the core's serial drops leading zero digits, CRLs do not). */
  function idOf(cert: ClientCertificate): { issuer: string; serial: string } | null {
    let id = ids.get(cert);
    if (id === undefined) {
      try {
        id = certificateIssuerAndSerial(cert.raw.raw);
      } catch {
        id = null;
      }
      ids.set(cert, id);
    }
    return id;
  }

  function isStale(crl: LoadedCrl, now = Date.now()): boolean {
    return crl.nextUpdate !== undefined && now > crl.nextUpdate.getTime();
  }

  function check(cert: ClientCertificate): RevocationCheck {
    const id = idOf(cert);
    if (id === null) return { revoked: false, serial: cert.serial, issuer: '', unknownIssuer: true };
    const api = apiRevoked.get(id.serial);
    if (api && (api.issuer === undefined || api.issuer === id.issuer)) {
      return { ...id, revoked: true, source: 'api', ...(api.reason ? { reason: api.reason } : {}) };
    }
    const crl = byIssuer.get(id.issuer);
    if (!crl) return { ...id, revoked: false, unknownIssuer: true };
    const entry = crl.revoked.get(id.serial);
    if (entry) return { ...id, revoked: true, source: 'crl', ...(entry.reason ? { reason: entry.reason } : {}), stale: isStale(crl) };
    return { ...id, revoked: false, stale: isStale(crl) };
  }

  function onConnection(conn: ConnectionInfo): Verdict {
    const cert = conn.certificate;
    if (cert === undefined) return undefined;
    const id = idOf(cert);
    if (id === null) return unreadable;
    const api = apiRevoked.get(id.serial);
    if (api && (api.issuer === undefined || api.issuer === id.issuer)) {
      return denyWith('certificate-rejected', `certificate ${id.serial} is revoked (${api.reason ?? 'unspecified'}; by the embedding API)`);
    }
    const crl = byIssuer.get(id.issuer);
    if (crl === undefined) return refuseUnknown ? unknownIssuer : undefined;
    const entry = crl.revoked.get(id.serial);
    if (entry !== undefined) return denyWith('certificate-rejected', `certificate ${id.serial} is revoked (${entry.reason ?? 'unspecified'}) by the CRL of ${crl.issuer}`);
    if (stalePolicy === 'refuse' && isStale(crl)) {
      return denyWith('certificate-rejected', `the CRL of ${crl.issuer} is stale (nextUpdate ${crl.nextUpdate?.toISOString()}); clients of that CA are refused until a fresh CRL is loaded`);
    }
    return undefined;
  }

  /** Disconnect every connected client whose certificate is revoked now. */
  function sweep(origin?: string): number {
    if (!ctx) return 0;
    const victims: Array<{ client: ClientInfo; result: RevocationCheck }> = [];
    for (const client of ctx.clients()) {
      if (client.certificate === undefined) continue;
      const result = check(client.certificate);
      if (result.revoked) victims.push({ client, result });
    }
    for (const { client, result } of victims) kick(client, result, origin);
    return victims.length;
  }

  function kick(client: ClientInfo, result: RevocationCheck, origin?: string): void {
    const reason = result.reason ?? 'unspecified';
    emit(
      'certificate.revoked',
      'warn',
      {
        reason: 'certificate-rejected',
        message: `certificate ${result.serial} revoked (${reason}): client disconnected`,
        detail: { serial: result.serial, issuer: result.issuer, revocationReason: reason, source: result.source, ...(origin === undefined ? {} : { origin }), subject: client.certificate?.commonName, action: 'disconnected' },
      },
      client,
    );
    ctx?.disconnect(client.id, 'kicked', `certificate ${result.serial} revoked (${reason})`);
  }

  async function readCas(): Promise<{ ok: true; changed: boolean } | { ok: false; message: string }> {
    const found: CaCertificate[] = [];
    const digests: string[] = [];
    for (const file of caFiles) {
      try {
        const text = await readFile(file, 'utf8');
        digests.push(text);
        found.push(...caCertificatesOf(file, text));
      } catch (err) {
        return { ok: false, message: `cannot read CA file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
      }
    }
    const digest = digests.join('\n');
    const changed = digest !== caDigest;
    cas = found;
    caDigest = digest;
    return { ok: true, changed };
  }

  async function doReload(): Promise<ReloadResult> {
    const loaded: string[] = [];
    const unchanged: string[] = [];
    const rejected: CrlRejection[] = [];
    const fresh: CrlRejection[] = []; // rejections not reported before
    const reject = (r: CrlRejection, digest: string | undefined) => {
      rejected.push(r);
      const prev = refused.get(r.file);
      if (prev?.digest !== digest || prev?.message !== r.message) fresh.push(r);
      refused.set(r.file, { digest, message: r.message });
    };
    const caResult = await readCas();
    if (!caResult.ok) {
      // Without the CAs nothing can be verified: keep everything in force.
      for (const file of crlFiles) reject({ file, kind: 'unreadable', message: caResult.message }, undefined);
    } else {
      for (const file of crlFiles) {
        const read = await readWithDigest(file);
        if ('error' in read) {
          const code = (read.error as NodeJS.ErrnoException).code;
          reject({ file, kind: 'unreadable', message: `cannot read CRL file ${file}: ${code ?? read.error.message}` }, undefined);
          continue;
        }
        const prev = byFile.get(file);
        if (prev && prev.digest === read.digest && !caResult.changed) {
          refused.delete(file);
          unchanged.push(file);
          continue;
        }
        const wasRefused = refused.get(file);
        if (wasRefused && wasRefused.digest === read.digest && !caResult.changed) {
          rejected.push({ file, kind: 'unverified', message: wasRefused.message }); // same bytes: reported already
          continue;
        }
        const result = verifyCrlFile(file, read.bytes, read.digest, cas, byIssuer);
        if (isRejection(result)) {
          reject(result, read.digest);
          continue;
        }
        byFile.set(file, result);
        refused.delete(file);
        loaded.push(file);
      }
    }
    const before = byIssuer;
    byIssuer = indexByIssuer(byFile.values());
    const newlyRevoked: string[] = [];
    for (const [issuer, crl] of byIssuer) {
      const old = before.get(issuer);
      for (const serial of crl.revoked.keys()) if (!old?.revoked.has(serial)) newlyRevoked.push(serial);
    }
    for (const r of fresh) {
      emit('crl.rejected', 'error', { message: `${r.message}; the previous CRL stays in force`, detail: { file: r.file, problem: r.kind } });
    }
    const initial = !loadedOnce;
    loadedOnce = true;
    for (const file of loaded) {
      const crl = byFile.get(file) as LoadedCrl;
      emit('crl.loaded', 'info', {
        message: `CRL of ${crl.issuer} loaded from ${file}: ${crl.revoked.size} revoked, next update ${crl.nextUpdate?.toISOString() ?? 'not set'}`,
        detail: {
          file,
          issuer: crl.issuer,
          crlNumber: crl.crlNumber,
          thisUpdate: crl.thisUpdate.toISOString(),
          nextUpdate: crl.nextUpdate?.toISOString(),
          revoked: crl.revoked.size,
          ...(initial ? {} : { newlyRevoked: newlyRevoked.slice(0, MAX_LISTED), newlyRevokedCount: newlyRevoked.length }),
        },
      });
    }
    const disconnected = loaded.length > 0 ? sweep() : 0;
    noteStale();
    return { loaded, unchanged, rejected, newlyRevoked: initial ? [] : newlyRevoked, disconnected };
  }

  /** One reload at a time; a request made while one runs gets one more run after it. */
  function reload(): Promise<ReloadResult> {
    if (pending) return pending;
    const run = queue.then(() => {
      pending = undefined;
      return doReload();
    });
    pending = run;
    queue = run.catch(() => undefined);
    return run;
  }

  async function load(): Promise<ReloadResult> {
    const r = await reload();
    const missing = crlFiles.filter((f) => !byFile.has(f));
    if (r.rejected.length > 0 || missing.length > 0) {
      const why = r.rejected.map((x) => x.message).join('; ') || `not loaded: ${missing.join(', ')}`;
      throw new BastionError('BASTION_ERR_REVOCATION', `revocation: ${why}`);
    }
    return r;
  }

  /** Raise crl.stale once per CRL that passed its nextUpdate, and arm a timer for the next one. */
  function noteStale(): void {
    if (staleTimer) clearTimeout(staleTimer);
    staleTimer = undefined;
    const now = Date.now();
    let next = Infinity;
    for (const crl of byIssuer.values()) {
      if (crl.nextUpdate === undefined) continue;
      if (isStale(crl, now)) {
        if (!staleNotified.has(crl) && ctx) {
          staleNotified.add(crl);
          emit('crl.stale', 'warn', {
            message: `the CRL of ${crl.issuer} (${crl.file}) passed its nextUpdate ${crl.nextUpdate.toISOString()}: ${stalePolicy === 'refuse' ? 'new clients of that CA are refused' : 'clients are still accepted'} until a fresh CRL is loaded`,
            detail: { file: crl.file, issuer: crl.issuer, nextUpdate: crl.nextUpdate.toISOString(), policy: stalePolicy },
          });
        }
      } else {
        next = Math.min(next, crl.nextUpdate.getTime());
      }
    }
    if (next !== Infinity && ctx) {
      staleTimer = setTimeout(noteStale, Math.min(MAX_TIMER, next - now + 1000));
      staleTimer.unref();
    }
  }

  const mw: Revocation = {
    name: 'revocation',
    controls: [CONTROL, 'PR.AC-1'],
    async setup(c: BrokerContext) {
      ctx = c;
      logger = c.logger;
      if (!loadedOnce) await load();
      noteStale(); // a CRL already stale at start is reported now (subscribe before listen() to hear it)
      if (opts.watch !== false) {
        watcher = watchFiles([...crlFiles, ...caFiles], () => void reload().catch((err: unknown) => c.logger.error({ err }, 'CRL reload failed')), {
          ...(opts.debounceMs === undefined ? {} : { debounceMs: opts.debounceMs }),
          ...(opts.pollMs === undefined ? {} : { pollMs: opts.pollMs }),
          onError: (err, dir) => c.logger.warn({ err, dir }, 'cannot watch CRL directory; relying on polling and SIGHUP'),
        });
      }
    },
    onConnection,
    onConnected(client: ClientInfo) {
      // A CRL may have changed between the handshake check and CONNACK: close that gap.
      if (client.certificate === undefined) return;
      const result = check(client.certificate);
      if (result.revoked) kick(client, result);
    },
    load,
    reload,
    revoke(serial, o = {}) {
      const s = normalizeSerial(serial);
      const origin = o.origin ?? 'api';
      apiRevoked.set(s, { issuer: o.issuer, reason: o.reason });
      // told before the sweep, so the other nodes start theirs as early as possible
      if (listeners.size > 0) tell({ op: 'revoke', origin, serial: s, ...(o.issuer === undefined ? {} : { issuer: o.issuer }), ...(o.reason === undefined ? {} : { reason: o.reason }) });
      const n = sweep(origin);
      if (n === 0) {
        emit('certificate.revoked', 'warn', {
          message: `certificate ${s} revoked through the API (${o.reason ?? 'unspecified'}); no connected client presented it`,
          detail: { serial: s, issuer: o.issuer, revocationReason: o.reason ?? 'unspecified', source: 'api', origin, action: 'none' },
        });
      }
      return n;
    },
    unrevoke(serial, o = {}) {
      const s = normalizeSerial(serial);
      const lifted = apiRevoked.delete(s);
      // told even when nothing was lifted here: another node may hold it
      if (listeners.size > 0) tell({ op: 'unrevoke', origin: o.origin ?? 'api', serial: s });
      return lifted;
    },
    revoked() {
      return [...apiRevoked].map(([serial, v]) => ({ serial, ...(v.issuer === undefined ? {} : { issuer: v.issuer }), ...(v.reason === undefined ? {} : { reason: v.reason }) }));
    },
    onChange(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    check,
    status() {
      const now = Date.now();
      return crlFiles.map((file): CrlStatus => {
        const crl = byFile.get(file);
        const error = refused.get(file)?.message;
        if (!crl) return { file, revoked: 0, stale: false, ...(error ? { error } : {}) };
        return {
          file,
          issuer: crl.issuer,
          ...(crl.crlNumber === undefined ? {} : { crlNumber: crl.crlNumber }),
          thisUpdate: crl.thisUpdate,
          ...(crl.nextUpdate ? { nextUpdate: crl.nextUpdate } : {}),
          revoked: crl.revoked.size,
          stale: isStale(crl, now),
          ...(error ? { error } : {}),
        };
      });
    },
    close() {
      listeners.clear();
      watcher?.close();
      watcher = undefined;
      if (staleTimer) clearTimeout(staleTimer);
      staleTimer = undefined;
    },
  };
  return mw;
}
