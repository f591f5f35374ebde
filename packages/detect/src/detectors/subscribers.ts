/**
 * "Does anyone subscribe to this topic?" for DE.ID-3, without a trie walk per PUBLISH.
 *
 * Answers come from Aedes' own message bus (`aedes.mq`, an mqemitter whose Qlobber `_matcher`
 * holds one entry per live subscription) and are cached per topic, tagged with a generation that
 * moves on every subscription change: in steady state a lookup is one Map get. The cache is bounded
 * (cleared when full). Subscriptions of other cluster nodes (mqemitter-redis) and of offline
 * persistent sessions are not in this matcher: such messages count as undeliverable here.
 */
interface Matcher {
  match(topic: string): unknown[];
  add(...args: unknown[]): unknown;
  remove(...args: unknown[]): unknown;
}

export class SubscriberIndex {
  /** Moves on every subscribe/unsubscribe; cached answers of older generations are stale. */
  gen = 1;
  readonly #cache = new Map<string, number>();
  readonly #capacity: number;
  #matcher: Matcher | undefined;
  #restore: (() => void) | undefined;

  constructor(capacity = 10_000) {
    this.#capacity = capacity;
  }

  get attached(): boolean {
    return this.#matcher !== undefined;
  }

  /** Attach to an mqemitter (`broker.aedes.mq`); false when it has no readable matcher. */
  attach(mq: unknown): boolean {
    const m = (mq as { _matcher?: Matcher } | undefined)?._matcher;
    if (!m || typeof m.match !== 'function' || typeof m.add !== 'function' || typeof m.remove !== 'function') return false;
    this.detach();
    const add = m.add;
    const remove = m.remove;
    const bump = () => {
      this.gen++;
    };
    // Own properties shadow the prototype methods; detach() deletes them again.
    m.add = function (this: Matcher, ...args: unknown[]) {
      bump();
      return add.apply(this, args);
    };
    m.remove = function (this: Matcher, ...args: unknown[]) {
      bump();
      return remove.apply(this, args);
    };
    this.#matcher = m;
    this.#restore = () => {
      delete (m as Partial<Matcher>).add;
      delete (m as Partial<Matcher>).remove;
      if (m.add !== add) m.add = add;
      if (m.remove !== remove) m.remove = remove;
    };
    return true;
  }

  detach(): void {
    this.#restore?.();
    this.#restore = undefined;
    this.#matcher = undefined;
    this.#cache.clear();
  }

  /** True when a live subscription matches `topic` (true when not attached: nothing to say). */
  has(topic: string): boolean {
    const m = this.#matcher;
    if (m === undefined) return true;
    const v = this.#cache.get(topic);
    // encoded as +(gen) when subscribed, -(gen) when not
    if (v !== undefined && (v > 0 ? v : -v) === this.gen) return v > 0;
    const has = m.match(topic).length > 0;
    if (this.#cache.size >= this.#capacity) this.#cache.clear();
    this.#cache.set(topic, has ? this.gen : -this.gen);
    return has;
  }
}
