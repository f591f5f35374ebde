/**
 * Distinguished names, subject alternative names and IP address encoding.
 */
import { TAG, DerError, children, contentOf, decodeOid, expectTag, rawOf, type Tlv } from './der.js';

const SHORT_NAMES: Readonly<Record<string, string>> = {
  '2.5.4.3': 'CN',
  '2.5.4.4': 'SN',
  '2.5.4.5': 'serialNumber',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.9': 'STREET',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '2.5.4.12': 'title',
  '2.5.4.42': 'GN',
  '0.9.2342.19200300.100.1.1': 'UID',
  '0.9.2342.19200300.100.1.25': 'DC',
  '1.2.840.113549.1.9.1': 'emailAddress',
};

export const OID_COMMON_NAME = '2.5.4.3';

export interface NameAttribute {
  oid: string;
  /** Short name such as CN, O, OU; absent for attribute types not in the table. */
  shortName?: string;
  /** Decoded string value, or "#<hex of the DER value>" for non-string types (RFC 4514). */
  value: string;
  /** True when `value` is the "#<hex>" form. */
  hex?: boolean;
}

/** RDNSequence in DER order (most general first); each RDN is a set of attributes. */
export type Name = NameAttribute[][];

const STRING_TAGS: ReadonlySet<number> = new Set([
  TAG.UTF8_STRING,
  TAG.PRINTABLE_STRING,
  TAG.IA5_STRING,
  TAG.T61_STRING,
  0x12,
  0x1a,
  TAG.BMP_STRING,
  TAG.UNIVERSAL_STRING,
]);

function isStringTag(tag: number): boolean {
  return STRING_TAGS.has(tag);
}

function decodeDirectoryString(buf: Buffer, tlv: Tlv): string {
  const bytes = contentOf(buf, tlv);
  switch (tlv.tag) {
    case TAG.UTF8_STRING:
      return bytes.toString('utf8');
    case TAG.PRINTABLE_STRING:
    case TAG.IA5_STRING:
    case TAG.T61_STRING:
    case 0x12 /* NumericString */:
    case 0x1a /* VisibleString */:
      return bytes.toString('latin1');
    case TAG.BMP_STRING: {
      if (bytes.length % 2 !== 0) throw new DerError('odd-length BMPString');
      const swapped = Buffer.from(bytes);
      swapped.swap16();
      return swapped.toString('utf16le');
    }
    case TAG.UNIVERSAL_STRING: {
      if (bytes.length % 4 !== 0) throw new DerError('bad UniversalString length');
      let out = '';
      for (let i = 0; i < bytes.length; i += 4) out += String.fromCodePoint(bytes.readUInt32BE(i));
      return out;
    }
    default:
      return `#${rawOf(buf, tlv).toString('hex')}`;
  }
}

export function parseName(buf: Buffer, nameTlv: Tlv): Name {
  expectTag(nameTlv, TAG.SEQUENCE, 'name');
  return children(buf, nameTlv).map((rdn) => {
    expectTag(rdn, TAG.SET, 'relative distinguished name');
    return children(buf, rdn).map((atv) => {
      expectTag(atv, TAG.SEQUENCE, 'attribute');
      const [typeTlv, valueTlv] = children(buf, atv);
      if (!typeTlv || !valueTlv) throw new DerError('incomplete name attribute');
      const oid = decodeOid(buf, typeTlv);
      const shortName = SHORT_NAMES[oid];
      const value = decodeDirectoryString(buf, valueTlv);
      const attr: NameAttribute = { oid, value };
      if (shortName !== undefined) attr.shortName = shortName;
      if (value.startsWith('#') && !isStringTag(valueTlv.tag)) attr.hex = true;
      return attr;
    });
  });
}

function escapeRfc4514(value: string): string {
  let out = value.replace(/[\\"+,;<>]/g, (c) => `\\${c}`).replace(/\0/g, '\\00');
  if (out.startsWith('#') || out.startsWith(' ')) out = `\\${out}`;
  if (out.endsWith(' ') && !out.endsWith('\\ ')) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/**
 * RFC 4514 string form: most specific RDN first, e.g. "CN=device-1,OU=devices,O=Bastion".
 * (Node's X509Certificate#subject prints the same attributes one per line in DER order.)
 */
export function formatName(name: Name): string {
  return [...name]
    .reverse()
    .map((rdn) => rdn.map((a) => `${a.shortName ?? a.oid}=${a.hex ? a.value : escapeRfc4514(a.value)}`).join('+'))
    .join(',');
}

/** The most specific commonName, if any. */
export function commonNameOf(name: Name): string | undefined {
  let cn: string | undefined;
  for (const rdn of name) for (const a of rdn) if (a.oid === OID_COMMON_NAME) cn = a.value;
  return cn;
}

// ---------------------------------------------------------------------------
// Subject alternative names
// ---------------------------------------------------------------------------

export interface AltNames {
  dnsNames: string[];
  uris: string[];
  emails: string[];
  ipAddresses: string[];
}

/** Parses GeneralNames (the SAN extension value). Unsupported name forms are ignored. */
export function parseGeneralNames(buf: Buffer, seq: Tlv): AltNames {
  expectTag(seq, TAG.SEQUENCE, 'subjectAltName');
  const out: AltNames = { dnsNames: [], uris: [], emails: [], ipAddresses: [] };
  for (const gn of children(buf, seq)) {
    const bytes = contentOf(buf, gn);
    switch (gn.tag) {
      case 0x81: // [1] rfc822Name
        out.emails.push(bytes.toString('latin1'));
        break;
      case 0x82: // [2] dNSName
        out.dnsNames.push(bytes.toString('latin1'));
        break;
      case 0x86: // [6] uniformResourceIdentifier
        out.uris.push(bytes.toString('latin1'));
        break;
      case 0x87: // [7] iPAddress
        out.ipAddresses.push(ipFromBytes(bytes));
        break;
      default:
        break;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// IP addresses
// ---------------------------------------------------------------------------

function parseIPv4(s: string): number[] | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out.push(n);
  }
  return out;
}

function parseIPv6(s: string): number[] | undefined {
  if (s.includes('%')) return undefined; // zone ids have no meaning in a certificate
  let tail: number[] = [];
  let text = s;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    const v4 = parseIPv4(text.slice(lastColon + 1));
    if (!v4) return undefined;
    tail = v4;
    text = `${text.slice(0, lastColon + 1)}0:0`; // placeholder groups, replaced below
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = groups(halves[0] ?? '');
  const rest = halves.length === 2 ? groups(halves[1] ?? '') : [];
  if (!head || !rest) return undefined;
  let all: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - rest.length;
    if (missing < 1) return undefined;
    all = [...head, ...new Array<number>(missing).fill(0), ...rest];
  } else {
    all = head;
  }
  if (all.length !== 8) return undefined;
  const bytes: number[] = [];
  for (const g of all) bytes.push(g >> 8, g & 0xff);
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes;
}

/** 4 or 16 address bytes, or undefined when `ip` is not a literal IPv4/IPv6 address. */
export function ipToBytes(ip: string): Buffer | undefined {
  const bytes = ip.includes(':') ? parseIPv6(ip) : parseIPv4(ip);
  return bytes ? Buffer.from(bytes) : undefined;
}

/** Dotted quad for IPv4; RFC 5952 canonical text (lowercase, longest zero run compressed) for IPv6. */
export function ipFromBytes(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  if (bytes.length !== 16) return `#${bytes.toString('hex')}`; // e.g. a name-constraint style value
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Canonical text form of an IP literal (so "::0001" and "::1" compare equal), or undefined. */
export function canonicalIp(ip: string): string | undefined {
  const bytes = ipToBytes(ip);
  return bytes ? ipFromBytes(bytes) : undefined;
}
