/**
 * Topic generalisation for the data-flow map (ID.AM-3, ID.IS-1).
 *
 * Every topic (or subscription filter) that is recorded is inserted, level by level, into one tree.
 * A node keeps its distinct child levels. When a node would get more than `generalizeAfter` distinct
 * children, that level is taken to vary per device (a client id, a serial number, a room): the node
 * is marked variable and all its children are merged under one `+` child, recursively (merged
 * subtrees may collapse in turn). From then on, any value at that level maps to `+`.
 *
 * - `#` is never merged into `+` (it means "everything below", not "one level").
 * - The first level is kept: it names the application namespace (`grid`, `$SYS`), and collapsing it
 *   would turn the whole map into `+/…`. It collapses only when the tree is full (`maxNodes`).
 * - The tree is bounded: when it holds `maxNodes` nodes, a node that needs a new child collapses
 *   instead, so memory stays bounded under a flood of distinct topics.
 *
 * `generation` goes up on every collapse, so holders of patterns (the flow map, per-client caches)
 * know to re-resolve them.
 */

class TopicNode {
  readonly children = new Map<string, TopicNode>();
  /** This level varies per device: every value maps to `+`. */
  variable = false;
}

export interface TopicTreeOptions {
  /** Distinct values a level may have before it is generalised to `+` (default 10). */
  generalizeAfter?: number;
  /** Most nodes the tree holds (default 10,000). */
  maxNodes?: number;
}

export const DEFAULT_GENERALIZE_AFTER = 10;
export const DEFAULT_MAX_TOPIC_NODES = 10_000;

export class TopicTree {
  readonly generalizeAfter: number;
  readonly maxNodes: number;
  readonly #root = new TopicNode();
  #nodes = 1;
  #generation = 0;

  constructor(opts: TopicTreeOptions = {}) {
    this.generalizeAfter = Math.max(1, opts.generalizeAfter ?? DEFAULT_GENERALIZE_AFTER);
    this.maxNodes = Math.max(16, opts.maxNodes ?? DEFAULT_MAX_TOPIC_NODES);
  }

  /** Bumped on every collapse: patterns returned before may have changed. */
  get generation(): number {
    return this.#generation;
  }

  get size(): number {
    return this.#nodes;
  }

  /** Record a topic or filter; returns its generalised pattern. */
  add(topic: string): string {
    const levels = topic.split('/');
    let node = this.#root;
    for (let i = 0; i < levels.length; i++) {
      let label = levels[i] as string;
      if (node.variable && label !== '#') label = '+';
      let child = node.children.get(label);
      if (child === undefined) {
        const distinct = this.#distinct(node);
        const full = this.#nodes >= this.maxNodes;
        if (label !== '#' && label !== '+' && ((i > 0 && distinct >= this.generalizeAfter) || full)) {
          this.#collapse(node);
          label = '+';
          child = node.children.get('+');
        }
        if (child === undefined) {
          child = new TopicNode();
          node.children.set(label, child);
          this.#nodes++;
        }
      }
      levels[i] = label;
      node = child;
    }
    return levels.join('/');
  }

  /** The current pattern of a topic or pattern that was added before (no insertion). */
  resolve(pattern: string): string {
    const levels = pattern.split('/');
    let node: TopicNode | undefined = this.#root;
    for (let i = 0; i < levels.length && node !== undefined; i++) {
      let label = levels[i] as string;
      if (node.variable && label !== '#') label = '+';
      levels[i] = label;
      node = node.children.get(label);
    }
    return levels.join('/');
  }

  /** Distinct values at a level, `#` and `+` not counted (they are wildcards, not values). */
  #distinct(node: TopicNode): number {
    let n = node.children.size;
    if (node.children.has('#')) n--;
    if (node.children.has('+')) n--;
    return n;
  }

  #collapse(node: TopicNode): void {
    node.variable = true;
    this.#generation++;
    let merged = node.children.get('+');
    for (const [label, child] of [...node.children]) {
      if (label === '#' || label === '+') continue;
      node.children.delete(label);
      if (merged === undefined) {
        merged = child;
        node.children.set('+', merged);
      } else {
        this.#merge(merged, child);
      }
    }
    this.#nodes = this.#count(this.#root);
  }

  /** Merge `src` into `dst`; a merged node with too many children collapses in turn. */
  #merge(dst: TopicNode, src: TopicNode): void {
    if (src.variable) dst.variable = true;
    for (const [label, child] of src.children) {
      const target = dst.variable && label !== '#' ? '+' : label;
      const existing = dst.children.get(target);
      if (existing === undefined) dst.children.set(target, child);
      else this.#merge(existing, child);
    }
    if (dst.variable) {
      if ([...dst.children.keys()].some((l) => l !== '#' && l !== '+')) this.#collapse(dst);
    } else if (this.#distinct(dst) > this.generalizeAfter) {
      this.#collapse(dst);
    }
  }

  #count(node: TopicNode): number {
    let n = 1;
    for (const child of node.children.values()) n += this.#count(child);
    return n;
  }
}

/**
 * Whether a subscription filter can receive messages published to a topic pattern (whose `+` levels
 * stand for many concrete values): a filter level matches a pattern `+` only when it is a wildcard,
 * except that a literal level may match some of the values `+` stands for — counted as a match,
 * since some messages of the pattern do reach the filter.
 */
export function filterReaches(filter: string, pattern: string): boolean {
  if (filter === pattern) return true;
  const f = filter.split('/');
  const t = pattern.split('/');
  // $-topics are only matched by filters that name their first level ([MQTT-4.7.2-1])
  if ((t[0] ?? '').startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    const fl = f[i] as string;
    if (fl === '#') return true;
    const tl = t[i];
    if (tl === undefined) return false;
    if (tl === '#') return true; // the pattern is itself a filter reaching below
    if (fl === '+' || tl === '+' || fl === tl) continue;
    return false;
  }
  return f.length === t.length;
}
