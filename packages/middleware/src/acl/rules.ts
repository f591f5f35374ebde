/**
 * ACL rules: their types and their validation. A rule set is validated whole before anything is
 * applied; the first fault is reported as an AclRuleError naming the rule (index and id) and field.
 */
import { BastionError } from '@bastion/core';

export type AclEffect = 'allow' | 'deny';
/** `publish`: send to a topic; `subscribe`: register a filter; `read`: receive a message on a topic. */
export type AclAction = 'publish' | 'subscribe' | 'read';
export const ACL_ACTIONS: readonly AclAction[] = Object.freeze(['publish', 'subscribe', 'read']);

export interface AclCertificateSelector {
  /** Subject common name, exact. */
  cn?: string;
  /** Subject organizational unit, exact (matches when any OU of the subject equals it). */
  ou?: string;
  /** Subject organization, exact (matches when any O of the subject equals it). */
  o?: string;
}

export interface AclRule {
  /** Unique within the rule set; names the rule in errors, events and `removeRule`. */
  id?: string;
  effect: AclEffect;
  /** Higher first; default 0. Equal priorities keep file order. */
  priority?: number;
  /** Authenticated usernames, exact; `'*'` = any authenticated user. */
  users?: string[];
  /** Groups given by an authenticator; any one matches. */
  groups?: string[];
  /** MQTT client ids, exact or glob (`*` any run of characters, `?` one character). */
  clientIds?: string[];
  /** Verified client-certificate subject; every given field must match. */
  certificate?: AclCertificateSelector;
  actions: AclAction[];
  /** Topic filters: `+`, `#`, and the whole-level placeholders `%u`, `%c`, `%cn`. */
  topics: string[];
}

export interface AclRuleErrorDetail {
  /** Position in the rule list (0-based), or -1 when the fault is the list itself. */
  index: number;
  id: string | undefined;
  /** The field at fault, e.g. `topics[1]`, `effect`. */
  field: string;
  /** Where the rules came from: `rules` (code / profile) or the rules file path. */
  source: string;
}

/** A rule set was refused: nothing of it was applied. */
export class AclRuleError extends BastionError {
  readonly index: number;
  readonly ruleId: string | undefined;
  readonly field: string;
  readonly source: string;
  constructor(detail: AclRuleErrorDetail, problem: string, options?: { cause?: unknown }) {
    const where = detail.index < 0 ? detail.source : `${detail.source}: rule ${detail.index}${detail.id !== undefined ? ` (id "${detail.id}")` : ''}`;
    super('BASTION_ERR_ACL_RULE', `${where}, ${detail.field}: ${problem}`, options);
    this.name = 'AclRuleError';
    this.index = detail.index;
    this.ruleId = detail.id;
    this.field = detail.field;
    this.source = detail.source;
  }
}

export const PLACEHOLDERS = Object.freeze(['%u', '%c', '%cn'] as const);
export type Placeholder = (typeof PLACEHOLDERS)[number];

const RULE_KEYS = new Set(['id', 'effect', 'priority', 'users', 'groups', 'clientIds', 'certificate', 'actions', 'topics']);
const CERT_KEYS = new Set(['cn', 'ou', 'o']);
const MAX_TOPIC_BYTES = 65535;

/**
 * Check one topic filter as a rule may write it; returns the problem or undefined. `+` and `#` must
 * be whole levels, `#` last; a level holding `%u`/`%c`/`%cn` must be exactly that placeholder.
 */
export function topicFilterProblem(filter: string): string | undefined {
  if (typeof filter !== 'string') return 'must be a string';
  if (filter.length === 0) return 'must not be empty';
  if (Buffer.byteLength(filter) > MAX_TOPIC_BYTES) return 'longer than 65535 bytes';
  if (filter.includes('\u0000')) return 'must not contain NUL';
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i] as string;
    if (l === '#') {
      if (i !== levels.length - 1) return `"#" must be the last level in "${filter}"`;
      continue;
    }
    if (l === '+' || (PLACEHOLDERS as readonly string[]).includes(l)) continue;
    if (l.includes('#') || l.includes('+')) return `"+" and "#" must be whole levels in "${filter}"`;
    if (/%[uc]/i.test(l)) return `placeholders (%u, %c, %cn) must be whole levels in "${filter}"`;
  }
  return undefined;
}

function nonEmptyStrings(v: unknown): string | undefined {
  if (!Array.isArray(v)) return 'must be a list of strings';
  if (v.length === 0) return 'must not be empty (leave the field out to match everyone)';
  for (let i = 0; i < v.length; i++) {
    if (typeof v[i] !== 'string' || v[i] === '') return `entry ${i} must be a non-empty string`;
  }
  return undefined;
}

/**
 * Validate a rule list (as parsed from JSON/YAML or given in code) and return normalized copies.
 * Throws AclRuleError on the first fault. `takenIds` are ids used elsewhere in the same set.
 */
export function validateRules(input: unknown, source = 'rules', takenIds: ReadonlySet<string> = new Set(), startIndex = 0): AclRule[] {
  if (!Array.isArray(input)) throw new AclRuleError({ index: -1, id: undefined, field: 'rules', source }, 'must be a list of rules');
  const ids = new Set(takenIds);
  const out: AclRule[] = [];
  for (let n = 0; n < input.length; n++) {
    out.push(validateRule(input[n], n + startIndex, source, ids));
  }
  return out;
}

export function validateRule(raw: unknown, index: number, source: string, ids: Set<string>): AclRule {
  const at = (field: string, id: string | undefined, problem: string): never => {
    throw new AclRuleError({ index, id, field, source }, problem);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return at('rule', undefined, 'must be an object');
  const r = raw as Record<string, unknown>;
  const id = typeof r.id === 'string' ? r.id : undefined;
  for (const k of Object.keys(r)) if (!RULE_KEYS.has(k)) at(k, id, `unknown field (known: ${[...RULE_KEYS].join(', ')})`);
  if (r.id !== undefined) {
    if (typeof r.id !== 'string' || r.id === '') at('id', undefined, 'must be a non-empty string');
    if (ids.has(r.id as string)) at('id', id, 'is used by another rule');
    ids.add(r.id as string);
  }
  if (r.effect !== 'allow' && r.effect !== 'deny') at('effect', id, `must be "allow" or "deny", got ${JSON.stringify(r.effect)}`);
  if (r.priority !== undefined && (typeof r.priority !== 'number' || !Number.isFinite(r.priority))) at('priority', id, 'must be a finite number');
  for (const f of ['users', 'groups', 'clientIds'] as const) {
    if (r[f] === undefined) continue;
    const p = nonEmptyStrings(r[f]);
    if (p) at(f, id, p);
  }
  if (r.certificate !== undefined) {
    const c = r.certificate;
    if (typeof c !== 'object' || c === null || Array.isArray(c)) at('certificate', id, 'must be an object with cn, ou and/or o');
    const cr = c as Record<string, unknown>;
    const keys = Object.keys(cr);
    if (keys.length === 0) at('certificate', id, 'must name at least one of cn, ou, o');
    for (const k of keys) {
      if (!CERT_KEYS.has(k)) at(`certificate.${k}`, id, 'unknown field (known: cn, ou, o)');
      if (typeof cr[k] !== 'string' || cr[k] === '') at(`certificate.${k}`, id, 'must be a non-empty string');
    }
  }
  if (!Array.isArray(r.actions) || r.actions.length === 0) at('actions', id, 'must be a non-empty list of "publish", "subscribe", "read"');
  const actions = r.actions as unknown[];
  for (let i = 0; i < actions.length; i++) {
    if (!(ACL_ACTIONS as readonly unknown[]).includes(actions[i])) at(`actions[${i}]`, id, `must be "publish", "subscribe" or "read", got ${JSON.stringify(actions[i])}`);
  }
  if (!Array.isArray(r.topics) || r.topics.length === 0) at('topics', id, 'must be a non-empty list of topic filters');
  const topics = r.topics as unknown[];
  for (let i = 0; i < topics.length; i++) {
    const p = topicFilterProblem(topics[i] as string);
    if (p) at(`topics[${i}]`, id, p);
  }
  const rule: AclRule = { effect: r.effect as AclEffect, actions: [...new Set(actions as AclAction[])], topics: [...(topics as string[])] };
  if (id !== undefined) rule.id = id;
  if (r.priority !== undefined) rule.priority = r.priority as number;
  if (r.users !== undefined) rule.users = [...(r.users as string[])];
  if (r.groups !== undefined) rule.groups = [...(r.groups as string[])];
  if (r.clientIds !== undefined) rule.clientIds = [...(r.clientIds as string[])];
  if (r.certificate !== undefined) rule.certificate = { ...(r.certificate as AclCertificateSelector) };
  return rule;
}

/** A deep copy (rules handed out never alias the compiled ones). */
export function cloneRule(r: AclRule): AclRule {
  return structuredClone(r);
}
