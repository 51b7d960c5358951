// Object (read) and artifact (write) stores on the filesystem. Names can never reach outside
// their store, and every byte is streamed.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { Transform, type Readable, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { ConfineError, confinedPath, isInside } from "./confine.js";
import { EnvironmentError } from "../errors/errors.js";

export class StoreError extends EnvironmentError {
  override name = "StoreError";
}

/** The store could not write an artifact's bytes (a full disk, an I/O error): the job that collected it fails. */
export class ArtifactWriteError extends StoreError {
  override name = "ArtifactWriteError";
}

/** Errors that come from the shape of a name (a file where a directory is wanted), not from the store's disk. */
const NAME_CLASHES = new Set(["ENOTDIR", "EISDIR", "EEXIST", "ENAMETOOLONG"]);

/** A failure of the store's own disk as an ArtifactWriteError; a name that clashes with what is stored as a StoreError. */
function storeFailure(name: string, err: unknown): StoreError {
  const e = err as NodeJS.ErrnoException;
  if (e instanceof StoreError) return e;
  if (e.code && NAME_CLASHES.has(e.code)) return new StoreError(`artifact name ${JSON.stringify(name)} clashes with what the store holds (${e.code})`);
  return new ArtifactWriteError(`the artifact store cannot write ${name}: ${e.message}`);
}

/** `rel` with `-n` before its extension: dist/app.tar.gz → dist/app-2.tar.gz, .env → .env-2. */
function numberedName(rel: string, n: number): string {
  const base = path.posix.basename(rel);
  const dot = base.indexOf(".", 1);
  const numbered = dot === -1 ? `${base}-${n}` : `${base.slice(0, dot)}-${n}${base.slice(dot)}`;
  const dir = path.posix.dirname(rel);
  return dir === "." ? numbered : `${dir}/${numbered}`;
}

/** `name` under the store's `root`; StoreError when it is no name or would lead outside. */
function storePath(root: string, name: string): string {
  try {
    return confinedPath(root, name, "the store");
  } catch (err) {
    throw err instanceof ConfineError ? new StoreError(err.message) : err;
  }
}

export class ObjectStore {
  constructor(readonly root: string) {}

  /** Opens a stored object; symlinks that lead out of the store are refused. */
  async open(name: string): Promise<{ stream: Readable; size: number }> {
    const full = storePath(this.root, name);
    let real: string;
    try {
      real = await fs.realpath(full);
    } catch {
      throw new StoreError(`object ${JSON.stringify(name)} not found in ${this.root}`);
    }
    if (!isInside(await fs.realpath(this.root), real)) throw new StoreError(`object ${JSON.stringify(name)} links outside the store`);
    const handle = await fs.open(real, "r");
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new StoreError(`object ${JSON.stringify(name)} is not a regular file`);
      return { stream: handle.createReadStream(), size: stat.size };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }
}

export interface StoredArtifact {
  name: string;
  /** Where the bytes are, absolute. */
  path: string;
  size: number;
  sha256: string;
  /** Cut at the store's limit. */
  truncated: boolean;
  /** The name asked for, when this build had stored an artifact under it already and `name` is the one this got instead. */
  requested?: string;
}

/** Passes at most `limit` bytes, then notes that more came and stops the source. */
class Limit extends Transform {
  passed = 0;
  truncated = false;
  constructor(private readonly limit: number, private readonly source: Readable) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.truncated) return done();
    const room = this.limit - this.passed;
    if (chunk.length > room) {
      if (room > 0) this.push(chunk.subarray(0, room));
      this.passed += Math.max(room, 0);
      this.truncated = true;
      // Nothing more is wanted: end here rather than read the rest of a huge file.
      this.push(null);
      this.source.unpipe(this);
      this.source.destroy();
      return done();
    }
    this.passed += chunk.length;
    done(null, chunk);
  }
}

export class ArtifactStore {
  /** Names stored through this store, which serves one build: a second artifact of a name gets another name, never overwrites the first. */
  private readonly taken = new Set<string>();

  /** `limit` 0 = no limit. */
  constructor(readonly root: string, readonly limit = 0) {}

  /**
   * Streams `source` into the store under `name`, or under `name-2` (`-3`, …, before the extension)
   * when this build stored `name` already. Written to a temporary file first, so a failure leaves
   * nothing half written. A failure of the store's disk is an ArtifactWriteError.
   */
  async put(name: string, source: Readable): Promise<StoredArtifact> {
    let full: string;
    try {
      full = storePath(this.root, name);
    } catch (err) {
      source.destroy();
      throw err;
    }
    const requested = path.relative(this.root, full).split(path.sep).join("/");
    let stored = requested;
    for (let n = 2; this.taken.has(stored); n++) stored = numberedName(requested, n);
    if (stored !== requested) full = storePath(this.root, stored);
    // Taken before the first await: nothing else may choose it while it is written.
    this.taken.add(stored);
    try {
      const { size, sha256, truncated } = await this.write(name, full, source);
      return { name: stored === requested ? name : stored, path: full, size, sha256, truncated, ...(stored === requested ? {} : { requested: name }) };
    } catch (err) {
      this.taken.delete(stored);
      source.destroy();
      throw err;
    }
  }

  private async write(name: string, full: string, source: Readable): Promise<{ size: number; sha256: string; truncated: boolean }> {
    try {
      await fs.mkdir(path.dirname(full), { recursive: true });
    } catch (err) {
      throw storeFailure(name, err);
    }
    const realRoot = await fs.realpath(this.root);
    if (!isInside(realRoot, await fs.realpath(path.dirname(full)))) throw new StoreError(`artifact name ${JSON.stringify(name)} reaches outside the store`);
    const tmp = path.join(path.dirname(full), `.tmp-${randomBytes(6).toString("hex")}`);
    const hash = createHash("sha256");
    let size = 0;
    const count = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    const limiter = this.limit > 0 ? new Limit(this.limit, source) : undefined;
    // Which side failed first: a source that breaks is the environment's failure; the file's, the store's.
    let failed: "source" | "store" | undefined;
    source.once("error", (err) => {
      failed ??= "source";
      // pipe() does not pass errors on: the limiter must end with the source.
      limiter?.destroy(err);
    });
    try {
      const out = createWriteStream(tmp, { flags: "wx", mode: 0o644 });
      out.once("error", () => (failed ??= "store"));
      if (limiter) await pipeline(source.pipe(limiter), count, out);
      else await pipeline(source, count, out);
      await fs.rename(tmp, full).catch((err) => {
        failed = "store";
        throw err;
      });
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw failed === "store" ? storeFailure(name, err) : err;
    }
    return { size, sha256: hash.digest("hex"), truncated: limiter?.truncated ?? false };
  }

  /** Reads back a stored artifact. */
  open(name: string): Readable {
    return createReadStream(storePath(this.root, name));
  }
}
