/**
 * Error type for everything in @bastion/pki.
 *
 * Every error carries a stable `code` (for programmatic handling) and a message
 * that tells the operator what to do next. Messages never contain key material.
 */
export type PkiErrorCode =
  | 'BASTION_ERR_PKI_NO_CA'
  | 'BASTION_ERR_PKI_BAD_CA'
  | 'BASTION_ERR_PKI_KEY_MISMATCH'
  | 'BASTION_ERR_PKI_BAD_CERT'
  | 'BASTION_ERR_PKI_BAD_KEY'
  | 'BASTION_ERR_PKI_BAD_CRL'
  | 'BASTION_ERR_PKI_BAD_INPUT'
  | 'BASTION_ERR_PKI_BAD_NAME'
  | 'BASTION_ERR_PKI_EXISTS'
  | 'BASTION_ERR_PKI_LOCKED';

export class PkiError extends Error {
  readonly code: PkiErrorCode;

  constructor(code: PkiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PkiError';
    this.code = code;
  }
}

export function isPkiError(err: unknown): err is PkiError {
  return err instanceof PkiError;
}
