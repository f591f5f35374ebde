export { acl, readAclFile } from './acl.js';
export type { Acl, AclOptions, AclChange, AclChangeOptions, AclRuleChange, AclDecision } from './acl.js';
export { AclRuleError, ACL_ACTIONS, validateRules, topicFilterProblem } from './rules.js';
export type { AclRule, AclAction, AclEffect, AclCertificateSelector } from './rules.js';
export type { AclIdentity } from './compile.js';
