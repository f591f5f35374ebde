/**
 * @bastion/admin: the authenticated admin API (HTTP/HTTPS, bearer tokens or client certificates)
 * to see and change a running broker live — clients, kicks, bans, ACL, users — and its client.
 */
export { AdminServer, adminServer, DEFAULT_ADMIN_HOST, DEFAULT_ADMIN_PORT, DEFAULT_MAX_BODY } from './server.js';
export type { AdminServerOptions, AdminUpdate } from './server.js';
export type { AdminHost, AclControl, BansControl, PasswordsControl } from './host.js';
export type { Actor } from './auth.js';
export { newToken, hashToken, TokenVerifier, TOKEN_PREFIX, TOKEN_HASH_PATTERN } from './tokens.js';
export type { AdminTokenSpec } from './tokens.js';
export { AuthFailureLimiter, DEFAULT_AUTH_FAILURES } from './auth-failures.js';
export type { AuthFailureBudget, AuthFailureOptions } from './auth-failures.js';
export { trafficCounters } from './traffic.js';
export type { TrafficCounters, TrafficCounts } from './traffic.js';
export { AdminClient, AdminApiError } from './client.js';
export type { AdminClientOptions, ResponseRecord } from './client.js';
export type { ClientView } from './routes/clients.js';
