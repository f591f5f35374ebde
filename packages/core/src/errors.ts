/**
 * Every error Bastion raises on purpose is a BastionError with a stable code, so users and tests
 * match on `err.code`, never on message text (the Fastify FST_ERR_* pattern).
 */
export type BastionErrorCode =
  | 'BASTION_ERR_INVALID_MIDDLEWARE'
  | 'BASTION_ERR_INVALID_OPTIONS'
  | 'BASTION_ERR_LISTEN'
  | 'BASTION_ERR_TLS_CONFIG'
  | 'BASTION_ERR_NOT_STARTED'
  | 'BASTION_ERR_CLOSED'
  | 'BASTION_ERR_PROFILE'
  | 'BASTION_ERR_USERS_FILE'
  | 'BASTION_ERR_PKI'
  | (string & {});

export class BastionError extends Error {
  readonly code: BastionErrorCode;
  constructor(code: BastionErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BastionError';
    this.code = code;
  }
}

export function isBastionError(err: unknown, code?: BastionErrorCode): err is BastionError {
  return err instanceof BastionError && (code === undefined || err.code === code);
}
