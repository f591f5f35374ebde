/** Minimal PEM <-> DER helpers (RFC 7468 textual encoding). */

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

export function pemEncode(label: string, der: Buffer): string {
  const b64 = der.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** True when the input looks like PEM text rather than binary DER. */
export function looksLikePem(input: string | Buffer): boolean {
  const head = typeof input === 'string' ? input : input.subarray(0, 256).toString('latin1');
  return head.trimStart().startsWith('-----BEGIN ') || head.includes('-----BEGIN ');
}

/**
 * Returns the DER bytes of the first PEM block whose label is in `labels`,
 * or undefined when there is none. Base64 outside the alphabet is rejected.
 */
export function pemDecode(text: string, labels: readonly string[]): Buffer | undefined {
  for (const m of text.matchAll(PEM_BLOCK)) {
    const label = m[1] ?? '';
    if (!labels.includes(label)) continue;
    const body = (m[2] ?? '').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length === 0) return undefined;
    return Buffer.from(body, 'base64');
  }
  return undefined;
}

/** All DER blocks with the given label, in order (e.g. every CERTIFICATE in a bundle). */
export function pemDecodeAll(text: string, label: string): Buffer[] {
  const out: Buffer[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    if (m[1] !== label) continue;
    out.push(Buffer.from((m[2] ?? '').replace(/\s+/g, ''), 'base64'));
  }
  return out;
}
