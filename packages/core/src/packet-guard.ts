/**
 * Enforces a maximum MQTT packet size before the bytes are buffered. mqtt-packet (inside Aedes)
 * buffers a whole packet before parsing it, so an unfinished 64 MB PUBLISH would sit in memory.
 * We read the fixed header of each packet as bytes go by (no copy, a few integer operations per
 * packet) and close the connection as soon as a declared Remaining Length is too large.
 */
import type { Duplex } from 'node:stream';

const enum Phase {
  Type = 0,
  Length = 1,
}

class FrameScanner {
  phase: Phase = Phase.Type;
  skip = 0;
  len = 0;
  mult = 1;
  lenBytes = 0;
  constructor(readonly max: number) {}

  /** Returns 0 if fine, else the offending packet size (or -1 for a malformed length). */
  scan(buf: Buffer): number {
    const n = buf.length;
    let i = 0;
    while (i < n) {
      if (this.skip > 0) {
        const take = n - i < this.skip ? n - i : this.skip;
        this.skip -= take;
        i += take;
        continue;
      }
      if (this.phase === Phase.Type) {
        this.phase = Phase.Length;
        this.len = 0;
        this.mult = 1;
        this.lenBytes = 0;
        i++;
        continue;
      }
      const b = buf[i++] as number;
      this.len += (b & 127) * this.mult;
      this.mult *= 128;
      this.lenBytes++;
      if (this.len + 1 + this.lenBytes > this.max) return this.len + 1 + this.lenBytes;
      if ((b & 128) === 0) {
        this.skip = this.len;
        this.phase = Phase.Type;
      } else if (this.lenBytes === 4) {
        return -1; // a fifth length byte is a protocol violation [MQTT-2.2.3]
      }
    }
    return 0;
  }
}

/**
 * Wraps `conn.read` (which Aedes calls on 'readable') so every chunk is scanned before it reaches
 * the MQTT parser. On a violation the chunk is withheld, `onViolation` runs and the stream is
 * destroyed: only that connection is affected.
 */
export function guardPacketSize(conn: Duplex, maxPacketSize: number, onViolation: (size: number) => void): void {
  const scanner = new FrameScanner(maxPacketSize);
  const read = conn.read;
  conn.read = function guardedRead(this: Duplex, size?: number) {
    const chunk = read.call(this, size) as Buffer | null;
    if (chunk === null) return chunk;
    const bad = scanner.scan(chunk);
    if (bad === 0) return chunk;
    onViolation(bad);
    conn.read = read;
    this.destroy();
    return null;
  } as typeof conn.read;
}
