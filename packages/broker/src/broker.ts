/**
 * `createBroker({ profile })`: the whole of Bastion from one framework-profile file (or object).
 */
import path from 'node:path';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { BastionBroker } from '@bastion/core';
import type { Middleware } from '@bastion/core';
import { defaultProfile, loadProfile, resolveProfile } from '@bastion/profile';
import type { Profile, ProfileInput } from '@bastion/profile';
import { Controls, controlsFromProfile } from './controls.js';
import type { Service } from './controls.js';
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
}

export class Bastion extends BastionBroker {
  readonly profile: Profile;
  readonly controls: Controls;
  #started: Service[] = [];
  constructor(profile: Profile, controls: Controls, core: ConstructorParameters<typeof BastionBroker>[0]) {
    super(core);
    this.profile = profile;
    this.controls = controls;
  }

  /** Listen, then start the profile's services (admin API, metrics, audit …). */
  override async listen(): Promise<this> {
    await super.listen();
    try {
      for (const s of this.controls.services) {
        await s.start(this);
        this.#started.push(s);
      }
    } catch (err) {
      await this.close();
      throw err;
    }
    return this;
  }

  /** Stop the services, then the broker. */
  override async close(): Promise<void> {
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
  const wired = await controlsFromProfile(profile, logger);
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
  });
}

/** Build and start a broker from a profile. */
export async function createBroker(opts: BrokerOptions = {}): Promise<Bastion> {
  const broker = await buildBroker(opts);
  await broker.listen();
  return broker;
}
