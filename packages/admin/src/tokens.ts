/**
 * Admin bearer tokens. A token is 32 random bytes (256 bits), shown once; the profile holds only
 * `sha256:<hex>` of it. A fast hash is enough for a secret of that entropy (nothing to brute-force),
 * and a slow KDF on every request would hand anyone who can reach the port a CPU lever.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { BastionError } from '@bastion/core';

export const TOKEN_PREFIX = 'bst_';
export const TOKEN_HASH_PATTERN = /^sha256:[0-9a-f]{64}$/;

export interface AdminTokenSpec {
  /** Names the holder in events and logs (never the token). */
  readonly name: string;
  /** `sha256:<64 hex>` of the token. */
  readonly hash: string;
  /** GET only: listing, no changes. */
  readonly readOnly?: boolean | undefined;
}

/** A new random token: `bst_` + 43 base64url characters. */
export function newToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

/** The line to store in the profile for a token. */
export function hashToken(token: string): string {
  return `sha256:${createHash('sha256').update(token, 'utf8').digest('hex')}`;
}

interface Known {
  readonly spec: AdminTokenSpec;
  readonly digest: Buffer;
}

export class TokenVerifier {
  readonly #known: readonly Known[];

  constructor(tokens: readonly AdminTokenSpec[]) {
    const names = new Set<string>();
    this.#known = tokens.map((t) => {
      if (!TOKEN_HASH_PATTERN.test(t.hash)) throw new BastionError('BASTION_ERR_ADMIN_CONFIG', `admin token "${t.name}": hash must be sha256:<64 lower-case hex digits> (make one with \`bastion admin token\`)`);
      if (names.has(t.name)) throw new BastionError('BASTION_ERR_ADMIN_CONFIG', `two admin tokens are named "${t.name}"`);
      names.add(t.name);
      return { spec: t, digest: Buffer.from(t.hash.slice(7), 'hex') };
    });
  }

  get size(): number {
    return this.#known.length;
  }

  /** The token's spec when `presented` is one of the known tokens. Compares against every hash in constant time. */
  verify(presented: string): AdminTokenSpec | undefined {
    const digest = createHash('sha256').update(presented, 'utf8').digest();
    let found: AdminTokenSpec | undefined;
    for (const k of this.#known) {
      // no early exit: the time taken does not depend on which token matched
      if (timingSafeEqual(digest, k.digest) && found === undefined) found = k.spec;
    }
    return found;
  }
}
