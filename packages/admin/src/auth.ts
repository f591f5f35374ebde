/**
 * Who is calling the admin API (PR.AC-3): a bearer token whose hash is in the profile, or a verified
 * client certificate whose CN is on the allow-list; either one is enough. Anonymous access exists
 * only for explicit development setups on loopback (checked when the server is configured).
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { toClientCertificate } from '@bastion/core';
import type { TokenVerifier } from './tokens.js';

export interface Actor {
  /** `token:<name>`, `cert:<CN>` or `anonymous`: recorded in every admin event. */
  readonly id: string;
  readonly via: 'token' | 'certificate' | 'anonymous';
  /** May only read (GET). */
  readonly readOnly: boolean;
}

export interface AuthConfig {
  readonly tokens: TokenVerifier;
  /** Certificate CNs allowed in; empty = certificates do not authenticate. */
  readonly allowCns: ReadonlySet<string>;
  readonly anonymous: boolean;
}

export type AuthResult = { ok: true; actor: Actor } | { ok: false; reason: string; who: string | undefined };

const ANONYMOUS: Actor = Object.freeze({ id: 'anonymous', via: 'anonymous', readOnly: false });
const BEARER = /^Bearer ([A-Za-z0-9._~+/=-]{1,512})$/;

export function authenticate(req: IncomingMessage, cfg: AuthConfig): AuthResult {
  let who: string | undefined;
  let certProblem: string | undefined;
  const socket = req.socket as Partial<TLSSocket>;
  if (typeof socket.getPeerCertificate === 'function') {
    const raw = socket.getPeerCertificate();
    if (raw && Object.keys(raw).length > 0) {
      // with clientCertificate 'optional' the handshake lets a bad certificate through: refuse it here
      if (!socket.authorized) return { ok: false, reason: `client certificate rejected: ${String(socket.authorizationError ?? 'not verified')}`, who };
      const cn = toClientCertificate(raw).commonName;
      who = cn === undefined ? undefined : `cert:${cn}`;
      if (cn !== undefined && cfg.allowCns.has(cn)) return { ok: true, actor: { id: `cert:${cn}`, via: 'certificate', readOnly: false } };
      certProblem = cn === undefined ? 'client certificate has no CN' : `certificate CN "${cn}" is not on the admin allow-list`;
    }
  }
  const header = req.headers.authorization;
  if (header !== undefined) {
    const m = BEARER.exec(header);
    if (!m) return { ok: false, reason: 'malformed Authorization header (expected "Bearer <token>")', who };
    const token = cfg.tokens.verify(m[1] as string);
    if (token === undefined) return { ok: false, reason: 'unknown token', who };
    return { ok: true, actor: { id: `token:${token.name}`, via: 'token', readOnly: token.readOnly === true } };
  }
  if (certProblem !== undefined) return { ok: false, reason: certProblem, who };
  if (cfg.anonymous) return { ok: true, actor: ANONYMOUS };
  return { ok: false, reason: 'no credentials (send "Authorization: Bearer <token>" or an allowed client certificate)', who };
}
