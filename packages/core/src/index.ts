export * from './contract.js';
export * from './errors.js';
export * from './reasons.js';
export { SecurityEventBus } from './events.js';
export type { ListenOptions, SecurityEvent, SecurityEventType } from './events.js';
export { BastionBroker, createCoreBroker } from './broker.js';
export type { CoreBrokerOptions } from './broker.js';
export { DEFAULT_CIPHERS, secureContextOptions } from './listeners.js';
export type { Listener, ListenerOptions, TlsOptions, ProxyProtocolOptions } from './listeners.js';
export { DEFAULT_PROXY_TIMEOUT } from './listeners.js';
export { normalizeAddress, canonicalAddress } from './address.js';
export {
  detectProxyHeader,
  parseProxyHeader,
  readProxyHeader,
  ProxyProtocolError,
  PROXY_V1_MAX_LENGTH,
  PROXY_V2_MAX_LENGTH,
  PROXY_V2_SIGNATURE,
} from './proxy-protocol.js';
export type { ProxyEndpoint, ProxyExpectation, ProxyHeader, ProxyParse, ProxyProblem } from './proxy-protocol.js';
export { normalizeSerial, toClientCertificate } from './certificate.js';
export { chainOf, runVerdictChain } from './compose.js';
export { setKeepalive, hasSubscription, isClosing } from './client.js';
export type { AcceptCheck, AcceptRefusal, ConnectionLimits, ConnectionLimitName } from './connection-limits.js';
export { BANNED_AT_ACCEPT } from './connection-limits.js';
