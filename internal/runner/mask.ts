// Replaces every masked value in a byte stream, even one split across chunks, holding back
// at most (longest value - 1) bytes, so memory stays flat whatever a job prints.
import { Transform, type TransformCallback } from "node:stream";

export const MASK = Buffer.from("xxxxxx");

export class MaskStream extends Transform {
  private readonly patterns: Buffer[];
  private readonly hold: number;
  private carry: Buffer = Buffer.alloc(0);

  constructor(values: Iterable<string>) {
    super();
    const unique = [...new Set([...values].filter((v) => v.length > 0))];
    // Longest first, so a value that contains another is masked whole.
    this.patterns = unique.map((v) => Buffer.from(v)).sort((a, b) => b.length - a.length);
    this.hold = this.patterns.length ? this.patterns[0].length - 1 : 0;
  }

  override _transform(chunk: Buffer | string, _enc: BufferEncoding, done: TransformCallback): void {
    const data = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    if (this.patterns.length === 0) return done(null, data);
    const buf = this.carry.length ? Buffer.concat([this.carry, data]) : data;
    this.carry = this.emit_(buf, buf.length - this.hold);
    done();
  }

  override _flush(done: TransformCallback): void {
    if (this.carry.length) this.emit_(this.carry, this.carry.length);
    this.carry = Buffer.alloc(0);
    done();
  }

  /** Masks matches that start before `limit`, pushes everything before max(limit, last match end), returns the rest. */
  private emit_(buf: Buffer, limit: number): Buffer {
    let pos = 0;
    const next = this.patterns.map((p) => buf.indexOf(p, 0));
    for (;;) {
      let start = -1;
      let len = 0;
      for (let i = 0; i < this.patterns.length; i++) {
        if (next[i] >= 0 && next[i] < pos) next[i] = buf.indexOf(this.patterns[i], pos);
        const at = next[i];
        if (at < 0) continue;
        if (start < 0 || at < start || (at === start && this.patterns[i].length > len)) {
          start = at;
          len = this.patterns[i].length;
        }
      }
      if (start < 0 || start >= limit) break;
      if (start > pos) this.push(buf.subarray(pos, start));
      this.push(MASK);
      pos = start + len;
    }
    const cut = Math.max(pos, limit);
    if (cut > pos) this.push(buf.subarray(pos, cut));
    return Buffer.from(buf.subarray(cut));
  }
}
