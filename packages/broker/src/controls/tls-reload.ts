/**
 * The broker's own TLS material over time, from the `certificates` profile section:
 *
 * - hot reload (RC.RP-5): each TLS listener's cert, key, ca and crl files are watched; when they
 *   change, the new set is checked (certificate parses, is within its validity, matches the key;
 *   OpenSSL accepts the whole context) and installed with `setListenerTls` — new handshakes get it,
 *   connected clients keep their session. A bad set is refused with `certificate.reload-failed`
 *   and the previous one stays. A certificate and its key are two files written one after the
 *   other, so a mismatch is retried for a second before it counts as a failure;
 * - session-ticket key rotation (PR.SS-7): fresh random keys on a schedule, so a ticket (and the
 *   session it resumes) cannot outlive one period;
 * - expiry warnings (ID.AM-4): `certificate.expiring` for a listener certificate, or a connecting
 *   client's, that expires within `expiryWarning`; re-checked twice a day for long-lived sessions.
 *
 * It is a middleware (for `onConnected`, and so that `broker.controls.get('tls-certificates')`
 * reaches `reload()`, `rotateTicketKeys()` and `status()`) and a service (it needs the broker's
 * listeners).
 */
import { randomBytes, createPrivateKey, X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import type { BrokerContext, ClientInfo, Middleware, SecurityEvent, TlsOptions } from '@bastion/core';
import { secureContextOptions } from '@bastion/core';
import { readWithDigest, watchFiles, type FileWatch } from '@bastion/middleware';
import { certificateIssuerAndSerial, normalizeSerial } from '@bastion/pki';
import type { Profile, TlsListener } from '@bastion/profile';
import type { Logger } from 'pino';
import type { ControlFactory, Service } from '../controls.js';
import type { Bastion } from '../broker.js';
import { loadTls } from '../listeners.js';

const DAY = 86_400_000;
const EXPIRY_SWEEP_MS = DAY / 2;
const MISMATCH_RETRIES = 4;
const MISMATCH_WAIT_MS = 250;

export interface ListenerTlsStatus {
  readonly listener: string;
  readonly serial: string;
  readonly subject: string;
  readonly notAfter: Date;
  readonly loadedAt: Date;
  /** Why the files on disk were last refused (the loaded set stays), if they were. */
  readonly error?: string;
  readonly ticketKeysRotatedAt?: Date;
}

export interface TlsReloadResult {
  readonly reloaded: readonly string[];
  readonly failed: ReadonlyArray<{ listener: string; message: string }>;
}

export interface TlsCertificates extends Middleware, Omit<Service, 'controls'> {
  /** Re-read every TLS listener's files now; installs those that changed and check out (unchanged files: nothing). */
  reload(): Promise<TlsReloadResult>;
  /** Replace the session-ticket keys of every TLS listener now; returns the listener names. */
  rotateTicketKeys(): string[];
  status(): ListenerTlsStatus[];
}

export interface TlsCertificatesOptions {
  /** Watch the files (default true). */
  watch: boolean;
  /** Milliseconds; undefined = never. */
  ticketKeyRotation: number | undefined;
  /** Milliseconds; 0 = off. */
  expiryWarning: number;
  logger: Logger;
  /** Debounce of file events (default 150 ms); poll interval (default 60 s). */
  debounceMs?: number;
  pollMs?: number;
}

interface Loaded {
  profile: TlsListener;
  /** The core listener's name (port-0 listeners are named after their bound port). */
  name: string;
  digests: string;
  serial: string;
  subject: string;
  notAfter: Date;
  loadedAt: Date;
  error?: string;
  ticketKeysRotatedAt?: Date;
}

function filesOf(l: TlsListener): string[] {
  return [l.tls.cert, l.tls.key, ...l.tls.ca, ...l.tls.crl];
}

export function tlsCertificates(opts: TlsCertificatesOptions): TlsCertificates {
  const logger = opts.logger;
  let broker: Bastion | undefined;
  let ctx: BrokerContext | undefined;
  const state: Loaded[] = [];
  let watcher: FileWatch | undefined;
  let rotation: NodeJS.Timeout | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  let pending: Promise<TlsReloadResult> | undefined;
  const warned = new Map<string, number>(); // serial -> when it was last warned about

  function emit(type: string, control: string, level: 'info' | 'warn' | 'error', fields: Partial<SecurityEvent>, who?: ClientInfo): void {
    const event: SecurityEvent = {
      type,
      time: Date.now(),
      control,
      source: 'tls-certificates',
      ...(who ? { clientId: who.id || undefined, username: who.username, remoteAddress: who.remoteAddress, listener: who.listener } : {}),
      ...fields,
    };
    logger[level]({ securityEvent: event }, type);
    broker?.events.emit(event);
  }

  /** Warn once a day per certificate that expires within the window. */
  function checkExpiry(serial: string, notAfter: Date, subject: string, where: { listener?: string; client?: ClientInfo }): void {
    if (opts.expiryWarning <= 0) return;
    const now = Date.now();
    const left = notAfter.getTime() - now;
    if (left > opts.expiryWarning) return;
    const last = warned.get(serial);
    if (last !== undefined && now - last < DAY) return;
    warned.set(serial, now);
    const days = Math.floor(left / DAY);
    const whose = where.client ? `client certificate ${subject}` : `certificate of listener ${where.listener} (${subject})`;
    emit(
      'certificate.expiring',
      'ID.AM-4',
      'warn',
      {
        ...(where.listener ? { listener: where.listener } : {}),
        message: left <= 0 ? `the ${whose} expired on ${notAfter.toISOString()}` : `the ${whose} expires in ${days} day(s), on ${notAfter.toISOString()}: renew it (bastion certs renew)`,
        detail: { serial, subject, notAfter: notAfter.toISOString(), daysLeft: days, kind: where.client ? 'client' : 'server' },
      },
      where.client,
    );
  }

  function sweepExpiry(): void {
    const now = Date.now();
    for (const [serial, at] of warned) if (now - at >= DAY) warned.delete(serial);
    for (const l of state) checkExpiry(l.serial, l.notAfter, l.subject, { listener: l.name });
    if (ctx) for (const c of ctx.clients()) if (c.certificate) checkClient(c);
  }

  function checkClient(client: ClientInfo): void {
    const cert = client.certificate;
    if (cert === undefined || opts.expiryWarning <= 0 || cert.validTo.getTime() - Date.now() > opts.expiryWarning) return;
    let serial: string;
    try {
      serial = certificateIssuerAndSerial(cert.raw.raw).serial; // the CRL / `bastion certs list` form
    } catch {
      serial = cert.serial;
    }
    checkExpiry(serial, cert.validTo, cert.commonName ?? cert.fingerprint256, { client });
  }

  async function digestsOf(l: TlsListener): Promise<string | Error> {
    const parts: string[] = [];
    for (const f of filesOf(l)) {
      const r = await readWithDigest(f);
      if ('error' in r) return new Error(`cannot read ${f}: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`);
      parts.push(r.digest);
    }
    return parts.join(':');
  }

  /** Checks a TLS set before it replaces a working one. Returns the reason it is refused, or undefined. */
  function problemWith(t: TlsOptions, retryable: { mismatch: boolean }): string | undefined {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(t.cert);
    } catch (err) {
      return `the certificate does not parse (${(err as Error).message})`;
    }
    let key;
    try {
      key = createPrivateKey(t.key);
    } catch {
      return 'the private key does not parse (or is encrypted)';
    }
    if (!cert.checkPrivateKey(key)) {
      retryable.mismatch = true;
      return 'the certificate does not match the private key';
    }
    const now = Date.now();
    if (new Date(cert.validTo).getTime() < now) return `the certificate expired on ${new Date(cert.validTo).toISOString()}`;
    if (new Date(cert.validFrom).getTime() > now) return `the certificate is not valid before ${new Date(cert.validFrom).toISOString()}`;
    try {
      tls.createSecureContext(secureContextOptions(t));
    } catch (err) {
      return `OpenSSL refuses the set (${(err as Error).message})`;
    }
    return undefined;
  }

  async function reloadOne(l: Loaded): Promise<'same' | 'reloaded' | string> {
    for (let attempt = 1; ; attempt++) {
      const digests = await digestsOf(l.profile);
      if (typeof digests !== 'string') return digests.message;
      if (digests === l.digests) {
        delete l.error;
        return 'same';
      }
      let t: TlsOptions;
      try {
        t = await loadTls(l.profile.tls, l.name);
      } catch (err) {
        return (err as Error).message;
      }
      const retry = { mismatch: false };
      const problem = problemWith(t, retry);
      if (problem !== undefined) {
        if (retry.mismatch && attempt < MISMATCH_RETRIES) {
          await new Promise((r) => setTimeout(r, MISMATCH_WAIT_MS)); // the other file is probably on its way
          continue;
        }
        return problem;
      }
      (broker as Bastion).setListenerTls(l.name, t);
      const cert = new X509Certificate(t.cert);
      l.digests = digests;
      l.serial = normalizeSerial(cert.serialNumber);
      l.subject = cert.subject.replace(/\n/g, ', ');
      l.notAfter = new Date(cert.validTo);
      l.loadedAt = new Date();
      l.ticketKeysRotatedAt = l.loadedAt; // a new secure context starts with new ticket keys
      delete l.error;
      return 'reloaded';
    }
  }

  async function doReload(): Promise<TlsReloadResult> {
    const reloaded: string[] = [];
    const failed: Array<{ listener: string; message: string }> = [];
    const befores = state.map((l) => ({ serial: l.serial, error: l.error }));
    // in parallel: one listener waiting out a cert/key mismatch does not hold up the others
    const results = await Promise.all(state.map((l) => reloadOne(l)));
    for (const [i, l] of state.entries()) {
      const before = befores[i] as { serial: string; error: string | undefined };
      const r = results[i] as string;
      if (r === 'same') continue;
      if (r === 'reloaded') {
        reloaded.push(l.name);
        emit('certificate.reloaded', 'RC.RP-5', 'info', {
          listener: l.name,
          message: `listener ${l.name} now presents certificate ${l.serial} (${l.subject}), valid until ${l.notAfter.toISOString()}; connected clients keep their sessions`,
          detail: { serial: l.serial, previousSerial: before.serial, subject: l.subject, notAfter: l.notAfter.toISOString(), files: filesOf(l.profile) },
        });
        checkExpiry(l.serial, l.notAfter, l.subject, { listener: l.name });
        continue;
      }
      failed.push({ listener: l.name, message: r });
      if (before.error !== r) {
        emit('certificate.reload-failed', 'RC.RP-5', 'error', {
          listener: l.name,
          message: `listener ${l.name}: new TLS files refused: ${r}; it keeps certificate ${l.serial}`,
          detail: { serial: l.serial, files: filesOf(l.profile), problem: r },
        });
      }
      l.error = r;
    }
    return { reloaded, failed };
  }

  /** One reload at a time; a request made while one runs gets one more run after it. */
  function reload(): Promise<TlsReloadResult> {
    if (pending) return pending;
    const run = queue.then(() => {
      pending = undefined;
      return doReload();
    });
    pending = run;
    queue = run.catch(() => undefined);
    return run;
  }

  function rotateTicketKeys(): string[] {
    if (!broker) return [];
    const names: string[] = [];
    const now = new Date();
    for (const l of broker.openListeners) {
      if (!l.setTicketKeys) continue;
      l.setTicketKeys(randomBytes(48));
      names.push(l.name);
      const s = state.find((x) => x.name === l.name);
      if (s) s.ticketKeysRotatedAt = now;
    }
    if (names.length > 0) {
      emit('tls.ticket-keys-rotated', 'PR.SS-7', 'info', {
        message: `session-ticket keys replaced on ${names.join(', ')}: earlier sessions resume only through a full handshake`,
        detail: { listeners: names, ...(opts.ticketKeyRotation ? { periodMs: opts.ticketKeyRotation } : {}) },
      });
    }
    return names;
  }

  const self: TlsCertificates = {
    name: 'tls-certificates',
    controls: ['RC.RP-5', 'PR.SS-7', 'ID.AM-4'],
    setup(c: BrokerContext) {
      ctx = c;
    },
    onConnected: checkClient,
    async start(b: Bastion) {
      broker = b;
      // Profile listeners and core listeners are in the same order; port-0 names differ.
      const open = b.openListeners;
      for (const [i, l] of b.profile.listeners.entries()) {
        if (l.protocol !== 'mqtts' && l.protocol !== 'wss') continue;
        const profile = l;
        const digests = await digestsOf(profile);
        let cert: X509Certificate | undefined;
        try {
          cert = new X509Certificate((await loadTls(profile.tls, profile.name)).cert);
        } catch {
          cert = undefined;
        }
        state.push({
          profile,
          name: open[i]?.name ?? l.name,
          digests: typeof digests === 'string' ? digests : '',
          serial: cert ? normalizeSerial(cert.serialNumber) : '',
          subject: cert ? cert.subject.replace(/\n/g, ', ') : '',
          notAfter: cert ? new Date(cert.validTo) : new Date(0),
          loadedAt: new Date(),
          ticketKeysRotatedAt: new Date(),
        });
      }
      if (state.length === 0) return;
      if (opts.watch) {
        watcher = watchFiles(state.flatMap((l) => filesOf(l.profile)), () => void reload().catch((err: unknown) => logger.error({ err }, 'TLS reload failed')), {
          ...(opts.debounceMs === undefined ? {} : { debounceMs: opts.debounceMs }),
          ...(opts.pollMs === undefined ? {} : { pollMs: opts.pollMs }),
          onError: (err, dir) => logger.warn({ err, dir }, 'cannot watch TLS directory; relying on polling and SIGHUP'),
        });
      }
      if (opts.ticketKeyRotation !== undefined) {
        rotation = setInterval(rotateTicketKeys, opts.ticketKeyRotation);
        rotation.unref();
      }
      sweepExpiry(); // subscribe before listen() (buildBroker) to hear warnings about the start state
      sweepTimer = setInterval(sweepExpiry, EXPIRY_SWEEP_MS);
      sweepTimer.unref();
    },
    stop() {
      watcher?.close();
      watcher = undefined;
      if (rotation) clearInterval(rotation);
      if (sweepTimer) clearInterval(sweepTimer);
      rotation = sweepTimer = undefined;
    },
    reload,
    rotateTicketKeys,
    /**
     * After a profile reload changed the TLS settings or files (Bastion.reload has installed the new
     * sets with setListenerTls): follow the new files and the new `certificates` settings.
     */
    async reconfigure(next: Profile) {
      opts.watch = next.certificates.watch;
      opts.ticketKeyRotation = next.certificates.ticketKeyRotation;
      opts.expiryWarning = next.certificates.expiryWarning;
      self.stop();
      state.length = 0;
      if (broker) await self.start(broker);
    },
    status() {
      return state.map((l) => ({
        listener: l.name,
        serial: l.serial,
        subject: l.subject,
        notAfter: l.notAfter,
        loadedAt: l.loadedAt,
        ...(l.error ? { error: l.error } : {}),
        ...(l.ticketKeysRotatedAt ? { ticketKeysRotatedAt: l.ticketKeysRotatedAt } : {}),
      }));
    },
  };
  return self;
}

/** Runs `fn` on SIGHUP while the broker runs (the process default, exit, is replaced only then). */
export function sighupService(name: string, fn: () => Promise<unknown>, logger: Logger, controls: readonly string[] = []): Service {
  const handler = () => {
    logger.info({ service: name }, 'SIGHUP: reloading');
    fn().catch((err: unknown) => logger.error({ err, service: name }, 'SIGHUP reload failed'));
  };
  return {
    name,
    controls,
    sighup: true, // not started when the broker reloads the whole profile on SIGHUP
    start() {
      process.on('SIGHUP', handler);
    },
    stop() {
      process.off('SIGHUP', handler);
    },
  };
}

/** RC.RP-5 / PR.SS-7 / ID.AM-4 from the `certificates` section: always on when there is a TLS listener. */
export const certificates: ControlFactory = ({ profile, logger }) => {
  const settings = profile.certificates;
  const listeners = profile.listeners.filter((l): l is TlsListener => l.protocol === 'mqtts' || l.protocol === 'wss');
  if (listeners.length === 0) return undefined;
  const mw = tlsCertificates({
    watch: settings.watch,
    ticketKeyRotation: settings.ticketKeyRotation,
    expiryWarning: settings.expiryWarning,
    logger,
  });
  const services: Service[] = [mw];
  if (settings.sighup) services.push(sighupService('tls-sighup', () => mw.reload(), logger, ['RC.RP-5']));
  return { phase: 'observe', middleware: [mw], services };
};
