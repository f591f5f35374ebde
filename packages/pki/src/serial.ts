import { randomBytes } from 'node:crypto';
import { PkiError } from './errors.js';

/** Number of random bytes in a certificate serial number (128 bits, RFC 5280 allows up to 20 octets). */
export const SERIAL_BYTES = 16;

/**
 * A fresh random serial: 16 bytes from node:crypto with the high bit cleared so the
 * DER INTEGER is positive. The first byte is never zero (a zero first byte followed
 * by a byte < 0x80 would be a non-minimal, invalid DER INTEGER), so the returned
 * lowercase hex string is already in normalized form.
 */
export function generateSerial(): string {
  for (;;) {
    const bytes = randomBytes(SERIAL_BYTES);
    bytes[0] = (bytes[0] ?? 0) & 0x7f;
    if (bytes[0] !== 0) return bytes.toString('hex');
  }
}

/**
 * Canonical serial form used everywhere in this package: lowercase hex, whole bytes,
 * leading zero bytes stripped. Accepts what other tools print, e.g. Node's
 * `getPeerCertificate().serialNumber` ("0A1B..."), OpenSSL ("0A:1B:..."), or a
 * DER-padded value ("00ff..."), so all of them compare equal after normalization.
 */
export function normalizeSerial(serial: string): string {
  let hex = serial.trim().replace(/^0x/i, '').replace(/[\s:-]/g, '').toLowerCase();
  if (hex.length === 0 || !/^[0-9a-f]+$/.test(hex)) {
    throw new PkiError(
      'BASTION_ERR_PKI_BAD_INPUT',
      `Not a hexadecimal serial number: ${JSON.stringify(serial)}. Pass the serial as hex, e.g. "0a1b2c" or "0A:1B:2C".`,
    );
  }
  if (hex.length % 2 === 1) hex = `0${hex}`;
  while (hex.length > 2 && hex.startsWith('00')) hex = hex.slice(2);
  return hex;
}
