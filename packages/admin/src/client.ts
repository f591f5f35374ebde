/**
 * A small client for the admin API (the `bastion admin` command uses it; so can scripts). Speaks
 * HTTP or HTTPS, with a custom CA and a client certificate for mutual TLS; the token goes in the
 * Authorization header only.
 */
import http from 'node:http';
import https from 'node:https';
import { BastionError } from '@bastion/core';

export interface AdminClientOptions {
  /** `http://127.0.0.1:8884`, `https://broker.example:8884` */
  url: string;
  token?: string | undefined;
  /** CA(s) that signed the admin API's certificate (default: the system CAs). */
  ca?: string | Buffer | Array<string | Buffer> | undefined;
  /** Client certificate and key, for an API that authenticates by certificate. */
  cert?: string | Buffer | undefined;
  key?: string | Buffer | undefined;
  /** Milliseconds (default 15 s). */
  timeout?: number;
}

/** The API answered with an error: status, its code (`not-found`, `bad-request` …) and message. */
export class AdminApiError extends BastionError {
  constructor(
    readonly status: number,
    readonly apiCode: string,
    message: string,
  ) {
    super('BASTION_ERR_ADMIN_API', message);
    this.name = 'AdminApiError';
  }
}

export class AdminClient {
  readonly #opts: AdminClientOptions;
  readonly #base: URL;

  constructor(opts: AdminClientOptions) {
    this.#opts = opts;
    let base: URL;
    try {
      base = new URL(opts.url);
    } catch {
      throw new BastionError('BASTION_ERR_ADMIN_API', `not a URL: ${opts.url}`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new BastionError('BASTION_ERR_ADMIN_API', `the admin API URL must be http:// or https://, got ${opts.url}`);
    this.#base = base;
  }

  get url(): string {
    return this.#base.origin;
  }

  request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const url = new URL(path, this.#base);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#opts.token) headers.authorization = `Bearer ${this.#opts.token}`;
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const isTls = url.protocol === 'https:';
    const opts: https.RequestOptions = { method, headers, timeout: this.#opts.timeout ?? 15_000 };
    if (isTls) {
      if (this.#opts.ca !== undefined) opts.ca = this.#opts.ca;
      if (this.#opts.cert !== undefined) opts.cert = this.#opts.cert;
      if (this.#opts.key !== undefined) opts.key = this.#opts.key;
    }
    return new Promise<T>((resolve, reject) => {
      const req = (isTls ? https : http).request(url, opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = text === '' ? undefined : JSON.parse(text);
          } catch {
            json = undefined;
          }
          if (status >= 200 && status < 300) return resolve(json as T);
          const err = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
          reject(new AdminApiError(status, err?.code ?? 'http-error', `${err?.message ?? (text.trim() || res.statusMessage || 'request failed')} (HTTP ${status})`));
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${opts.timeout} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => {
        reject(new BastionError('BASTION_ERR_ADMIN_UNREACHABLE', `cannot reach the admin API at ${this.#base.origin}: ${err.code ?? err.message}`, { cause: err }));
      });
      req.end(payload);
    });
  }

  health() {
    return this.request<Record<string, unknown>>('GET', '/v1/health');
  }
  clients() {
    return this.request<{ clients: Array<Record<string, unknown>> }>('GET', '/v1/clients');
  }
  client(id: string) {
    return this.request<Record<string, unknown>>('GET', `/v1/clients/${encodeURIComponent(id)}`);
  }
  disconnect(id: string, reason?: string) {
    return this.request<Record<string, unknown>>('POST', `/v1/clients/${encodeURIComponent(id)}/disconnect`, reason === undefined ? undefined : { reason });
  }
  bans() {
    return this.request<{ bans: Array<Record<string, unknown>> }>('GET', '/v1/bans');
  }
  ban(spec: { ip?: string; clientId?: string; username?: string; duration: string | number; reason?: string }) {
    return this.request<{ ban: Record<string, unknown> }>('POST', '/v1/bans', spec);
  }
  unban(id: string) {
    return this.request<Record<string, unknown>>('DELETE', `/v1/bans/${encodeURIComponent(id)}`);
  }
  acl() {
    return this.request<{ rules: Array<Record<string, unknown>>; generation: number }>('GET', '/v1/acl');
  }
  addAclRule(rule: Record<string, unknown>) {
    return this.request<{ rule: Record<string, unknown>; change: Record<string, unknown> }>('POST', '/v1/acl', rule);
  }
  removeAclRule(id: string) {
    return this.request<Record<string, unknown>>('DELETE', `/v1/acl/${encodeURIComponent(id)}`);
  }
  replaceAcl(rules: unknown[]) {
    return this.request<{ rules: Array<Record<string, unknown>>; change: Record<string, unknown> }>('PUT', '/v1/acl', { rules });
  }
  users() {
    return this.request<{ users: Array<{ username: string; groups: string[]; sessions: number }> }>('GET', '/v1/users');
  }
  /** `password: undefined`: the broker generates a device token and returns it (`token`), once. */
  addUser(username: string, password: string | undefined, groups?: string[]) {
    const secret = password === undefined ? { token: true } : { password };
    return this.request<{ user: { username: string; groups: string[] }; token?: string }>('POST', '/v1/users', groups === undefined ? { username, ...secret } : { username, ...secret, groups });
  }
  removeUser(username: string) {
    return this.request<{ removed: string; disconnected: number }>('DELETE', `/v1/users/${encodeURIComponent(username)}`);
  }
  /** `password: undefined`: a new generated device token, returned once (`token`). */
  setPassword(username: string, password: string | undefined) {
    return this.request<{ username: string; disconnected: number; token?: string }>('POST', `/v1/users/${encodeURIComponent(username)}/password`, password === undefined ? { token: true } : { password });
  }
  /** Lockdown state, blocked topics and the response engine's action records (oldest first). */
  responses() {
    return this.request<{ lockedDown: boolean; blockedTopics: Array<{ topic: string; expiresAt?: number }>; history: ResponseRecord[] }>('GET', '/v1/responses');
  }
  /** `duration`: "15m", milliseconds; absent = until unblocked. */
  blockTopic(topic: string, opts: { duration?: string | number; reason?: string } = {}) {
    return this.request<{ action: ResponseRecord }>('POST', '/v1/responses/block-topic', { topic, ...opts });
  }
  unblockTopic(topic: string) {
    return this.request<{ unblocked: string }>('POST', '/v1/responses/unblock-topic', { topic });
  }
  /** `duration` absent: the profile's `responses.lockdown.duration` (none: until lifted). */
  lockdown(opts: { duration?: string | number; reason?: string; disconnectOthers?: boolean } = {}) {
    return this.request<{ action: ResponseRecord }>('POST', '/v1/responses/lockdown', opts);
  }
  liftLockdown() {
    return this.request<{ lockedDown: false }>('DELETE', '/v1/responses/lockdown');
  }
  revoke(username: string, reason?: string) {
    return this.request<{ action: ResponseRecord }>('POST', '/v1/responses/revoke', { username, reason });
  }
  /** Closes the broker: sends the `confirm: true` the API insists on. */
  shutdown(reason?: string) {
    return this.request<{ action: ResponseRecord }>('POST', '/v1/responses/shutdown', { confirm: true, reason });
  }
}

/** An action record of the response engine, as the API returns it (`@bastion/detect` ActionRecord). */
export interface ResponseRecord {
  id: string;
  /** Epoch milliseconds. */
  time: number;
  action: string;
  control: string;
  outcome: 'done' | 'dry-run' | 'skipped' | 'failed';
  why?: string;
  target: { ip?: string; clientId?: string; username?: string; topic?: string };
  duration?: number;
  detection?: string;
  actor: string;
  detail?: Record<string, unknown>;
}

