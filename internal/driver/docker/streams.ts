// The streams the docker driver reads and writes: an exec's multiplexed output, the engine's
// JSON-lines progress, and pumping a stream into a shared output. Nothing here talks to an engine.
import { Transform, Writable, type Readable, type TransformCallback } from "node:stream";

/** Splits Docker's multiplexed exec stream (8-byte frame headers) into the bytes of stdout and stderr. */
export class Demux extends Transform {
  private pending = Buffer.alloc(0);
  private left = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    while (buf.length) {
      if (this.left > 0) {
        const take = Math.min(this.left, buf.length);
        this.push(buf.subarray(0, take));
        this.left -= take;
        buf = buf.subarray(take);
        continue;
      }
      if (buf.length < 8) {
        this.pending = Buffer.from(buf);
        break;
      }
      this.left = buf.readUInt32BE(4);
      buf = buf.subarray(8);
    }
    done();
  }
}

/** Pipes a stream into `out` (never ending it) until the stream ends, errors or closes. */
export function pumpInto(source: Readable, out: Writable): Promise<void> {
  return new Promise<void>((resolve) => {
    const finish = () => {
      source.unpipe(out);
      resolve();
    };
    source.once("end", finish);
    source.once("close", finish);
    source.once("error", finish);
    source.pipe(out, { end: false });
  });
}

/** A sink that keeps what is written to it, for the small outputs of the driver's own commands. */
export function capture(): { sink: Writable; text(): string } {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk);
      done();
    },
  });
  return { sink, text: () => Buffer.concat(chunks).toString("utf8") };
}

/** Consumes a JSON-lines progress stream (pull, load); returns the `stream` messages, throws the engine's error. */
export async function followProgress(stream: AsyncIterable<Buffer | string>, onMessage?: (m: Record<string, unknown>) => void): Promise<string[]> {
  const lines: string[] = [];
  let rest = "";
  const handle = (line: string) => {
    if (!line.trim()) return;
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    const detail = msg.errorDetail as { message?: string } | undefined;
    if (msg.error || detail) throw new Error(String(detail?.message ?? msg.error));
    if (typeof msg.stream === "string") lines.push(msg.stream.trim());
    onMessage?.(msg);
  };
  for await (const chunk of stream) {
    rest += chunk.toString();
    const parts = rest.split("\n");
    rest = parts.pop() ?? "";
    for (const line of parts) handle(line);
  }
  handle(rest);
  return lines;
}
