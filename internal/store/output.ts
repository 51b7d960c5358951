// A job's output on its way into PostgreSQL: appended in chunks as it comes (a reader sees it
// within about a second), never held whole, cut at the per-job limit, and made storable: text
// columns refuse NUL and invalid UTF-8, so NUL becomes U+FFFD and bad bytes are decoded with
// replacement (a StringDecoder keeps characters split across chunks whole). And its way back
// out: in order for `logs`, the last lines for a failure mail.
import { Writable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import type pg from "pg";

/** A chunk's size when a job prints fast: large enough that PostgreSQL keeps up (one row a MiB), small enough to hold two. */
export const FLUSH_BYTES = 1024 * 1024;
export const FLUSH_MS = 250;

/** Makes decoded text storable in a PostgreSQL text column. */
export function storable(text: string): string {
  return text.includes("\0") ? text.replace(/\0/g, "\uFFFD") : text;
}

/** Cuts `text` to at most `bytes` UTF-8 bytes without splitting a character. */
export function cutToBytes(text: string, bytes: number): string {
  const buf = Buffer.from(text, "utf8");
  if (buf.length <= bytes) return text;
  let end = bytes;
  // Step back over continuation bytes (10xxxxxx) so the cut falls between characters.
  while (end > 0 && (buf[end] & 0xc0) === 0x80) end--;
  return buf.subarray(0, end).toString("utf8");
}

export interface OutputSinkOptions {
  /** Stores one chunk; rejects when it cannot (the sink fails and the build is not acknowledged). */
  append(text: string): Promise<void>;
  /** Most bytes stored; 0 = no limit. */
  limit: number;
  flushBytes?: number;
  flushMs?: number;
  /**
   * At the end, what is still pending is not appended but kept for takeRest(): the caller writes it
   * with the job's end, in one statement.
   */
  keepRest?: boolean;
}

export class JobOutputSink extends Writable {
  private readonly decoder = new StringDecoder("utf8");
  private pending: string[] = [];
  private pendingBytes = 0;
  private stored = 0;
  private truncated = false;
  private timer?: NodeJS.Timeout;
  private chain: Promise<void> = Promise.resolve();
  private failure?: Error;

  constructor(private readonly opts: OutputSinkOptions) {
    super({ decodeStrings: true });
  }

  /** Whether storing a chunk failed (what is kept then is not stored either). */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Bytes stored so far. */
  get storedBytes(): number {
    return this.stored;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.failure) return done(this.failure);
    this.add(this.decoder.write(chunk));
    if (this.pendingBytes >= (this.opts.flushBytes ?? FLUSH_BYTES)) {
      // One chunk is stored while the next fills: waiting for the store before this one is the
      // backpressure that keeps memory flat (about two chunks) when a job prints fast.
      const previous = this.chain;
      // Nobody waits for this store: its failure fails the sink at once.
      this.flush().catch((err: Error) => this.destroy(err));
      previous.then(() => done(), done);
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush().catch(() => undefined);
    }, this.opts.flushMs ?? FLUSH_MS);
    done();
  }

  override _final(done: (err?: Error | null) => void): void {
    this.add(this.decoder.end());
    if (this.opts.keepRest) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.chain.then(() => done(), done);
      return;
    }
    this.flush().then(() => done(), done);
  }

  /**
   * Once the sink has finished (keepRest): the output not stored yet, which is then counted as
   * stored (storedBytes) since the caller stores it; empty when there is none.
   */
  takeRest(): string {
    const text = this.pending.join("");
    this.stored += this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    return text;
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    if (this.timer) clearTimeout(this.timer);
    done(err);
  }

  private add(text: string): void {
    if (!text || this.truncated) return;
    text = storable(text);
    const limit = this.opts.limit;
    if (limit > 0) {
      const bytes = Buffer.byteLength(text);
      const room = limit - this.stored - this.pendingBytes;
      if (bytes > room) {
        const kept = cutToBytes(text, Math.max(room, 0));
        if (kept) this.push_(kept);
        this.truncated = true;
        this.push_(`\n[output truncated: this job printed more than output_limit (${limit} bytes); the rest was not stored]\n`);
        return;
      }
    }
    this.push_(text);
  }

  private push_(text: string): void {
    this.pending.push(text);
    this.pendingBytes += Buffer.byteLength(text);
  }

  /** Stores what is pending; flushes run one after another so chunks keep their order. */
  private flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.chain = this.chain.then(async () => {
      if (this.failure) throw this.failure;
      if (this.pending.length === 0) return;
      const text = this.pending.join("");
      const bytes = this.pendingBytes;
      this.pending = [];
      this.pendingBytes = 0;
      try {
        await this.opts.append(text);
      } catch (err) {
        this.failure = err as Error;
        throw err;
      }
      this.stored += bytes;
    });
    return this.chain;
  }
}

export interface OutputChunk {
  id: number;
  jobId: number;
  stage: string;
  job: string;
  data: string;
}

/** Stored output after chunk `afterId`, in order, at most `limit` chunks. */
export async function readOutput(pool: pg.Pool, buildId: number, afterId: number, limit = 100): Promise<OutputChunk[]> {
  const r = await pool.query(
    `SELECT o.id, o.job_id, s.name AS stage, j.name AS job, o.data FROM job_output o JOIN jobs j ON j.id = o.job_id JOIN stages s ON s.id = j.stage_id
     WHERE o.build_id = $1 AND o.id > $2 ORDER BY o.id LIMIT $3`,
    [buildId, afterId, limit],
  );
  return r.rows.map((row) => ({ id: Number(row.id), jobId: Number(row.job_id), stage: row.stage, job: row.job, data: row.data }));
}

/** The last `n` lines of a build's stored output, read backwards a few chunks at a time. */
export async function outputTail(pool: pg.Pool, buildId: number, n: number, maxLineChars = 1000): Promise<string[]> {
  let text = "";
  let before = Number.MAX_SAFE_INTEGER;
  for (;;) {
    const r = await pool.query(`SELECT id, data FROM job_output WHERE build_id = $1 AND id < $2 ORDER BY id DESC LIMIT 8`, [buildId, before]);
    for (const row of r.rows) text = row.data + text;
    if (r.rowCount === 0 || text.split("\n").length > n + 1) break;
    before = Number(r.rows[r.rows.length - 1].id);
    // Enough context for the tail: a job that printed megabytes without newlines is cut here.
    if (text.length > n * maxLineChars * 2) break;
  }
  const lines = text.replace(/\n$/, "").split("\n").slice(-n);
  return lines.map((l) => (l.length > maxLineChars ? `${l.slice(0, maxLineChars)}…` : l));
}
