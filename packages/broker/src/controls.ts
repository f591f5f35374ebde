/**
 * Turns a resolved profile into the middleware list and the broker services.
 *
 * Each control is wired in its own file under `controls/` and listed once below. A control says
 * in which phase of the data plane it runs, so the middleware list always reads: gates before
 * CONNECT, then authentication, then authorization, then limits, then observers.
 */
import type { Middleware } from '@bastion/core';
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
  start(broker: Bastion): void | Promise<void>;
  stop(): void | Promise<void>;
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
  const wired: ControlWiring[] = [];
  for (const factory of FACTORIES) {
    const w = await factory({ profile, logger });
    if (w) wired.push(w);
  }
  wired.sort((a, b) => PHASE_ORDER[a.phase] - PHASE_ORDER[b.phase]);
  return new Controls(
    wired.flatMap((w) => w.middleware ?? []),
    wired.flatMap((w) => w.services ?? []),
  );
}
