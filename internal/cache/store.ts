// The file cache store ([cache] in worker.toml): one file per entry under <path>/<namespace>/,
// written aside and renamed into place, so a reader sees a whole entry or none, two builds saving
// one key at once leave one whole entry, and several workers may share the folder. The oldest-used
// entries go first when the store is over its quota.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import { ConfineError, confinedPath } from "../fs/confine.js";
import { CacheDamagedError, CacheError, CacheLimitError } from "./errors.js";
import { decodeHeader, encodeHeader, entryLength, EntryFormatError, HEADER_BYTES, TarCounter, type EntryHeader, type SectionHeader } from "./format.js";
import { TarGuard } from "./guard.js";
import { ENTRY_SUFFIX, entryName, type CacheSection } from "./key.js";

/** gzip level 1: on 200 MiB of small source files it packs at about 3× the speed of the default (6) for a file about 10% larger (bench/cache.ts). */
export const GZIP_LEVEL = 1;

/** A leftover of a save that never finished (its worker died) is removed once this old. */
const STALE_TEMP_MS = 24 * 3600_000;

export interface CacheStoreOptions {
  root: string;
  /** Most compressed bytes one entry may have; 0 = no limit. */
  limit?: number;
  /** Most compressed bytes of all entries together; 0 = no quota. */
  quota?: number;
  /** gzip level; GZIP_LEVEL unless a measurement asks for another. */
  level?: number;
}

/** A section to save: where it is and how to get its tar stream. */
export interface SectionSource extends CacheSection {
  tar(): Promise<Readable>;
}

export interface SavedEntry {
  name: string;
  header: EntryHeader;
  /** The file's bytes. */
  bytes: number;
  /** Entries removed to keep within the quota, as `namespace folder/file` names. */
  evicted: string[];
}

export interface OpenedSection extends SectionHeader {
  /**
   * The section's tar stream, uncompressed, less the entries that would be written outside the
   * base it is unpacked into (./guard.ts): once it has ended, `refused` names those.
   */
  tar(): TarGuard;
}

export interface OpenedEntry {
  header: EntryHeader;
  bytes: number;
  sections: OpenedSection[];
  close(): Promise<void>;
}

export interface ListedEntry {
  /** Relative to the store's root. */
  name: string;
  namespace?: string;
  key: string;
  bytes: number;
  files: number;
  created: string;
  lastUsed: Date;
}

/** Counts the bytes that pass and fails once they exceed `limit` (0 = none), hashing them. */
class Measure extends Transform {
  bytes = 0;
  private readonly hash = createHash("sha256");
  constructor(private readonly limit: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.limit > 0 && this.bytes > this.limit) return done(new CacheLimitError(`larger than the cache limit of ${this.limit} bytes`));
    this.hash.update(chunk);
    done(null, chunk);
  }
  digest(): string {
    return this.hash.digest("hex");
  }
}

export class CacheStore {
  readonly root: string;
  readonly limit: number;
  readonly quota: number;
  private readonly level: number;

  constructor(opts: CacheStoreOptions) {
    this.level = opts.level ?? GZIP_LEVEL;
    this.root = path.resolve(opts.root);
    this.limit = opts.limit ?? 0;
    this.quota = opts.quota ?? 0;
  }

  /** The entry's file; a name that would lead out of the store is refused (encoding makes that impossible, this says so if it ever were not). */
  entryPath(namespace: string | undefined, key: string): string {
    try {
      return confinedPath(this.root, entryName(namespace, key), "the cache store");
    } catch (err) {
      throw err instanceof ConfineError ? new CacheError(err.message) : err;
    }
  }

  /**
   * Saves the sections as the entry of `key` in `namespace`: written to a file of its own beside
   * the entry, flushed, then renamed over it. Then entries are evicted, oldest-used first, until
   * the store is within its quota.
   */
  async save(namespace: string | undefined, key: string, sections: SectionSource[]): Promise<SavedEntry> {
    const file = this.entryPath(namespace, key);
    // Too many or too long paths for the header are found before anything is packed.
    const largest = { bytes: Number.MAX_SAFE_INTEGER, sha256: "0".repeat(64), size: Number.MAX_SAFE_INTEGER, files: Number.MAX_SAFE_INTEGER };
    encodeHeader({ namespace, key, created: new Date().toISOString(), sections: sections.map((s) => ({ base: s.base, paths: s.paths, ...largest })) });
    await fs.mkdir(path.dirname(file), { recursive: true });
    const tmp = path.join(path.dirname(file), `.tmp-${randomBytes(8).toString("hex")}`);
    const handle = await fs.open(tmp, "wx", 0o600);
    const room = [this.limit, this.quota].filter((n) => n > 0);
    let left = room.length ? Math.min(...room) : 0;
    let position = HEADER_BYTES;
    const written: SectionHeader[] = [];
    try {
      for (const section of sections) {
        const source = await section.tar();
        const counter = new TarCounter();
        const measure = new Measure(left);
        const out = createWriteStream("", { fd: handle.fd, start: position, autoClose: false });
        await pipeline(source, counter, createGzip({ level: this.level, chunkSize: 1 << 18 }), measure, out);
        written.push({ base: section.base, paths: section.paths, bytes: measure.bytes, sha256: measure.digest(), size: counter.bytes, files: counter.files });
        position += measure.bytes;
        if (left > 0) left = Math.max(1, left - measure.bytes);
      }
      const header: EntryHeader = { ...(namespace ? { namespace } : {}), key, created: new Date().toISOString(), sections: written };
      await handle.write(encodeHeader(header), 0, HEADER_BYTES, 0);
      await handle.sync();
      await handle.close();
      await fs.rename(tmp, file);
      const evicted = await this.evict(file);
      return { name: path.relative(this.root, file), header, bytes: position, evicted };
    } catch (err) {
      await handle.close().catch(() => undefined);
      await fs.rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * Opens the entry of `key` in `namespace`, checked whole (its length and every section's
   * digest) before anything is unpacked; undefined when there is none. A damaged entry is a
   * CacheDamagedError. Marks the entry used, for eviction.
   */
  async open(namespace: string | undefined, key: string): Promise<OpenedEntry | undefined> {
    const file = this.entryPath(namespace, key);
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    // The open handle keeps reading this entry even if a save renames another over it meanwhile.
    try {
      const stat = await handle.stat();
      const head = Buffer.alloc(HEADER_BYTES);
      const { bytesRead } = await handle.read(head, 0, HEADER_BYTES, 0);
      if (bytesRead < HEADER_BYTES) throw new CacheDamagedError(`the entry is cut short (${stat.size} bytes, less than its header)`);
      let header: EntryHeader;
      try {
        header = decodeHeader(head);
      } catch (err) {
        throw new CacheDamagedError(`the entry is damaged: ${(err as EntryFormatError).message}`);
      }
      const length = entryLength(header);
      // Read, not stat'ed: a filesystem that answers fstat by path (sshfs) gives the size of
      // whatever a save has renamed there since, while this handle still reads the entry it opened.
      const ends = await endsAt(handle, length);
      if (ends !== "whole") throw new CacheDamagedError(`the entry is ${ends === "short" ? "cut short" : "damaged"}: ${stat.size} bytes where its header says ${length}`);
      let start = HEADER_BYTES;
      const sections: OpenedSection[] = [];
      for (const s of header.sections) {
        const from = start;
        const digest = await sha256Of(handle, from, s.bytes);
        if (digest !== s.sha256) throw new CacheDamagedError(`the entry is damaged: its ${s.base} section does not match its digest`);
        sections.push({ ...s, tar: () => guarded(rangeOf(handle, from, s.bytes), createGunzip({ chunkSize: 1 << 18 })) });
        start += s.bytes;
      }
      // Last used = the file's mtime: a read never changes it (atime does, on every reader, `list` too).
      const now = new Date();
      await handle.utimes(now, now).catch(() => undefined);
      return { header, bytes: length, sections, close: () => handle.close() };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /** Every entry (of `namespace` only, when given), newest first. Leftovers and foreign files are passed over. */
  async list(namespace?: string): Promise<ListedEntry[]> {
    const out: ListedEntry[] = [];
    for (const { file, stat } of await this.files()) {
      const header = await readHeader(file).catch(() => undefined);
      if (!header) continue;
      if (namespace !== undefined && (header.namespace ?? "") !== namespace) continue;
      const files = header.sections.reduce((n, s) => n + s.files, 0);
      out.push({ name: path.relative(this.root, file), ...(header.namespace ? { namespace: header.namespace } : {}), key: header.key, bytes: stat.size, files, created: header.created, lastUsed: stat.mtime });
    }
    return out.sort((a, b) => b.lastUsed.getTime() - a.lastUsed.getTime());
  }

  /** Removes the entry of `key` in `namespace`; false when there was none. */
  async remove(namespace: string | undefined, key: string): Promise<boolean> {
    return removed(this.entryPath(namespace, key));
  }

  /** Removes the entries last used before `before`; their names. */
  async removeUnusedSince(before: Date, namespace?: string): Promise<string[]> {
    const gone: string[] = [];
    for (const e of await this.list(namespace)) {
      if (e.lastUsed < before && (await removed(path.join(this.root, e.name)))) gone.push(e.name);
    }
    return gone;
  }

  /** Entry files with their sizes and last use; stale leftovers of unfinished saves are removed on the way. */
  private async files(): Promise<{ file: string; stat: import("node:fs").Stats }[]> {
    const out: { file: string; stat: import("node:fs").Stats }[] = [];
    const folders = await fs.readdir(this.root, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return [];
      throw err;
    });
    for (const folder of folders) {
      if (!folder.isDirectory()) continue;
      const dir = path.join(this.root, folder.name);
      for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
        const file = path.join(dir, name);
        const stat = await fs.lstat(file).catch(() => undefined);
        if (!stat?.isFile()) continue;
        if (name.startsWith(".tmp-")) {
          if (Date.now() - stat.mtimeMs > STALE_TEMP_MS) await fs.rm(file, { force: true });
        } else if (name.endsWith(ENTRY_SUFFIX)) {
          out.push({ file, stat });
        }
      }
    }
    return out;
  }

  /** Removes entries, least recently used first, until all together fit the quota; `keep` goes last. */
  private async evict(keep: string): Promise<string[]> {
    if (this.quota <= 0) return [];
    const entries = await this.files();
    let total = entries.reduce((n, e) => n + e.stat.size, 0);
    const order = entries.sort((a, b) => Number(a.file === keep) - Number(b.file === keep) || a.stat.mtimeMs - b.stat.mtimeMs);
    const gone: string[] = [];
    for (const e of order) {
      if (total <= this.quota) break;
      // Another worker sharing the folder may have removed it first: its bytes are gone all the same.
      await fs.rm(e.file, { force: true });
      total -= e.stat.size;
      gone.push(path.relative(this.root, e.file));
    }
    return gone;
  }
}

async function removed(file: string): Promise<boolean> {
  try {
    await fs.unlink(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

async function readHeader(file: string): Promise<EntryHeader> {
  const handle = await fs.open(file, "r");
  try {
    const head = Buffer.alloc(HEADER_BYTES);
    await handle.read(head, 0, HEADER_BYTES, 0);
    return decodeHeader(head);
  } finally {
    await handle.close();
  }
}

/**
 * `length` bytes of the file from `start`, streamed; the handle stays open. By its number: a
 * stream given the FileHandle itself holds it, and its close() would wait for the stream's.
 */
function rangeOf(handle: fs.FileHandle, start: number, length: number): Readable {
  if (length === 0) return Readable.from([]);
  return createReadStream("", { fd: handle.fd, start, end: start + length - 1, autoClose: false, highWaterMark: 1 << 20 });
}

/**
 * The gunzipped tar of `range`, through a TarGuard; an error anywhere ends the guard with it. Not
 * by pipeline: that destroys `range` when the reader stops early (a tar that leaves at the end of
 * the archive), and destroying it closes the entry's file descriptor under its FileHandle.
 */
function guarded(range: Readable, gunzip: Transform): TarGuard {
  const guard = new TarGuard();
  const fail = (err: Error) => guard.destroy(err);
  range.once("error", fail);
  gunzip.once("error", fail);
  range.pipe(gunzip).pipe(guard);
  guard.once("close", () => {
    range.unpipe(gunzip);
    gunzip.destroy();
  });
  return guard;
}

/** Whether the opened file ends where its header says (`length`), before, or after: by reading its last byte and the one past it. */
async function endsAt(handle: fs.FileHandle, length: number): Promise<"whole" | "short" | "long"> {
  const two = Buffer.alloc(2);
  const { bytesRead } = await handle.read(two, 0, 2, length - 1);
  return bytesRead < 1 ? "short" : bytesRead > 1 ? "long" : "whole";
}

async function sha256Of(handle: fs.FileHandle, start: number, length: number): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of rangeOf(handle, start, length)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}
