// The tar the Docker archive API speaks, streamed both ways through tar-stream: an archive of one
// file (with the directories it needs) of known size, and the first entry of an archive. Neither
// holds more than a chunk in memory.
import { Readable, Transform, type TransformCallback, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";

export class TarError extends Error {
  override name = "TarError";
}

export interface TarEntry {
  name: string;
  type: "file" | "directory" | "symlink" | "hardlink" | "other";
  size: number;
  linkName: string;
}

export interface SingleFileTar {
  /** Directories to create first, relative to where the archive is extracted, parents before children. */
  dirs: string[];
  /** The file's path relative to where the archive is extracted. */
  name: string;
  mode: number;
  size: number;
  source: Readable;
}

/** Passes exactly `size` bytes, and fails the stream when its source gives more or fewer. */
function exactly(size: number): Transform {
  let sent = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      sent += chunk.length;
      if (sent > size) return done(new TarError(`the source gave more than the ${size} bytes announced`));
      done(null, chunk);
    },
    flush(done: TransformCallback) {
      done(sent === size ? null : new TarError(`the source ended after ${sent} of the ${size} bytes announced`));
    },
  });
}

/**
 * An archive of one file read from `source`, which must give exactly `size` bytes. It is produced as
 * it is read, so backpressure reaches the source; destroying it destroys the source.
 */
export function singleFileTar(spec: SingleFileTar): Readable {
  const pack = tar.pack();
  const owner = { uid: 0, gid: 0, uname: "root", gname: "root" };
  for (const dir of spec.dirs) pack.entry({ name: `${dir}/`, type: "directory", mode: 0o755, ...owner });
  const file = pack.entry({ name: spec.name, type: "file", mode: spec.mode, size: spec.size, ...owner });
  pack.finalize();
  // tar-stream's streams are streamx streams, which Node's pipe and pipeline accept.
  pipeline(spec.source, exactly(spec.size), file as unknown as Writable).catch((err: Error) => {
    spec.source.destroy();
    pack.destroy(err);
  });
  // A Node stream for the engine client; destroying it destroys the pack, and so the source.
  return Readable.from(pack, { objectMode: false });
}

const TYPES: Partial<Record<tar.Header["type"], TarEntry["type"]>> = { file: "file", "contiguous-file": "file", directory: "directory", symlink: "symlink", link: "hardlink" };

/**
 * Opens the first entry of a tar stream: its header, and a stream of its bytes (empty for anything
 * but a file). The rest of the archive is not read; `archive` is destroyed when the body ends or is
 * destroyed.
 */
export async function openFirstEntry(archive: Readable): Promise<{ entry: TarEntry; body: Readable }> {
  const extract = tar.extract();
  const stop = () => {
    archive.unpipe(extract);
    archive.destroy();
    extract.destroy();
  };
  archive.once("error", (err) => extract.destroy(err));
  archive.pipe(extract as unknown as Writable);
  const entries = extract[Symbol.asyncIterator]();
  let next: Awaited<ReturnType<typeof entries.next>>;
  try {
    next = await entries.next();
  } catch (err) {
    stop();
    throw new TarError(`the archive is damaged: ${(err as Error).message}`);
  }
  if (next.done) {
    stop();
    throw new TarError("the archive holds no entry");
  }
  const first = next.value;
  const { header } = first;
  const entry: TarEntry = { name: header.name, type: TYPES[header.type] ?? "other", size: header.size, linkName: header.linkname ?? "" };
  async function* bytes(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of first) yield chunk as Buffer;
    } catch (err) {
      throw new TarError(`the archive is damaged: ${(err as Error).message}`);
    } finally {
      stop();
    }
  }
  const body = Readable.from(bytes(), { objectMode: false });
  body.once("close", stop);
  return { entry, body };
}
