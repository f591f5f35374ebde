/**
 * Topic ACL (PR.AC-5), live. Changes go through the ACL middleware, which validates a rule set whole
 * before swapping it in (all or nothing) and re-checks live subscriptions. Only the rules given in
 * code or the profile change here; rules from the ACL's rules file change with that file. Changes
 * made here are not written anywhere: they last until the broker restarts (see docs/admin.md).
 */
import { randomBytes } from 'node:crypto';
import type { AclRule } from '@bastion/middleware';
import { HttpError, parseBody } from '../http.js';
import { aclOf } from '../host.js';
import type { AclControl } from '../host.js';
import { aclReplaceBody, aclRuleBody } from '../schemas.js';
import type { Route, RouteContext } from './route.js';

function acl(ctx: RouteContext): AclControl {
  const a = aclOf(ctx.host);
  if (!a) throw new HttpError(404, 'not-enabled', 'the ACL is not enabled on this broker (no "acl" middleware)');
  return a;
}

/** The ACL refuses a bad rule set with AclRuleError naming the rule and field: that is the 400's reason. */
async function applying<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if ((err as { code?: string }).code === 'BASTION_ERR_ACL_RULE') throw new HttpError(400, 'bad-request', (err as Error).message);
    throw err;
  }
}

export const aclRoutes: Route[] = [
  {
    method: 'GET',
    path: '/v1/acl',
    action: 'acl.list',
    control: 'PR.AC-5',
    handle(ctx) {
      const a = acl(ctx);
      const rules = a.rules();
      return { status: 200, body: { rules, generation: a.generation }, detail: { count: rules.length } };
    },
  },
  {
    method: 'POST',
    path: '/v1/acl',
    action: 'acl.add',
    control: 'PR.AC-5',
    body: true,
    async handle(ctx) {
      const a = acl(ctx);
      const raw = parseBody(aclRuleBody, ctx.body);
      // a rule added here gets an id so that it can be removed by id later
      const rule = (raw.id === undefined ? { id: `api-${randomBytes(4).toString('hex')}`, ...raw } : raw) as unknown as AclRule;
      const change = await applying(() => a.addRule(rule));
      const added = a.rules().find((r) => r.id === rule.id) ?? rule;
      return { status: 201, body: { rule: added, change }, message: `ACL rule ${rule.id} added`, detail: { rule: added, change } };
    },
  },
  {
    method: 'PUT',
    path: '/v1/acl',
    action: 'acl.replace',
    control: 'PR.AC-5',
    body: true,
    async handle(ctx) {
      const a = acl(ctx);
      const rules = parseBody(aclReplaceBody, ctx.body);
      const change = await applying(() => a.setRules(rules as AclRule[]));
      return { status: 200, body: { rules: a.rules(), change }, message: `ACL replaced (${rules.length} rules)`, detail: { count: rules.length, ids: rules.map((r) => (r as { id?: unknown }).id).filter((x) => typeof x === 'string'), change } };
    },
  },
  {
    method: 'DELETE',
    path: '/v1/acl/:id',
    action: 'acl.remove',
    control: 'PR.AC-5',
    async handle(ctx) {
      const a = acl(ctx);
      const id = ctx.params.id as string;
      if (!(await a.removeRule(id))) {
        if (a.rules().some((r) => r.id === id)) throw new HttpError(409, 'conflict', `rule "${id}" comes from the ACL rules file; change it there`);
        throw new HttpError(404, 'not-found', `no ACL rule with id "${id}"`);
      }
      return { status: 200, body: { removed: id }, message: `ACL rule ${id} removed`, detail: { ruleId: id } };
    },
  },
];
