/**
 * Turns a resolved profile into the middleware list and the broker services.
 *
 * Each control is wired in its own file under `controls/` and listed once below. A control says
 * in which phase of the data plane it runs, so the middleware list always reads: gates before
 * CONNECT, then authentication, then authorization, then limits, then observers.
 */
import type { Middleware } from '@bastion/core';
import { BastionError } from '@bastion/core';
import type { Profile } from '@bastion/profile';
import type { Logger } from 'pino';
import type { Bastion } from './broker.js';
import { authentication } from './controls/authentication.js';
import { revocationControl } from './controls/revocation.js';
import { certificates } from './controls/tls-reload.js';
import { admin } from './controls/admin.js';
import { authorization, gates } from './controls/authorization.js';
import { detectorsControl, responsesControl } from './controls/detectors.js';
import { auditControl } from './controls/audit.js';
import { metricsControl } from './controls/metrics.js';
import { rateLimitControl } from './controls/rate-limit.js';
import { protocolLimitsControl } from './controls/protocol-limits.js';
import { autoDisconnectControl } from './controls/auto-disconnect.js';
import { identifyControl } from './controls/identify.js';

export type Phase = 'gate' | 'authenticate' | 'authorize' | 'limit' | 'observe';
const PHASE_ORDER: Record<Phase, number> = { gate: 0, authenticate: 1, authorize: 2, limit: 3, observe: 4 };

/** Something that runs beside the broker (admin API, metrics endpoint, audit log, file watchers). */
export interface Service {
  readonly name: string;
  /** CSF subcategory ids this service delivers, like a middleware's `controls` (`bastion profile assess` reads them). */
  readonly controls?: readonly string[];
  /**
   * True for a service that only re-reads its control's files on SIGHUP: it is not started when the
   * broker reloads the whole profile on SIGHUP itself (`bastion start`, `reloadOnSighup`).
   */
  readonly sighup?: boolean;
  start(broker: Bastion): void | Promise<void>;
  stop(): void | Promise<void>;
  /** Optional live reconfiguration: see `Reconfigurable`. */
  reconfigure?(next: Profile, change: ReconfigureContext): void | Promise<void>;
  prepare?(next: Profile, change: ReconfigureContext): PreparedChange | undefined | Promise<PreparedChange | undefined>;
  outdated?(replacement: Middleware | Service | undefined): boolean;
}

/**
 * Live reconfiguration (`broker.reload()`, SIGHUP in `bastion start`, POST /v1/reload). A reload
 * re-reads the profile, builds every control from it (so a bad file, CRL or certificate fails the
 * reload before anything changes), then works out which running controls read a setting that
 * changed (their factory's reads are recorded). Each of those must take the change live, or the
 * reload fails whole with "restart required":
 *
 *  - the built-in controls (passwords, acl, access-list, bans, tls-certificates, revocation) are
 *    applied by reload.ts;
 *  - any other middleware or service may implement `reconfigure(next, change)`: `next` is the new,
 *    fully resolved profile (already `broker.profile` when it is called) and `change.replacement`
 *    the same-named control the factory just built from it (validated: take its settings from it).
 *    It must not fail for a profile that resolved and built; if it throws anyway the reload reports
 *    which parts were applied.
 *  - what can still fail (opening a file, binding a port) or must refuse the change ("restart
 *    required": throw `RestartRequired`) goes in `prepare(next, change)`, run while planning, before
 *    anything is applied: a throw fails the reload whole. What it returns reaches `reconfigure` as
 *    `change.prepared`; when the reload is not applied after all, its `abort()` undoes it.
 *  - `outdated(replacement)`: the control's files changed although its settings did not (an admin
 *    TLS certificate renewed on disk, an audit key file rewritten): the hooks run all the same.
 *
 * A middleware declares it by shape: `reconfigure?(next: Profile, change: ReconfigureContext)`.
 */
export interface ReconfigureContext {
  /** The control of the same name built from the new profile (not set up, never started; discarded after the reload). */
  readonly replacement: Middleware | Service | undefined;
  /** The settings whose values changed, as key paths (`acl.defaultEffect`, `listeners.0.tls.cert`). */
  readonly changed: readonly string[];
  readonly broker: Bastion;
  /** What `prepare` returned (undefined without one); `reconfigure` takes it over. */
  readonly prepared?: PreparedChange | undefined;
}

/** Something `prepare` acquired for a reload (a bound server, an open file). */
export interface PreparedChange {
  /** The reload is not applied: release it, leaving the running control as it was. */
  abort(): void | Promise<void>;
}

export interface Reconfigurable {
  reconfigure(next: Profile, change: ReconfigureContext): void | Promise<void>;
  prepare?(next: Profile, change: ReconfigureContext): PreparedChange | undefined | Promise<PreparedChange | undefined>;
  outdated?(replacement: Middleware | Service | undefined): boolean;
}

/** Thrown by a `prepare` hook: this change cannot be taken live; the reload fails with it. */
export class RestartRequired extends BastionError {
  /** The profile key path the reason is about (`rateLimits.store`). */
  readonly path: string;
  constructor(path: string, reason: string) {
    super('BASTION_ERR_RESTART_REQUIRED', `${reason}: restart required`);
    this.name = 'RestartRequired';
    this.path = path;
  }
}

export function isReconfigurable(x: unknown): x is Reconfigurable {
  return typeof (x as Partial<Reconfigurable> | null)?.reconfigure === 'function';
}

export interface ControlWiring {
  readonly phase: Phase;
  readonly middleware?: readonly Middleware[];
  readonly services?: readonly Service[];
}

export interface WiringContext {
  readonly profile: Profile;
  readonly logger: Logger;
}

/** A control's wiring: returns undefined when the profile leaves it off. */
export type ControlFactory = (ctx: WiringContext) => ControlWiring | undefined | Promise<ControlWiring | undefined>;

/** Every control, in no particular order (phases decide). Add new controls here. */
const FACTORIES: readonly ControlFactory[] = [gates, authentication, authorization, admin, revocationControl, certificates, responsesControl, detectorsControl, auditControl, metricsControl, identifyControl, rateLimitControl, protocolLimitsControl, autoDisconnectControl];

export class Controls {
  readonly middleware: readonly Middleware[];
  readonly services: readonly Service[];
  constructor(middleware: Middleware[], services: Service[]) {
    this.middleware = middleware;
    this.services = services;
  }
  /** A control's middleware by name ('passwords', 'acl', …), typed by the caller. */
  get<T extends Middleware = Middleware>(name: string): T | undefined {
    return this.middleware.find((m) => m.name === name) as T | undefined;
  }
}

export async function controlsFromProfile(profile: Profile, logger: Logger): Promise<Controls> {
  return controlsOf(await wireControls(profile, logger));
}

/** One factory's wiring, with the profile settings it read (when asked to record them). */
export interface WiredControl {
  readonly factory: ControlFactory;
  readonly wiring: ControlWiring | undefined;
  /** Key paths the factory read, values and objects (`acl`, `acl.defaultEffect`, `listeners.0.tls`); empty unless recorded. */
  readonly reads: ReadonlySet<string>;
}

/**
 * Every factory's wiring, in FACTORIES order. With `record`, each factory sees the profile through a
 * proxy that notes the settings it reads (reload uses it to find which controls a change touches);
 * never record for a broker that will run: the proxies would stay behind the controls' hot paths.
 */
export async function wireControls(profile: Profile, logger: Logger, opts: { record?: boolean } = {}): Promise<WiredControl[]> {
  const out: WiredControl[] = [];
  for (const factory of FACTORIES) {
    const reads = new Set<string>();
    const seen = opts.record ? recordingProxy(profile, reads) : profile;
    out.push({ factory, wiring: (await factory({ profile: seen, logger })) ?? undefined, reads });
  }
  return out;
}

export function controlsOf(wired: readonly WiredControl[]): Controls {
  const list = wired.flatMap((w) => (w.wiring ? [w.wiring] : [])).sort((a, b) => PHASE_ORDER[a.phase] - PHASE_ORDER[b.phase]);
  return new Controls(
    list.flatMap((w) => w.middleware ?? []),
    list.flatMap((w) => w.services ?? []),
  );
}

/** A view of `root` that records the path of every value read below it (objects are wrapped, once each). */
function recordingProxy<T extends object>(root: T, reads: Set<string>): T {
  const wrappers = new WeakMap<object, object>();
  const wrap = (target: object, prefix: string): object => {
    const known = wrappers.get(target);
    if (known) return known;
    const proxy = new Proxy(target, {
      get(t, key, receiver) {
        const v: unknown = Reflect.get(t, key, receiver);
        if (typeof key !== 'string') return v;
        const path = prefix === '' ? key : `${prefix}.${key}`;
        if (typeof v === 'function') return v;
        reads.add(path); // objects too: a control may keep one and read its fields later
        return v !== null && typeof v === 'object' ? wrap(v, path) : v;
      },
      has(t, key) {
        if (typeof key === 'string') reads.add(prefix === '' ? key : `${prefix}.${key}`);
        return Reflect.has(t, key);
      },
      ownKeys(t) {
        reads.add(`${prefix}#keys`);
        return Reflect.ownKeys(t);
      },
    });
    wrappers.set(target, proxy);
    return proxy;
  };
  return wrap(root, '') as T;
}
