/**
 * Identify (ID.AM-1/2/3, ID.IS-1/4), read-only: the device inventory, the software inventory (also
 * as a CycloneDX 1.5 SBOM), the data-flow map (JSON, Mermaid, Graphviz DOT) and the cryptographic
 * report. Served by the broker's `identify` middleware (@bastion/broker), found by name and shape
 * like the other controls.
 */
import { HttpError } from '../http.js';
import type { AdminHost } from '../host.js';
import type { Route, RouteContext } from './route.js';

/** The parts of the identify control the API uses (its answers are JSON documents). */
export interface IdentifyControl {
  devices(): unknown;
  software(): Promise<unknown>;
  cyclonedx(): Promise<unknown>;
  flows(): unknown;
  flowsAs(format: 'json' | 'mermaid' | 'dot'): string;
  crypto(): Promise<unknown>;
}

export function identifyOf(host: AdminHost): IdentifyControl | undefined {
  const m = host.middleware.find((x) => x.name === 'identify') as unknown as Record<string, unknown> | undefined;
  const ok = m !== undefined && ['devices', 'software', 'cyclonedx', 'flows', 'flowsAs', 'crypto'].every((n) => typeof m[n] === 'function');
  return ok ? (m as unknown as IdentifyControl) : undefined;
}

function identify(ctx: RouteContext): IdentifyControl {
  const i = identifyOf(ctx.host);
  if (!i) throw new HttpError(404, 'not-enabled', 'the identify control is not on this broker (no "identify" middleware)');
  return i;
}

const FLOW_FORMATS = ['json', 'mermaid', 'dot'] as const;

export const identifyRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/identify/devices',
    action: 'identify.devices',
    control: 'ID.AM-1',
    handle(ctx) {
      const body = identify(ctx).devices() as { known?: number };
      return { status: 200, body, detail: { count: body.known } };
    },
  },
  {
    method: 'GET',
    path: '/v1/identify/software',
    action: 'identify.software',
    control: 'ID.AM-2',
    async handle(ctx) {
      return { status: 200, body: await identify(ctx).software() };
    },
  },
  {
    method: 'GET',
    path: '/v1/identify/software/cyclonedx',
    action: 'identify.sbom',
    control: 'ID.AM-2',
    async handle(ctx) {
      return { status: 200, body: await identify(ctx).cyclonedx() };
    },
  },
  {
    method: 'GET',
    path: '/v1/identify/flows',
    action: 'identify.flows',
    control: 'ID.AM-3',
    handle(ctx) {
      return { status: 200, body: identify(ctx).flows() };
    },
  },
  {
    method: 'GET',
    path: '/v1/identify/flows/:format',
    action: 'identify.flows',
    control: 'ID.AM-3',
    handle(ctx) {
      const format = ctx.params.format as string;
      if (!(FLOW_FORMATS as readonly string[]).includes(format)) throw new HttpError(404, 'not-found', `no flow format "${format}" (json, mermaid, dot)`);
      return { status: 200, body: { format, text: identify(ctx).flowsAs(format as (typeof FLOW_FORMATS)[number]) }, detail: { format } };
    },
  },
  {
    method: 'GET',
    path: '/v1/identify/crypto',
    action: 'identify.crypto',
    control: 'ID.IS-4',
    async handle(ctx) {
      return { status: 200, body: await identify(ctx).crypto() };
    },
  },
];
