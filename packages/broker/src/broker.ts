/**
 * `createBroker({ profile })`: the whole of Bastion from one framework-profile file (or object).
 */
import path from 'node:path';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { existsSync } from 'node:fs';
import { BastionBroker } from '@bastion/core';
import type { Middleware, SecurityEvent } from '@bastion/core';
import { defaultProfile, loadProfile, resolveProfile } from '@bastion/profile';
import type { Profile, ProfileInput } from '@bastion/profile';
import { Controls, controlsOf, wireControls } from './controls.js';
import type { Service } from './controls.js';
import { discardBuilt, formatReloadIssue, planReload, readFailure } from './reload.js';
import type { ReloadIssue, ReloadResult, RunningWiring } from './reload.js';
import { effectiveProfile } from './assess.js';
import type { EffectiveProfile } from './assess.js';
import { persistenceFromProfile } from './controls/persistence.js';
import { listenerOptions } from './listeners.js';
import { announceFirstStart, ensureDevMaterial } from './dev-setup.js';
import type { FirstStartInfo } from './dev-setup.js';

export interface BrokerOptions {
  /**
   * A profile file path, a profile object (as written in YAML), or an already resolved Profile.
   * Omitted: the embedded development default (loopback, TLS with dev certificates, passwords).
   */
  profile?: string | ProfileInput | Profile;
  /** Where relative paths of an object profile, and the default profile's `certs-dev/`, resolve (default: cwd). */
  baseDir?: string;
  logger?: Logger;
  /** Your own middleware, run after the profile's controls. */
  middleware?: Middleware[];
  /** Called on a first start of the default profile (dev PKI and first user made). Default: print to stderr once. */
  onFirstStart?: (info: FirstStartInfo) => void;
  /**
   * Reload the whole profile on SIGHUP (`broker.reload()`), as `bastion start` does; the controls'
   * own SIGHUP handlers (TLS files, CRLs) are then not installed: the whole reload covers them.
   * Default false (an embedding application may use SIGHUP for something else).
   */
  reloadOnSighup?: boolean;
}

/** What buildBroker gives a Bastion besides its profile and controls. */
export interface BastionExtras {
  /** Each control factory's middleware and services, by name (reload matches them to the new profile's). */
  readonly wiring?: readonly RunningWiring[];
  /** Reads the profile again (from its file, the object given, or the default). */
  readonly reread?: () => Promise<Profile>;
  readonly reloadOnSighup?: boolean;
  /** The logger was made from the profile's `logging` (not given by the embedding application). */
  readonly loggerFromProfile?: boolean;
}

export class Bastion extends BastionBroker {
  readonly controls: Controls;
  /** Whether the logger follows the profile's `logging.level` (false when the embedding application gave one). */
  readonly loggerFromProfile: boolean;
  #profile: Profile;
  #loadedAt = new Date();
  #started: Service[] = [];
  readonly #wiring: readonly RunningWiring[];
  #reread: () => Promise<Profile>;
  readonly #reloadOnSighup: boolean;
  #reloads: Promise<unknown> = Promise.resolve();
  #onSighup: (() => void) | undefined;

  constructor(profile: Profile, controls: Controls, core: ConstructorParameters<typeof BastionBroker>[0], extras: BastionExtras = {}) {
    super(core);
    this.#profile = profile;
    this.controls = controls;
    this.#wiring = extras.wiring ?? [];
    this.#reread = extras.reread ?? (async () => this.#profile);
    this.#reloadOnSighup = extras.reloadOnSighup ?? false;
    this.loggerFromProfile = extras.loggerFromProfile ?? false;
  }

  /** The profile in force: the one the broker started with, or the last one `reload()` applied. */
  get profile(): Profile {
    return this.#profile;
  }

  /** When the profile in force was loaded. */
  get loadedAt(): Date {
    return this.#loadedAt;
  }

  /** Listen, then start the profile's services (admin API, metrics, audit …). */
  override async listen(): Promise<this> {
    await super.listen();
    try {
      for (const s of this.controls.services) {
        if (s.sighup && this.#reloadOnSighup) continue; // the whole reload below covers it
        await s.start(this);
        this.#started.push(s);
      }
    } catch (err) {
      await this.close();
      throw err;
    }
    if (this.#reloadOnSighup) {
      this.#onSighup = () => {
        this.logger.info({ signal: 'SIGHUP' }, 'reloading the profile');
        void this.reload();
      };
      process.on('SIGHUP', this.#onSighup);
    }
    return this;
  }

  /**
   * Read the profile again — or `next` (a file path, a profile object, a resolved Profile) — with
   * everything it points to, check all of it, and apply it whole, or nothing: a failed reload leaves
   * the running configuration untouched and says why (`profile.reload.failed`); a successful one
   * emits `profile.reloaded`. Connected clients meet the new settings at once. Changes that need a
   * restart (a listener's address, persistence …) fail the reload. Reloads run one at a time.
   */
  reload(next?: string | ProfileInput | Profile): Promise<ReloadResult> {
    const run = this.#reloads.then(() => this.#reloadNow(next));
    this.#reloads = run.catch(() => undefined);
    return run;
  }

  async #reloadNow(next: string | ProfileInput | Profile | undefined): Promise<ReloadResult> {
    const reread = next === undefined ? this.#reread : rereadFor({ profile: next, baseDir: this.#profile.baseDir });
    let profile: Profile;
    try {
      profile = await reread();
    } catch (err) {
      return this.#reloadFailed(typeof next === 'string' ? next : this.#profile.source, [], readFailure(err));
    }
    const plan = await planReload(this, this.#wiring, profile, this.logger);
    try {
      if (plan.issues.length > 0) return this.#reloadFailed(profile.source, plan.changes, plan.issues);
      const applied: string[] = [];
      try {
        for (const step of plan.steps) {
          await step.run();
          applied.push(step.what);
        }
        this.#profile = profile;
        this.#loadedAt = new Date();
        this.#reread = reread;
        for (const hook of plan.hooks) {
          await hook.run();
          applied.push(hook.what);
        }
      } catch (err) {
        // Only a control failing on input that built and validated gets here.
        this.logger.error({ err }, 'profile reload failed while applying');
        return this.#reloadFailed(profile.source, applied, [
          { path: '(root)', message: `applying failed (${(err as Error).message}) after: ${applied.join('; ') || 'nothing'}; restart the broker to be sure of its configuration` },
        ]);
      }
      const changes = plan.changes.length > 0 ? plan.changes : ['no setting changed; files re-read'];
      this.#event('profile.reloaded', 'info', `profile reloaded from ${profile.source}: ${changes.join('; ')}`, { source: profile.source, changes });
      return { ok: true, source: profile.source, changes, issues: [] };
    } finally {
      await discardBuilt(plan.built, this.logger);
    }
  }

  #reloadFailed(source: string, changes: readonly string[], issues: readonly ReloadIssue[]): ReloadResult {
    this.#event('profile.reload.failed', 'error', `profile reload refused; the running configuration is unchanged: ${issues.map(formatReloadIssue).join('; ')}`, { source, issues, changes });
    return { ok: false, source, changes, issues };
  }

  #event(type: string, level: 'info' | 'error', message: string, detail: Record<string, unknown>): void {
    const event: SecurityEvent = { type, time: Date.now(), control: 'RC.RP-1', source: 'reload', message, detail };
    this.logger[level]({ securityEvent: event }, type);
    this.events.emit(event);
    this.emit('security', event);
  }

  /** The configuration in force, secrets redacted, with the controls each middleware and service implements (GET /v1/profile/effective). */
  effectiveProfile(): EffectiveProfile {
    return effectiveProfile(this);
  }

  /** Stop the services, then the broker. */
  override async close(): Promise<void> {
    if (this.#onSighup) process.off('SIGHUP', this.#onSighup);
    this.#onSighup = undefined;
    for (const s of this.#started.splice(0).reverse()) {
      try {
        await s.stop();
      } catch (err) {
        this.logger.warn({ err, service: s.name }, 'service did not stop cleanly');
      }
    }
    await super.close();
  }
}

function isResolved(p: unknown): p is Profile {
  return typeof p === 'object' && p !== null && typeof (p as Profile).baseDir === 'string' && typeof (p as Profile).source === 'string';
}

/** How to read the profile again later (reload): its file, the object given, or the default. */
function rereadFor(opts: Pick<BrokerOptions, 'profile' | 'baseDir'>): () => Promise<Profile> {
  const baseDir = path.resolve(opts.baseDir ?? process.cwd());
  const p = opts.profile;
  if (p === undefined) return async () => resolveProfile(defaultProfile(), { baseDir, source: '<embedded default>' });
  if (typeof p === 'string') return () => loadProfile(p);
  if (isResolved(p)) return existsSync(p.source) ? () => loadProfile(p.source) : async () => p;
  return async () => resolveProfile(p, { baseDir });
}

export async function resolveBrokerProfile(opts: BrokerOptions): Promise<Profile> {
  const baseDir = path.resolve(opts.baseDir ?? process.cwd());
  if (opts.profile === undefined) {
    const info = await ensureDevMaterial(path.join(baseDir, 'certs-dev'));
    (opts.onFirstStart ?? ((i) => announceFirstStart(i)))(info);
    return resolveProfile(defaultProfile(), { baseDir, source: '<embedded default>' });
  }
  if (typeof opts.profile === 'string') return loadProfile(opts.profile);
  if (isResolved(opts.profile)) return opts.profile;
  return resolveProfile(opts.profile, { baseDir });
}

/** Build a broker from a profile without listening (call `listen()`). */
export async function buildBroker(opts: BrokerOptions = {}): Promise<Bastion> {
  const profile = await resolveBrokerProfile(opts);
  const logger = opts.logger ?? pino({ level: profile.logging.level, base: { name: 'bastion' } });
  const wiredList = await wireControls(profile, logger);
  const wired = controlsOf(wiredList);
  const listeners = await Promise.all(profile.listeners.map((l) => listenerOptions(l)));
  const auth = profile.authentication;
  // Persistence is not middleware: its store and mq go to Aedes; its middleware and services join the controls.
  const store = await persistenceFromProfile(profile, logger);
  const controls = new Controls([...wired.middleware, ...store.middleware], [...wired.services, ...store.services]);
  return new Bastion(profile, controls, {
    listeners,
    middleware: [...controls.middleware, ...(opts.middleware ?? [])],
    logger,
    persistence: store.persistence,
    mq: store.mq,
    maxPacketSize: profile.limits.maxPacketSize,
    connectTimeout: profile.limits.connectTimeout,
    anonymous: auth.anonymous,
    requiredFactors: auth.require,
    sysSubscribers: profile.sys.subscribers,
  }, {
    wiring: wiredList.map((w) => ({ factory: w.factory, middleware: (w.wiring?.middleware ?? []).map((m) => m.name), services: (w.wiring?.services ?? []).map((s) => s.name) })),
    reread: rereadFor(opts),
    reloadOnSighup: opts.reloadOnSighup ?? false,
    loggerFromProfile: opts.logger === undefined,
  });
}

/** Build and start a broker from a profile. */
export async function createBroker(opts: BrokerOptions = {}): Promise<Bastion> {
  const broker = await buildBroker(opts);
  await broker.listen();
  return broker;
}
