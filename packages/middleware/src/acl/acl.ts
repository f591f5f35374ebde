/**
 * Topic access control (PR.AC-5): who may publish to, subscribe to and receive from which topics.
 *
 * Rules are compiled into topic tries (see compile.ts); each client keeps a small decision cache
 * per right (publish, read), dropped when the rules change (generation counter), so the hot paths —
 * authorizePublish and authorizeForward — answer from one WeakMap and one Map lookup and allocate
 * nothing on a cache hit. Rule changes (API or rules file) are validated whole, compiled, swapped in
 * at once, and live subscriptions are re-checked. Changes to the code rules are also told to change
 * listeners (`onChange`), which is how a cluster spreads them (packages/broker/src/controls/cluster.ts).
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { BrokerContext, ClientInfo, Denial, Middleware, PublishPacket, Subscription, Verdict } from '@bastion/core';
import { parse as parseYaml } from 'yaml';
import { AclRuleError, cloneRule, validateRule, validateRules } from './rules.js';
import type { AclAction, AclEffect, AclRule } from './rules.js';
import { CompiledAcl, Subject, firstMatch } from './compile.js';
import type { AclIdentity, CompiledRule, TrieNode } from './compile.js';

export interface AclOptions {
  /** Rules given in code or by the profile. Evaluated before the file's rules at equal priority. */
  rules?: AclRule[];
  /** A YAML or JSON file holding a list of rules (or `{ rules: [...] }`). */
  file?: string;
  /** Reload the file when it changes (default true when `file` is set). */
  watch?: boolean;
  /** Milliseconds to wait after the last change event before reloading (default 100). */
  reloadDebounce?: number;
  /** Decision when no rule matches (default 'deny'). */
  defaultEffect?: AclEffect;
  /** What happens to a client whose live subscription a rule change withdraws (default 'unsubscribe'). */
  onRevoked?: 'unsubscribe' | 'disconnect';
  /** A denied PUBLISH: acknowledge and drop, or close the connection (default: the broker's `publishDenied`). */
  publishDenied?: 'drop' | 'disconnect';
  /** Cached decisions per client and right (publish, read); 0 disables the cache. Default 256. */
  cacheSize?: number;
}

export interface AclChange {
  /** Rules now in force (code rules + file rules). */
  rules: number;
  /** Live subscriptions withdrawn because the new rules refuse them. */
  withdrawn: number;
  /** Clients disconnected (`onRevoked: 'disconnect'`). */
  disconnected: number;
}

export interface AclChangeOptions {
  /**
   * Who made the change, for the `acl.changed` event and change listeners (default 'api'). The
   * cluster marks what it applies for another node `cluster:<node id>` and never sends that back out.
   */
  origin?: string;
}

/** A change of the code rules, as told to `onChange` listeners (rules are copies). */
export type AclRuleChange = { readonly origin: string } & ({ readonly op: 'replace'; readonly rules: AclRule[] } | { readonly op: 'add'; readonly rule: AclRule } | { readonly op: 'remove'; readonly id: string });

export interface AclDecision {
  effect: AclEffect;
  /** The deciding rule; undefined when the default effect decided. */
  rule: AclRule | undefined;
  /** Position of the deciding rule in `rules()`; -1 for the default. */
  index: number;
}

export interface Acl extends Middleware {
  /** Replace the code-given rules: validated whole (AclRuleError, nothing applied), then swapped in. */
  setRules(rules: AclRule[], opts?: AclChangeOptions): Promise<AclChange>;
  /** Append one rule to the code-given rules. */
  addRule(rule: AclRule, opts?: AclChangeOptions): Promise<AclChange>;
  /** Remove a code-given rule by id; false when there is none (file rules change with the file). */
  removeRule(id: string, opts?: AclChangeOptions): Promise<boolean>;
  /** Every rule in force, in list order: code rules, then file rules (copies). */
  rules(): AclRule[];
  /** The code-given rules only (those setRules/addRule/removeRule change), copies. */
  codeRules(): AclRule[];
  /**
   * Hear every change of the code rules (not the rules file's), synchronously once it is swapped in,
   * before live subscriptions are re-checked. Returns an unsubscribe function.
   */
  onChange(listener: (change: AclRuleChange) => void): () => void;
  /** Re-read the rules file now; rejects (keeping the old rules) when it is invalid. */
  reload(): Promise<AclChange>;
  /** Decide without the cache, for any identity (diagnostics, admin tools, tests). */
  check(identity: AclIdentity, action: AclAction, topic: string): AclDecision;
  /** Bumped on every change of the rules in force. */
  readonly generation: number;
}

/** Per-client state: identity snapshot, trie roots for each right, and the decision caches. */
class ClientState {
  readonly gen: number;
  readonly username: string | undefined;
  readonly id: string;
  readonly groups: readonly string[];
  readonly subject: Subject;
  readonly publishRoots: TrieNode[];
  readonly subscribeRoots: TrieNode[];
  readonly readRoots: TrieNode[];
  /** topic → null (allowed) or the denial. */
  readonly publish = new Map<string, Denial | null>();
  readonly read = new Map<string, boolean>();

  constructor(client: ClientInfo, acl: CompiledAcl, gen: number) {
    this.gen = gen;
    this.username = client.username;
    this.id = client.id;
    this.groups = client.groups;
    this.subject = new Subject(client);
    this.publishRoots = acl.roots(this.subject, 'publish');
    this.subscribeRoots = acl.roots(this.subject, 'subscribe');
    this.readRoots = acl.roots(this.subject, 'read');
  }
}

function remember<V>(map: Map<string, V>, key: string, value: V, cap: number): void {
  if (cap <= 0) return;
  if (map.size >= cap) map.delete(map.keys().next().value as string); // oldest first
  map.set(key, value);
}

export async function readAclFile(file: string, takenIds: ReadonlySet<string> = new Set()): Promise<{ rules: AclRule[]; text: string }> {
  const source = file;
  const fault = (problem: string, cause?: unknown) => new AclRuleError({ index: -1, id: undefined, field: 'file', source }, problem, { cause });
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw fault(`cannot read the rules file: ${(err as Error).message}`, err);
  }
  let doc: unknown;
  try {
    doc = file.toLowerCase().endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw fault(`not valid ${file.toLowerCase().endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`, err);
  }
  // An empty file is refused rather than read as "no rules": an editor saving half a file must not drop every rule.
  if (doc === null || doc === undefined) throw fault('the rules file is empty; write [] for no rules');
  if (!Array.isArray(doc) && typeof doc === 'object') {
    const keys = Object.keys(doc as object);
    if (keys.length !== 1 || keys[0] !== 'rules') throw fault('must be a list of rules, or an object with only a `rules` list');
    doc = (doc as { rules: unknown }).rules;
  }
  return { rules: validateRules(doc, source, takenIds), text };
}

function idsOf(rules: readonly AclRule[]): Set<string> {
  const s = new Set<string>();
  for (const r of rules) if (r.id !== undefined) s.add(r.id);
  return s;
}

export function acl(opts: AclOptions = {}): Acl {
  const defaultEffect: AclEffect = opts.defaultEffect ?? 'deny';
  if (defaultEffect !== 'allow' && defaultEffect !== 'deny') throw new AclRuleError({ index: -1, id: undefined, field: 'defaultEffect', source: 'options' }, 'must be "allow" or "deny"');
  const cacheSize = opts.cacheSize ?? 256;
  const onRevoked = opts.onRevoked ?? 'unsubscribe';
  const publishAction = opts.publishDenied;
  const defaultAllows = defaultEffect === 'allow';
  const DEFAULT_PUBLISH = Object.freeze({ denied: true as const, reason: 'not-authorized' as const, message: 'no ACL rule allows publishing here', action: publishAction });
  const DEFAULT_SUBSCRIBE = Object.freeze({ denied: true as const, reason: 'not-authorized' as const, message: 'no ACL rule allows this subscription' });

  let codeRules: AclRule[] = validateRules(opts.rules ?? [], 'rules');
  let fileRules: AclRule[] = [];
  let fileText: string | undefined;
  let compiled = new CompiledAcl(codeRules, publishAction);
  let generation = 0;
  let states = new WeakMap<ClientInfo, ClientState>();
  let ctx: BrokerContext | undefined;
  let watcher: FSWatcher | undefined;
  let reloadTimer: NodeJS.Timeout | undefined;
  let closed = false;
  const listeners = new Set<(change: AclRuleChange) => void>();

  const stateOf = (client: ClientInfo): ClientState => {
    let st = states.get(client);
    if (st === undefined || st.gen !== generation || st.username !== client.username || st.id !== client.id || st.groups !== client.groups) {
      st = new ClientState(client, compiled, generation);
      states.set(client, st);
    }
    return st;
  };

  const emit = (type: string, message: string, detail: Record<string, unknown>, level: 'info' | 'error' = 'info') => {
    if (!ctx) return;
    ctx.logger[level]({ acl: detail }, message);
    ctx.events.emit({ type, time: Date.now(), control: 'PR.AC-5', source: 'acl', message, detail });
  };

  const tell = (change: AclRuleChange) => {
    for (const l of listeners) {
      try {
        l(change);
      } catch (err) {
        ctx?.logger.error({ err }, 'an ACL change listener failed');
      }
    }
  };

  /** Compile and swap in, then withdraw what the new rules refuse. Inputs are already validated. */
  const apply = async (nextCode: AclRule[], nextFile: AclRule[], origin: string, told?: AclRuleChange): Promise<AclChange> => {
    const next = new CompiledAcl([...nextCode, ...nextFile], publishAction); // may not throw after validation, but do it before swapping anyway
    codeRules = nextCode;
    fileRules = nextFile;
    compiled = next;
    generation++;
    states = new WeakMap(); // every cached decision is stale now
    // before the re-check awaits: listeners hear changes in the order they were swapped in
    if (told !== undefined && listeners.size > 0) tell(told);
    const change: AclChange = { rules: next.rules.length, withdrawn: 0, disconnected: 0 };
    if (!ctx) return change;
    const withdrawn = await ctx.recheckSubscriptions();
    change.withdrawn = withdrawn.reduce((n, w) => n + w.topics.length, 0);
    if (onRevoked === 'disconnect' && withdrawn.length > 0) {
      const lost = new Set(withdrawn.map((w) => w.client));
      change.disconnected = ctx.disconnectWhere((c) => lost.has(c), 'kicked', 'a subscription was withdrawn by an ACL change');
    }
    emit('acl.changed', `ACL rules changed (${origin})`, { origin, ...change });
    return change;
  };

  const validateCode = (rules: unknown): AclRule[] => validateRules(rules, 'rules', idsOf(fileRules));

  const mw: Acl = {
    name: 'acl',
    controls: ['PR.AC-5'],

    get generation() {
      return generation;
    },

    async setup(context) {
      ctx = context;
      if (opts.file === undefined) return;
      const file = opts.file;
      const loaded = await readAclFile(file, idsOf(codeRules)); // a bad file at start-up fails the start
      fileRules = loaded.rules;
      fileText = loaded.text;
      compiled = new CompiledAcl([...codeRules, ...fileRules], publishAction);
      generation++;
      states = new WeakMap();
      if (opts.watch === false) return;
      const name = basename(file);
      const delay = opts.reloadDebounce ?? 100;
      // Watch the directory: editors often replace the file (rename), which a file watch would miss.
      watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
        if (changed !== null && changed !== name) return;
        clearTimeout(reloadTimer);
        reloadTimer = setTimeout(() => {
          mw.reload().catch((err: unknown) => {
            emit('acl.reload.failed', `ACL rules file rejected; the previous rules stay in force: ${(err as Error).message}`, { file, error: (err as Error).message }, 'error');
          });
        }, delay);
        reloadTimer.unref();
      });
      watcher.on('error', (err) => context.logger.warn({ err, file }, 'ACL rules file watch failed'));
    },

    async setRules(rules, o = {}) {
      const origin = o.origin ?? 'api';
      const valid = validateCode(rules);
      return apply(valid, fileRules, origin, { origin, op: 'replace', rules: valid.map(cloneRule) });
    },

    async addRule(rule, o = {}) {
      const origin = o.origin ?? 'api';
      const taken = idsOf([...codeRules, ...fileRules]);
      const valid = validateRule(rule, codeRules.length, 'rules', taken);
      return apply([...codeRules, valid], fileRules, origin, { origin, op: 'add', rule: cloneRule(valid) });
    },

    async removeRule(id, o = {}) {
      const origin = o.origin ?? 'api';
      const next = codeRules.filter((r) => r.id !== id);
      if (next.length === codeRules.length) return false;
      await apply(next, fileRules, origin, { origin, op: 'remove', id });
      return true;
    },

    rules() {
      return [...codeRules, ...fileRules].map(cloneRule);
    },

    codeRules() {
      return codeRules.map(cloneRule);
    },

    onChange(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },

    async reload() {
      if (opts.file === undefined) return { rules: codeRules.length + fileRules.length, withdrawn: 0, disconnected: 0 };
      const loaded = await readAclFile(opts.file, idsOf(codeRules));
      if (closed) return { rules: codeRules.length + fileRules.length, withdrawn: 0, disconnected: 0 };
      if (loaded.text === fileText) return { rules: codeRules.length + fileRules.length, withdrawn: 0, disconnected: 0 };
      fileText = loaded.text;
      return apply(codeRules, loaded.rules, `file ${opts.file}`);
    },

    check(identity, action, topic) {
      const s = new Subject(identity);
      const r = firstMatch(compiled.roots(s, action), s, topic, action === 'subscribe');
      if (r === undefined) return { effect: defaultEffect, rule: undefined, index: -1 };
      return { effect: r.rule.effect, rule: cloneRule(r.rule), index: r.index };
    },

    authorizePublish(client: ClientInfo, packet: PublishPacket): Verdict {
      const st = stateOf(client);
      const topic = packet.topic;
      let v = st.publish.get(topic);
      if (v === undefined) {
        const r = firstMatch(st.publishRoots, st.subject, topic, false);
        v = r === undefined ? (defaultAllows ? null : DEFAULT_PUBLISH) : r.allow ? null : (r.publishDenial as Denial);
        remember(st.publish, topic, v, cacheSize);
      }
      return v === null ? undefined : v;
    },

    authorizeSubscribe(client: ClientInfo, sub: Subscription): Verdict {
      const st = stateOf(client);
      const r: CompiledRule | undefined = firstMatch(st.subscribeRoots, st.subject, sub.topic, true);
      const verdict = r === undefined ? (defaultAllows ? undefined : DEFAULT_SUBSCRIBE) : r.allow ? undefined : r.subscribeDenial;
      return verdict;
    },

    authorizeForward(client: ClientInfo, packet: PublishPacket): boolean {
      const st = stateOf(client);
      const topic = packet.topic;
      let v = st.read.get(topic);
      if (v === undefined) {
        const r = firstMatch(st.readRoots, st.subject, topic, false);
        v = r === undefined ? defaultAllows : r.allow;
        remember(st.read, topic, v, cacheSize);
      }
      return v;
    },

    close() {
      closed = true;
      listeners.clear();
      clearTimeout(reloadTimer);
      watcher?.close();
      watcher = undefined;
    },
  };
  return mw;
}

