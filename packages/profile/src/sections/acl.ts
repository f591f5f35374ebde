/**
 * `acl`: who may publish, subscribe to and receive which topics (PR.AC-5). Rules inline or in a
 * separate file (reloaded on change); default deny from tier 2 up.
 */
import { z } from 'zod';
import { pathString } from '../primitives.js';
import { defineSection } from './section.js';

const ruleSchema = z.strictObject({
  id: z.string().min(1).optional().describe('Unique rule id: names the rule in errors, events and the admin API.'),
  effect: z.enum(['allow', 'deny']).describe('What a matching rule decides.'),
  priority: z.number().int().optional().describe('Higher priorities are checked first (default 0); equal priorities keep file order.'),
  users: z.array(z.string().min(1)).optional().describe("Authenticated usernames, exact; '*' means any authenticated user."),
  groups: z.array(z.string().min(1)).optional().describe('Groups given by the users file; any one matches.'),
  clientIds: z.array(z.string().min(1)).optional().describe('MQTT client ids, exact or glob (* any run, ? one character).'),
  certificate: z
    .strictObject({
      cn: z.string().min(1).optional().describe('Subject common name, exact.'),
      ou: z.string().min(1).optional().describe('Subject organizational unit, exact.'),
      o: z.string().min(1).optional().describe('Subject organization, exact.'),
    })
    .optional()
    .describe('Verified client-certificate subject; every given field must match.'),
  actions: z.array(z.enum(['publish', 'subscribe', 'read'])).min(1).describe('Rights the rule decides: publish, subscribe, read (receive at delivery).'),
  topics: z.array(z.string().min(1)).min(1).describe('Topic filters with + and #; whole-level placeholders %u (username), %c (client id), %cn (certificate CN).'),
});

export type AclRuleInput = z.output<typeof ruleSchema>;

export interface AclSettings {
  defaultEffect: 'allow' | 'deny';
  rules: AclRuleInput[];
  /** Absolute path of a YAML/JSON rules file, reloaded when it changes. */
  file?: string;
  onRevoked: 'unsubscribe' | 'disconnect';
  publishDenied: 'drop' | 'disconnect';
}

export const aclSection = defineSection({
  key: 'acl',
  schema: z
    .strictObject({
      defaultEffect: z.enum(['allow', 'deny']).optional().describe('Decision when no rule matches. Default: allow at tier 1 (PR.AC), deny from tier 2 up.'),
      rules: z.array(ruleSchema).optional().describe('Rules, first match wins (higher priority first, then this order). Rules from `file` come after these.'),
      file: pathString().optional().describe('A YAML or JSON file holding a list of rules; reloaded when it changes (a bad file keeps the rules in force).'),
      onRevoked: z.enum(['unsubscribe', 'disconnect']).optional().describe('When a rule change withdraws a live subscription: remove it silently (unsubscribe, default) or disconnect the client.'),
      publishDenied: z.enum(['drop', 'disconnect']).optional().describe('A refused PUBLISH: acknowledge and drop it (default at tier 1–2, allowed by MQTT 3.1.1) or close the connection (default from tier 3).'),
    })
    .describe('Authorization rules (PR.AC-5): separate publish, subscribe and read rights per user, group, client id or certificate.'),
  resolve(parsed, ctx): AclSettings | undefined {
    const tier = ctx.tierFor('PR.AC-5');
    // Tier 1 with no acl section: no ACL middleware at all (anything goes, as in plain Aedes).
    if (parsed === undefined && tier < 2) return undefined;
    return {
      defaultEffect: parsed?.defaultEffect ?? (tier >= 2 ? 'deny' : 'allow'),
      rules: parsed?.rules ?? [],
      ...(parsed?.file === undefined ? {} : { file: ctx.abs(parsed.file) }),
      onRevoked: parsed?.onRevoked ?? 'unsubscribe',
      publishDenied: parsed?.publishDenied ?? (tier >= 3 ? 'disconnect' : 'drop'),
    };
  },
  tiers: {
    category: 'PR.AC',
    controls: ['PR.AC-5'],
    summary: (v, control) =>
      v === undefined
        ? control === undefined
          ? 'off: no topic authorization'
          : ''
        : `default ${v.defaultEffect}, ${v.rules.length} inline rule${v.rules.length === 1 ? '' : 's'}${v.file === undefined ? '' : ' + rules file'}; a refused PUBLISH is ${v.publishDenied === 'drop' ? 'dropped' : 'disconnected'}`,
    floors: [
      {
        control: 'PR.AC-5',
        from: 2,
        key: 'acl.defaultEffect',
        requirement: 'deny — what no rule allows is refused',
        check: (v) =>
          v === undefined ? { path: [], message: 'no ACL' } : v.defaultEffect === 'deny' ? undefined : { path: ['defaultEffect'], message: 'default allow (defaultEffect: allow)' },
      },
    ],
  },
});
