import { truncateToSeconds } from './der.js';
import { PkiError } from './errors.js';

const DAY_MS = 24 * 60 * 60 * 1000;

/** Default backdating of notBefore, to tolerate clock skew between issuer and verifier. */
export const CLOCK_SKEW_MS = 5 * 60 * 1000;

export interface ValidityOptions {
  validityDays?: number;
  notBefore?: Date;
  notAfter?: Date;
}

function checkDate(d: Date | undefined, what: string): void {
  if (d !== undefined && (!(d instanceof Date) || Number.isNaN(d.getTime()))) {
    throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', `${what} is not a valid Date. Pass a Date object.`);
  }
}

/**
 * Resolves the validity window. Without explicit dates: notBefore = now - 5 min,
 * notAfter = now + validityDays. With only notBefore: notAfter = notBefore + validityDays.
 * Both are truncated to whole seconds (what X.509 can encode).
 */
export function resolveValidity(opts: ValidityOptions, defaultDays: number, now: Date = new Date()): { notBefore: Date; notAfter: Date } {
  const days = opts.validityDays ?? defaultDays;
  if (typeof days !== 'number' || !Number.isFinite(days) || days <= 0) {
    throw new PkiError('BASTION_ERR_PKI_BAD_INPUT', `validityDays must be a positive number of days, got ${String(days)}.`);
  }
  checkDate(opts.notBefore, 'notBefore');
  checkDate(opts.notAfter, 'notAfter');
  const notBefore = truncateToSeconds(opts.notBefore ?? new Date(now.getTime() - CLOCK_SKEW_MS));
  const notAfter = truncateToSeconds(
    opts.notAfter ?? new Date((opts.notBefore ?? now).getTime() + days * DAY_MS),
  );
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new PkiError(
      'BASTION_ERR_PKI_BAD_INPUT',
      `notAfter (${notAfter.toISOString()}) must be later than notBefore (${notBefore.toISOString()}).`,
    );
  }
  return { notBefore, notAfter };
}
