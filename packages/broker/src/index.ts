export { createBroker, buildBroker, resolveBrokerProfile, Bastion } from './broker.js';
export type { BrokerOptions } from './broker.js';
export { ensureDevMaterial, announceFirstStart, FIRST_USER, PASSWORD_FILE } from './dev-setup.js';
export type { FirstStartInfo } from './dev-setup.js';
export { controlsFromProfile, Controls } from './controls.js';
export type { ControlFactory, ControlWiring, Service, Phase, WiringContext } from './controls.js';
export * from './identify/index.js';
export * from '@bastion/core';
