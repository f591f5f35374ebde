/**
 * ACL compilation: rules become topic tries, one per right (publish, subscribe, read) and per
 * identity bucket, so a decision walks a few trie paths instead of scanning the rule list.
 *
 * Trie: one node per topic level. Literal levels are Map children; `+`, and the placeholders `%u`,
 * `%c`, `%cn` are single children; a filter ending in `#` is stored on the node of its parent level
 * (`hash`), a filter ending on a level is stored in that node's `end`. Every stored list is sorted by
 * rank (evaluation order), and every node knows the smallest rank below it, so a walk stops
 * exploring branches that cannot beat the best rule found so far.
 *
 * Buckets: a rule naming specific users is filed under each of those users; else one naming exact
 * client ids under each id; else one naming groups under each group; else in the common bucket. A
 * client walks the common bucket plus its own user, client-id and group buckets. The full identity
 * selector of a candidate rule is still checked (selectors combine with AND).
 */
import type { Denial } from '@bastion/core';
import type { AclAction, AclRule } from './rules.js';
import { GlobSet, isGlob } from './glob.js';

/** What the ACL needs to know of a client (a ClientInfo qualifies). */
export interface AclIdentity {
  readonly id?: string;
  readonly username?: string | undefined;
  readonly groups?: readonly string[];
  readonly certificate?:
    | {
        readonly commonName?: string | undefined;
        readonly subject?: Readonly<Record<string, string | string[]>>;
      }
    | undefined;
}

/** A client's identity prepared for matching: placeholder values checked once. */
export class Subject {
  readonly username: string | undefined;
  readonly id: string;
  readonly groups: readonly string[];
  readonly cn: string | undefined;
  readonly ou: readonly string[];
  readonly o: readonly string[];
  /** Placeholder values; undefined when the client has none or it is unusable (see `placeholderValue`). */
  readonly pu: string | undefined;
  readonly pc: string | undefined;
  readonly pcn: string | undefined;

  constructor(who: AclIdentity) {
    this.username = who.username;
    this.id = who.id ?? '';
    this.groups = who.groups ?? [];
    const cert = who.certificate;
    this.cn = cert?.commonName;
    this.ou = listOf(cert?.subject?.OU);
    this.o = listOf(cert?.subject?.O);
    this.pu = placeholderValue(this.username);
    this.pc = placeholderValue(this.id);
    this.pcn = placeholderValue(this.cn);
  }
}

function listOf(v: string | string[] | undefined): readonly string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/**
 * A value may stand in for a placeholder level only when it is a plain topic level: non-empty and
 * free of `+`, `#`, `/` and NUL. Anything else never matches (no wildcard injection through a
 * username, client id or certificate CN).
 */
export function placeholderValue(v: string | undefined): string | undefined {
  if (v === undefined || v === '') return undefined;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 43 /* + */ || c === 35 /* # */ || c === 47 /* / */ || c === 0) return undefined;
  }
  return v;
}

export interface CompiledRule {
  /** Evaluation order: 0 is asked first (priority descending, then position). */
  readonly rank: number;
  /** Position in the rule list. */
  readonly index: number;
  readonly rule: AclRule;
  readonly allow: boolean;
  /** Identity test; undefined = applies to everyone. */
  readonly who: ((s: Subject) => boolean) | undefined;
  /** Prebuilt denials (deny rules only), so refusing allocates nothing. */
  readonly publishDenial: Denial | undefined;
  readonly subscribeDenial: Denial | undefined;
}

export class TrieNode {
  lit: Map<string, TrieNode> | undefined = undefined;
  plus: TrieNode | undefined = undefined;
  pu: TrieNode | undefined = undefined;
  pc: TrieNode | undefined = undefined;
  pcn: TrieNode | undefined = undefined;
  end: CompiledRule[] | undefined = undefined;
  hash: CompiledRule[] | undefined = undefined;
  /** Smallest rank stored in this node or below. */
  min = Infinity;
}

type Tries = { publish?: TrieNode; subscribe?: TrieNode; read?: TrieNode };

function insert(root: TrieNode, filter: string, rule: CompiledRule): void {
  const levels = filter.split('/');
  let node = root;
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i] as string;
    if (l === '#') {
      (node.hash ??= []).push(rule);
      return;
    }
    let next: TrieNode | undefined;
    if (l === '+') next = node.plus ??= new TrieNode();
    else if (l === '%u') next = node.pu ??= new TrieNode();
    else if (l === '%c') next = node.pc ??= new TrieNode();
    else if (l === '%cn') next = node.pcn ??= new TrieNode();
    else {
      node.lit ??= new Map();
      next = node.lit.get(l);
      if (!next) node.lit.set(l, (next = new TrieNode()));
    }
    node = next;
  }
  (node.end ??= []).push(rule);
}

/** Sort stored lists by rank, drop a rule listed twice in one list (two equal filters), compute `min`. */
function finish(node: TrieNode): number {
  let min = Infinity;
  const tidy = (list: CompiledRule[] | undefined) => {
    if (!list) return undefined;
    list.sort((a, b) => a.rank - b.rank);
    const out = list.filter((r, i) => i === 0 || list[i - 1] !== r);
    if (out.length > 0 && (out[0] as CompiledRule).rank < min) min = (out[0] as CompiledRule).rank;
    return out;
  };
  node.end = tidy(node.end);
  node.hash = tidy(node.hash);
  for (const child of [node.plus, node.pu, node.pc, node.pcn]) if (child) min = Math.min(min, finish(child));
  if (node.lit) for (const child of node.lit.values()) min = Math.min(min, finish(child));
  node.min = min;
  return min;
}

function makeWho(rule: AclRule): ((s: Subject) => boolean) | undefined {
  const tests: Array<(s: Subject) => boolean> = [];
  if (rule.users) {
    if (rule.users.includes('*')) tests.push((s) => s.username !== undefined);
    else {
      const users = new Set(rule.users);
      tests.push((s) => s.username !== undefined && users.has(s.username));
    }
  }
  if (rule.groups) {
    const groups = new Set(rule.groups);
    tests.push((s) => {
      for (const g of s.groups) if (groups.has(g)) return true;
      return false;
    });
  }
  if (rule.clientIds) {
    const ids = new GlobSet(rule.clientIds);
    tests.push((s) => ids.test(s.id));
  }
  if (rule.certificate) {
    const { cn, ou, o } = rule.certificate;
    if (cn !== undefined) tests.push((s) => s.cn === cn);
    if (ou !== undefined) tests.push((s) => s.ou.includes(ou));
    if (o !== undefined) tests.push((s) => s.o.includes(o));
  }
  if (tests.length === 0) return undefined;
  if (tests.length === 1) return tests[0];
  return (s) => {
    for (const t of tests) if (!t(s)) return false;
    return true;
  };
}

function denial(message: string, action: 'drop' | 'disconnect' | undefined): Denial {
  return Object.freeze({ denied: true as const, reason: 'not-authorized' as const, message, action });
}

export function ruleName(rule: AclRule, index: number): string {
  return rule.id !== undefined ? `"${rule.id}"` : `#${index}`;
}

/** A compiled rule set. Immutable: a change compiles a new one and swaps it in. */
export class CompiledAcl {
  readonly rules: readonly CompiledRule[]; // by position
  readonly #common: Tries = {};
  readonly #byUser = new Map<string, Tries>();
  readonly #byClient = new Map<string, Tries>();
  readonly #byGroup = new Map<string, Tries>();

  constructor(rules: readonly AclRule[], publishAction: 'drop' | 'disconnect' | undefined) {
    const order = rules.map((_, i) => i).sort((a, b) => (rules[b]?.priority ?? 0) - (rules[a]?.priority ?? 0) || a - b);
    const rankOf = new Array<number>(rules.length);
    order.forEach((pos, rank) => (rankOf[pos] = rank));
    const compiled: CompiledRule[] = rules.map((rule, index) => {
      const allow = rule.effect === 'allow';
      const name = ruleName(rule, index);
      return {
        rank: rankOf[index] as number,
        index,
        rule,
        allow,
        who: makeWho(rule),
        publishDenial: allow ? undefined : denial(`ACL rule ${name} denies publishing here`, publishAction),
        subscribeDenial: allow ? undefined : denial(`ACL rule ${name} denies this subscription`, undefined),
      };
    });
    this.rules = compiled;
    const all: TrieNode[] = [];
    for (const cr of compiled) {
      for (const tries of this.#bucketsFor(cr.rule)) {
        for (const action of cr.rule.actions) {
          let root = tries[action];
          if (!root) {
            root = tries[action] = new TrieNode();
            all.push(root);
          }
          for (const t of cr.rule.topics) insert(root, t, cr);
        }
      }
    }
    for (const root of all) finish(root);
  }

  #bucketsFor(rule: AclRule): Tries[] {
    const file = (map: Map<string, Tries>, keys: readonly string[]) =>
      keys.map((k) => {
        let t = map.get(k);
        if (!t) map.set(k, (t = {}));
        return t;
      });
    if (rule.users && !rule.users.includes('*')) return file(this.#byUser, rule.users);
    if (rule.clientIds && !rule.clientIds.some(isGlob)) return file(this.#byClient, rule.clientIds);
    if (rule.groups) return file(this.#byGroup, rule.groups);
    return [this.#common];
  }

  /** The trie roots a client walks for one right (common bucket first). */
  roots(s: Subject, action: AclAction): TrieNode[] {
    const out: TrieNode[] = [];
    const add = (t: Tries | undefined) => {
      const r = t?.[action];
      if (r && !out.includes(r)) out.push(r);
    };
    add(this.#common);
    if (s.username !== undefined) add(this.#byUser.get(s.username));
    add(this.#byClient.get(s.id));
    for (const g of s.groups) add(this.#byGroup.get(g));
    return out;
  }
}

// ---- evaluation ---------------------------------------------------------------------------------
// Module-level scratch: a walk is synchronous and runs to completion, so it cannot be interleaved.

let bestRank = Infinity;
let best: CompiledRule | undefined;
let subj: Subject;

function consider(list: CompiledRule[]): void {
  for (let i = 0; i < list.length; i++) {
    const r = list[i] as CompiledRule;
    if (r.rank >= bestRank) return;
    if (r.who === undefined || r.who(subj)) {
      bestRank = r.rank;
      best = r;
      return;
    }
  }
}

/** Rules whose filter matches a topic name (no wildcards in `levels`). */
function walkTopic(node: TrieNode, levels: string[], i: number, dollar: boolean): void {
  if (node.min >= bestRank) return;
  const wild = !(i === 0 && dollar); // [MQTT-4.7.2-1]: wildcards at the first level skip `$` topics
  if (node.hash !== undefined && wild) consider(node.hash); // `#` matches the rest, also nothing
  if (i === levels.length) {
    if (node.end !== undefined) consider(node.end);
    return;
  }
  const level = levels[i] as string;
  if (node.lit !== undefined) {
    const next = node.lit.get(level);
    if (next !== undefined) walkTopic(next, levels, i + 1, dollar);
  }
  if (!wild) return; // placeholders at the first level do not stand for `$…` values either
  if (node.plus !== undefined) walkTopic(node.plus, levels, i + 1, dollar);
  if (node.pu !== undefined && level === subj.pu) walkTopic(node.pu, levels, i + 1, dollar);
  if (node.pc !== undefined && level === subj.pc) walkTopic(node.pc, levels, i + 1, dollar);
  if (node.pcn !== undefined && level === subj.pcn) walkTopic(node.pcn, levels, i + 1, dollar);
}

/**
 * Rules whose filter covers a subscription filter: every topic the subscription can match is matched
 * by the rule's filter. A `+` in the subscription is covered only by `+` or `#` in the rule, a `#`
 * only by `#`; a literal level by the same literal, `+`, `#`, or a placeholder whose value it equals.
 */
function walkFilter(node: TrieNode, levels: string[], i: number, dollar: boolean): void {
  if (node.min >= bestRank) return;
  const wild = !(i === 0 && dollar);
  if (node.hash !== undefined && wild) consider(node.hash);
  if (i === levels.length) {
    if (node.end !== undefined) consider(node.end);
    return;
  }
  const level = levels[i] as string;
  if (level === '#') return;
  if (level === '+') {
    if (node.plus !== undefined) walkFilter(node.plus, levels, i + 1, dollar);
    return;
  }
  if (node.lit !== undefined) {
    const next = node.lit.get(level);
    if (next !== undefined) walkFilter(next, levels, i + 1, dollar);
  }
  if (!wild) return;
  if (node.plus !== undefined) walkFilter(node.plus, levels, i + 1, dollar);
  if (node.pu !== undefined && level === subj.pu) walkFilter(node.pu, levels, i + 1, dollar);
  if (node.pc !== undefined && level === subj.pc) walkFilter(node.pc, levels, i + 1, dollar);
  if (node.pcn !== undefined && level === subj.pcn) walkFilter(node.pcn, levels, i + 1, dollar);
}

/**
 * The first rule (in evaluation order) that applies to `s` and matches `topic` in `roots`, or
 * undefined when none does. `filter`: `topic` is a subscription filter (cover semantics).
 */
export function firstMatch(roots: readonly TrieNode[], s: Subject, topic: string, filter: boolean): CompiledRule | undefined {
  bestRank = Infinity;
  best = undefined;
  subj = s;
  const levels = topic.split('/');
  const dollar = topic.charCodeAt(0) === 36; // '$'
  for (let r = 0; r < roots.length; r++) {
    if (filter) walkFilter(roots[r] as TrieNode, levels, 0, dollar);
    else walkTopic(roots[r] as TrieNode, levels, 0, dollar);
  }
  const found = best;
  best = undefined;
  return found;
}
