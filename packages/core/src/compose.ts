/**
 * The composer: turns an ordered middleware list into one chain per hook, and runs a chain the way
 * Fastify runs its hooks — plain arrays, one small loop, `.then` touched only when a hook returned a
 * thenable. When every answer is synchronous, running a chain allocates nothing.
 */
import type { Denial, Middleware, Verdict } from './contract.js';
import { deny, isDenial } from './contract.js';

type Hook<A, B, R> = (a: A, b: B) => R | Promise<R>;

export interface Chain<A, B, R = Verdict> {
  readonly fns: ReadonlyArray<Hook<A, B, R>>;
  readonly owners: readonly Middleware[];
}

/** Result of a chain that had to wait: the denial (if any) and who denied. */
export interface AsyncOutcome {
  readonly denial: Denial | undefined;
  readonly index: number;
  readonly error?: unknown;
}

export type HookName = 'onConnection' | 'onConnect' | 'authenticate' | 'authorizePublish' | 'authorizeSubscribe' | 'authorizeForward';

export function chainOf<A, B, R = Verdict>(middleware: readonly Middleware[], hook: HookName): Chain<A, B, R> {
  const fns: Array<Hook<A, B, R>> = [];
  const owners: Middleware[] = [];
  for (const mw of middleware) {
    const fn = mw[hook] as unknown as Hook<A, B, R> | undefined;
    if (typeof fn === 'function') {
      fns.push(fn.bind(mw));
      owners.push(mw);
    }
  }
  return { fns, owners };
}

export const INTERNAL_ERROR = deny('internal-error', 'a middleware failed; the request was denied');

/**
 * Shared scratch for the synchronous path: which link denied, and the error if one threw. Read it
 * right after `runVerdictChain` returns; JavaScript runs this to completion, so it cannot be
 * overwritten in between.
 */
export const lastRun = { index: -1, error: undefined as unknown };

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as PromiseLike<unknown>).then === 'function';
}

/**
 * Run a Verdict chain from link `from`. Returns `undefined` (all passed), a Denial (sync), or a
 * Promise of the outcome when some link answered asynchronously.
 */
export function runVerdictChain<A, B>(chain: Chain<A, B>, a: A, b: B, from = 0): Denial | undefined | Promise<AsyncOutcome> {
  const fns = chain.fns;
  for (let i = from; i < fns.length; i++) {
    let v: Verdict | Promise<Verdict>;
    try {
      v = (fns[i] as Hook<A, B, Verdict>)(a, b);
    } catch (err) {
      lastRun.index = i;
      lastRun.error = err;
      return INTERNAL_ERROR;
    }
    if (v === undefined || v === null) continue;
    if (isThenable(v)) return continueAsync(chain, a, b, i, v);
    if (isDenial(v)) {
      lastRun.index = i;
      lastRun.error = undefined;
      return v;
    }
  }
  return undefined;
}

async function continueAsync<A, B>(chain: Chain<A, B>, a: A, b: B, i: number, pending: PromiseLike<Verdict>): Promise<AsyncOutcome> {
  let v: Verdict;
  try {
    v = await pending;
  } catch (error) {
    return { denial: INTERNAL_ERROR, index: i, error };
  }
  if (isDenial(v)) return { denial: v, index: i };
  const rest = runVerdictChain(chain, a, b, i + 1);
  if (rest === undefined) return { denial: undefined, index: -1 };
  if (isDenial(rest)) return { denial: rest, index: lastRun.index, error: lastRun.error };
  return rest;
}

/** Run every link of a chain, waiting where needed; for slow paths (authentication). */
export async function collectChain<A, B, R>(chain: Chain<A, B, R>, a: A, b: B): Promise<Array<{ value: R | undefined; index: number; error?: unknown }>> {
  const out: Array<{ value: R | undefined; index: number; error?: unknown }> = [];
  for (let i = 0; i < chain.fns.length; i++) {
    try {
      const value = await (chain.fns[i] as Hook<A, B, R>)(a, b);
      out.push({ value, index: i });
      if (isDenial(value)) break; // deny wins: stop at the first refusal
    } catch (error) {
      out.push({ value: undefined, index: i, error });
      break;
    }
  }
  return out;
}
