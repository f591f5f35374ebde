/**
 * The data-flow map (ID.AM-3 network mapping, ID.IS-1 data flows): which identity publishes to and
 * subscribes to which topic pattern, how often, and which attempts were refused.
 *
 * Edges are keyed by (identity, direction, pattern); patterns come from the TopicTree, which
 * generalises levels that vary per device into `+`. Both the edge table and the tree are bounded;
 * what does not fit is counted in `dropped`, never stored.
 */
import { TopicTree, filterReaches } from './topic-tree.js';
import type { TopicTreeOptions } from './topic-tree.js';

export type FlowDirection = 'publish' | 'subscribe';

/** One (identity → pattern) edge. Mutable counters: the hot path bumps them in place. */
export interface FlowEdge {
  readonly identity: string;
  readonly direction: FlowDirection;
  pattern: string;
  /** Allowed PUBLISH packets (publish) or SUBSCRIBE requests (subscribe). */
  count: number;
  /** Refused attempts (publish.denied / subscribe.denied). */
  denied: number;
  /** Bit n set: QoS n was used. */
  qos: number;
  firstSeen: number;
  lastSeen: number;
}

export interface FlowMapOptions extends TopicTreeOptions {
  /** Most edges kept (default 10,000). */
  maxEdges?: number;
}

export const DEFAULT_MAX_EDGES = 10_000;

export interface FlowJson {
  identity: string;
  direction: FlowDirection;
  pattern: string;
  count: number;
  denied: number;
  qos: number[];
  firstSeen: string;
  lastSeen: string;
}

export interface DataFlowMap {
  generatedAt: string;
  /** How topics were generalised (see docs/identify.md). */
  method: { generalizeAfter: number; firstLevelKept: true; maxEdges: number; maxTopicNodes: number };
  identities: Array<{ identity: string; publishes: string[]; subscribes: string[] }>;
  /** Every pattern, with who publishes to it and who subscribes with it. */
  topics: Array<{ pattern: string; publishers: string[]; subscribers: string[]; denied: string[] }>;
  /** Allowed and refused (identity, direction, pattern) edges. */
  flows: FlowJson[];
  /** Which subscription filter receives which published pattern (a filter equal to the topic included). */
  routes: Array<{ topic: string; filter: string }>;
  /** Edges not recorded because the map was full. */
  dropped: number;
}

const edgeKey = (identity: string, direction: FlowDirection, pattern: string) => `${identity}\u0000${direction}\u0000${pattern}`;
const byString = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const MAX_ROUTES = 10_000;

export class FlowMap {
  readonly tree: TopicTree;
  readonly maxEdges: number;
  readonly #edges = new Map<string, FlowEdge>();
  #dropped = 0;
  #rekeyedAt = 0;

  constructor(opts: FlowMapOptions = {}) {
    this.tree = new TopicTree(opts);
    this.maxEdges = Math.max(1, opts.maxEdges ?? DEFAULT_MAX_EDGES);
  }

  /** Changes when patterns were re-generalised: edge objects handed out before may be stale. */
  get generation(): number {
    return this.tree.generation;
  }

  get size(): number {
    return this.#edges.size;
  }

  get dropped(): number {
    return this.#dropped;
  }

  /**
   * The edge for an identity and a topic (created if new; slow path: splits the topic). Returns
   * undefined when the map is full. Counters are not bumped: the caller does.
   */
  edge(identity: string, direction: FlowDirection, topic: string, now: number): FlowEdge | undefined {
    const pattern = this.tree.add(topic);
    if (this.tree.generation !== this.#rekeyedAt) this.#rekey();
    const key = edgeKey(identity, direction, pattern);
    let e = this.#edges.get(key);
    if (e === undefined) {
      if (this.#edges.size >= this.maxEdges) {
        this.#dropped++;
        return undefined;
      }
      e = { identity, direction, pattern, count: 0, denied: 0, qos: 0, firstSeen: now, lastSeen: now };
      this.#edges.set(key, e);
    }
    return e;
  }

  /** Record one refused attempt. */
  denied(identity: string, direction: FlowDirection, topic: string, now: number): void {
    const e = this.edge(identity, direction, topic, now);
    if (e === undefined) return;
    e.denied++;
    e.lastSeen = now;
  }

  /** After a collapse, every edge's pattern is resolved again and edges that now coincide are merged. */
  #rekey(): void {
    this.#rekeyedAt = this.tree.generation;
    const old = [...this.#edges.values()];
    this.#edges.clear();
    for (const e of old) {
      e.pattern = this.tree.resolve(e.pattern);
      const key = edgeKey(e.identity, e.direction, e.pattern);
      const into = this.#edges.get(key);
      if (into === undefined) {
        this.#edges.set(key, e);
        continue;
      }
      into.count += e.count;
      into.denied += e.denied;
      into.qos |= e.qos;
      into.firstSeen = Math.min(into.firstSeen, e.firstSeen);
      into.lastSeen = Math.max(into.lastSeen, e.lastSeen);
    }
  }

  edges(): FlowEdge[] {
    return [...this.#edges.values()];
  }

  toJSON(): DataFlowMap {
    const edges = this.edges().sort(
      (a, b) => byString(a.identity, b.identity) || byString(a.direction, b.direction) || byString(a.pattern, b.pattern),
    );
    const ids = new Map<string, { publishes: Set<string>; subscribes: Set<string> }>();
    const topics = new Map<string, { publishers: Set<string>; subscribers: Set<string>; denied: Set<string> }>();
    for (const e of edges) {
      let id = ids.get(e.identity);
      if (!id) ids.set(e.identity, (id = { publishes: new Set(), subscribes: new Set() }));
      let t = topics.get(e.pattern);
      if (!t) topics.set(e.pattern, (t = { publishers: new Set(), subscribers: new Set(), denied: new Set() }));
      if (e.count > 0) {
        (e.direction === 'publish' ? id.publishes : id.subscribes).add(e.pattern);
        (e.direction === 'publish' ? t.publishers : t.subscribers).add(e.identity);
      }
      if (e.denied > 0) t.denied.add(e.identity);
    }
    const sorted = (s: Set<string>) => [...s].sort(byString);
    return {
      generatedAt: new Date().toISOString(),
      method: { generalizeAfter: this.tree.generalizeAfter, firstLevelKept: true, maxEdges: this.maxEdges, maxTopicNodes: this.tree.maxNodes },
      identities: [...ids].sort(([a], [b]) => byString(a, b)).map(([identity, v]) => ({ identity, publishes: sorted(v.publishes), subscribes: sorted(v.subscribes) })),
      topics: [...topics].sort(([a], [b]) => byString(a, b)).map(([pattern, v]) => ({ pattern, publishers: sorted(v.publishers), subscribers: sorted(v.subscribers), denied: sorted(v.denied) })),
      flows: edges.map((e) => ({
        identity: e.identity,
        direction: e.direction,
        pattern: e.pattern,
        count: e.count,
        denied: e.denied,
        qos: [0, 1, 2].filter((q) => (e.qos & (1 << q)) !== 0),
        firstSeen: new Date(e.firstSeen).toISOString(),
        lastSeen: new Date(e.lastSeen).toISOString(),
      })),
      routes: routesOf(edges),
      dropped: this.#dropped,
    };
  }
}

/** Published patterns × subscription filters that receive them (allowed edges only), bounded. */
function routesOf(edges: readonly FlowEdge[]): Array<{ topic: string; filter: string }> {
  const published = [...new Set(edges.filter((e) => e.direction === 'publish' && e.count > 0).map((e) => e.pattern))].sort(byString);
  const filters = [...new Set(edges.filter((e) => e.direction === 'subscribe' && e.count > 0).map((e) => e.pattern))].sort(byString);
  const out: Array<{ topic: string; filter: string }> = [];
  for (const topic of published) {
    for (const filter of filters) {
      if (!filterReaches(filter, topic)) continue;
      out.push({ topic, filter });
      if (out.length >= MAX_ROUTES) return out;
    }
  }
  return out;
}
