/** '::ffff:10.0.0.1' → '10.0.0.1', so IPv4 rules and bans match whatever stack accepted the socket. */
export function normalizeAddress(addr: string | undefined): string {
  if (addr === undefined) return '';
  return addr.startsWith('::ffff:') && addr.indexOf('.') !== -1 ? addr.slice(7) : addr;
}
