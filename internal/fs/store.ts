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
  /** `limit` 0 = no limit. */
  constructor(readonly root: string, readonly limit = 0) {}

  /** Streams `source` into the store under `name`; written to a temporary file first, so a failure leaves nothing half written. */
  async put(name: string, source: Readable): Promise<StoredArtifact> {
    const full = storePath(this.root, name);
    await fs.mkdir(path.dirname(full), { recursive: true });
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
    try {
      const out = createWriteStream(tmp, { flags: "wx", mode: 0o644 });
      if (limiter) await pipeline(source.pipe(limiter), count, out);
      else await pipeline(source, count, out);
      await fs.rename(tmp, full);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    return { name, path: full, size, sha256: hash.digest("hex"), truncated: limiter?.truncated ?? false };
  }

  /** Reads back a stored artifact. */
  open(name: string): Readable {
    return createReadStream(storePath(this.root, name));
  }
}
