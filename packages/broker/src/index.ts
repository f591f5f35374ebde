export { createBroker, buildBroker, resolveBrokerProfile, Bastion } from './broker.js';
export type { BrokerOptions } from './broker.js';
export { ensureDevMaterial, announceFirstStart, FIRST_USER, PASSWORD_FILE } from './dev-setup.js';
export type { FirstStartInfo } from './dev-setup.js';
export { controlsFromProfile, Controls } from './controls.js';
export { wireControls, isReconfigurable, RestartRequired } from './controls.js';
export type { ControlFactory, ControlWiring, Service, Phase, WiringContext, WiredControl, Reconfigurable, ReconfigureContext, PreparedChange } from './controls.js';
export type { BastionExtras } from './broker.js';
export { formatReloadIssue } from './reload.js';
export type { ReloadResult, ReloadIssue } from './reload.js';
export {
  assess,
  assessmentExitCode,
  renderAssessment,
  renderAssessmentMarkdown,
  implementationsOf,
  implementationsOfEffective,
  implementationsFrom,
  coreImplementations,
  redactProfile,
  effectiveProfile,
} from './assess.js';
export type { Assessment, SubcategoryAssessment, Implementation, EffectiveProfile, AssessOptions, Status as AssessmentStatus } from './assess.js';
export * from './identify/index.js';
export * from '@bastion/core';
