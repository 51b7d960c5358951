// Writing into a stream with backpressure: a fast producer waits for room rather than filling memory.
import { Writable } from "node:stream";

type Target = Pick<NodeJS.WritableStream, "write" | "on" | "off"> & { destroyed?: boolean };

/**
 * Writes `chunk`; when `out`'s buffer is full, waits until it drains. A stream that closes or
 * fails meanwhile, or was destroyed before, ends the wait too: never hangs. The failure itself
 * is for whoever owns the stream (a pipeline, an error listener); this only stops waiting.
 * `onDone` is called once the stream is done with `chunk`.
 */
export async function writeDrained(out: Target, chunk: string | Uint8Array, onDone?: (err?: Error | null) => void): Promise<void> {
  // `onDone`: the stream is done with `chunk` (written out, or failed), so its memory may be used again.
  if (!out.write(chunk, onDone)) await drained(out);
}

/** Resolves when a full `out` has room again, closes or fails. */
function drained(out: Target): Promise<void> {
  // A stream already destroyed has closed: no drain or close is coming.
  if (out.destroyed) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      out.off("drain", done);
      out.off("close", done);
      out.off("error", done);
      resolve();
    };
    out.on("drain", done);
    out.on("close", done);
    out.on("error", done);
  });
}

/** A Writable for one job over a stream many share (a terminal): backpressure passes through, and ending it never ends `out`. */
export function sharedSink(out: Target): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      if (out.write(chunk)) done();
      else void drained(out).then(() => done());
    },
  });
}
