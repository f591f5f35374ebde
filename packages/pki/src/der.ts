/**
 * A small, strict DER reader (parsing) plus a few node-forge ASN.1 builders (encoding).
 *
 * Parsing is done on raw bytes rather than through forge so that exact byte ranges are
 * available (the signed TBS part of a CRL, the issuer Name of a CA) and so that
 * certificates with non-RSA keys can still be inspected.
 */
import forge from 'node-forge';

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  ENUMERATED: 0x0a,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  T61_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Context-specific tag byte: [n] (primitive) or [n] constructed. */
export function contextTag(n: number, constructed: boolean): number {
  return 0x80 | (constructed ? 0x20 : 0) | n;
}

export class DerError extends Error {
  override name = 'DerError';
}

export interface Tlv {
  /** The identifier octet (class | constructed | number); high-tag-number form is rejected. */
  tag: number;
  constructed: boolean;
  /** Offset of the identifier octet. */
  start: number;
  /** Offset of the first content octet. */
  contentStart: number;
  /** Offset one past the last content octet. */
  end: number;
}

export function readTlv(buf: Buffer, offset: number, limit: number = buf.length): Tlv {
  if (offset >= limit) throw new DerError('unexpected end of data');
  const tag = buf[offset] as number;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high-tag-number form is not supported');
  let pos = offset + 1;
  if (pos >= limit) throw new DerError('truncated length');
  const first = buf[pos++] as number;
  let length: number;
  if (first < 0x80) {
    length = first;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw new DerError('indefinite length is not allowed in DER');
    if (n > 4) throw new DerError('length too large');
    if (pos + n > limit) throw new DerError('truncated length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + (buf[pos++] as number);
    if (length < 0x80 || (n > 1 && buf[pos - n] === 0)) throw new DerError('non-minimal length encoding');
  }
  const end = pos + length;
  if (end > limit) throw new DerError('value runs past the end of its container');
  return { tag, constructed: (tag & 0x20) !== 0, start: offset, contentStart: pos, end };
}

/** Parses a complete DER document and checks there are no trailing bytes. */
export function readRoot(buf: Buffer): Tlv {
  const tlv = readTlv(buf, 0);
  if (tlv.end !== buf.length) throw new DerError('trailing data after DER value');
  return tlv;
}

export function children(buf: Buffer, parent: Tlv): Tlv[] {
  if (!parent.constructed) throw new DerError('expected a constructed value');
  const out: Tlv[] = [];
  let pos = parent.contentStart;
  while (pos < parent.end) {
    const child = readTlv(buf, pos, parent.end);
    out.push(child);
    pos = child.end;
  }
  return out;
}

export function expectTag(tlv: Tlv | undefined, tag: number, what: string): Tlv {
  if (!tlv) throw new DerError(`missing ${what}`);
  if (tlv.tag !== tag) {
    throw new DerError(`bad ${what}: expected tag 0x${tag.toString(16)}, got 0x${tlv.tag.toString(16)}`);
  }
  return tlv;
}

export function contentOf(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.contentStart, tlv.end);
}

export function rawOf(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.start, tlv.end);
}

export function decodeOid(buf: Buffer, tlv: Tlv): string {
  expectTag(tlv, TAG.OID, 'object identifier');
  const bytes = contentOf(buf, tlv);
  if (bytes.length === 0) throw new DerError('empty object identifier');
  return forge.asn1.derToOid(bytes.toString('binary'));
}

/** INTEGER content as lowercase hex (two's complement bytes, unmodified). */
export function integerHex(buf: Buffer, tlv: Tlv): string {
  expectTag(tlv, TAG.INTEGER, 'integer');
  const bytes = contentOf(buf, tlv);
  if (bytes.length === 0) throw new DerError('empty integer');
  return bytes.toString('hex');
}

/** Non-negative INTEGER/ENUMERATED value as a bigint. */
export function unsignedBigInt(bytes: Buffer): bigint {
  if (bytes.length === 0) throw new DerError('empty integer');
  if (((bytes[0] as number) & 0x80) !== 0) throw new DerError('negative integer where a non-negative one is required');
  return BigInt(`0x${bytes.toString('hex')}`);
}

export function isTime(tlv: Tlv | undefined): boolean {
  return tlv !== undefined && (tlv.tag === TAG.UTC_TIME || tlv.tag === TAG.GENERALIZED_TIME);
}

/** Decodes UTCTime (YYMMDDHHMMSSZ, RFC 5280 year window) or GeneralizedTime (YYYYMMDDHHMMSS[.f]Z). */
export function decodeTime(buf: Buffer, tlv: Tlv): Date {
  const s = contentOf(buf, tlv).toString('latin1');
  let m: RegExpExecArray | null;
  let year: number;
  if (tlv.tag === TAG.UTC_TIME) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (!m) throw new DerError(`bad UTCTime ${JSON.stringify(s)}`);
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (tlv.tag === TAG.GENERALIZED_TIME) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.\d+)?Z$/.exec(s);
    if (!m) throw new DerError(`bad GeneralizedTime ${JSON.stringify(s)}`);
    year = Number(m[1]);
  } else {
    throw new DerError('expected a time value');
  }
  const ms = Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  if (Number.isNaN(ms)) throw new DerError(`invalid time ${JSON.stringify(s)}`);
  return new Date(ms);
}

/** Bit string content without the leading "unused bits" octet. */
export function bitStringBytes(buf: Buffer, tlv: Tlv): Buffer {
  expectTag(tlv, TAG.BIT_STRING, 'bit string');
  const bytes = contentOf(buf, tlv);
  if (bytes.length === 0) throw new DerError('empty bit string');
  return bytes.subarray(1);
}

// ---------------------------------------------------------------------------
// Encoding helpers (node-forge ASN.1 objects)
// ---------------------------------------------------------------------------

const { asn1 } = forge;

/** Whole seconds only: X.509 times carry no fractions, so what we report equals what is encoded. */
export function truncateToSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 on. */
export function encodeTime(date: Date): forge.asn1.Asn1 {
  const year = date.getUTCFullYear();
  if (year >= 1950 && year < 2050) {
    return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTCTIME, false, asn1.dateToUtcTime(date));
  }
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(date));
}

export function encodeOid(oid: string): forge.asn1.Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(oid).getBytes());
}

/** Minimal two's-complement INTEGER from a non-negative bigint. */
export function encodeUnsignedInteger(value: bigint, type: forge.asn1.Type = asn1.Type.INTEGER): forge.asn1.Asn1 {
  if (value < 0n) throw new RangeError('negative integer');
  let hex = value.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  if (parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`;
  return asn1.create(asn1.Class.UNIVERSAL, type, false, Buffer.from(hex, 'hex').toString('binary'));
}

export function toDerBuffer(obj: forge.asn1.Asn1): Buffer {
  return Buffer.from(asn1.toDer(obj).getBytes(), 'binary');
}

export function fromDerBuffer(der: Buffer): forge.asn1.Asn1 {
  return asn1.fromDer(der.toString('binary'), true);
}

/** Raw TLV encoding: wraps already-encoded content (used to assemble signed structures byte-exactly). */
export function encodeTlv(tag: number, content: Buffer): Buffer {
  const len = content.length;
  let header: Buffer;
  if (len < 0x80) {
    header = Buffer.from([tag, len]);
  } else {
    const bytes: number[] = [];
    for (let n = len; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
    header = Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([header, content]);
}

/** SEQUENCE { tbs, algorithmIdentifier, BIT STRING signature } from raw parts. */
export function encodeSigned(tbsDer: Buffer, algorithmIdentifierDer: Buffer, signature: Buffer): Buffer {
  const bitString = encodeTlv(TAG.BIT_STRING, Buffer.concat([Buffer.from([0]), signature]));
  return encodeTlv(TAG.SEQUENCE, Buffer.concat([tbsDer, algorithmIdentifierDer, bitString]));
}
