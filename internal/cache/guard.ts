// What a restored cache may write: only under the base it is unpacked into. A tar stream passes
// through TarGuard on its way to the driver's unpacker, whichever it is (GNU tar, busybox tar, the
// Engine's archive API): entries whose name is absolute or climbs out (`/x`, `../x`, `a/../../x`),
// hard links to such names, and entries beneath a symlink the archive itself made (`link -> /etc`,
// then `link/passwd`) are left out, whole, and named. A symlink itself may point anywhere (a
// virtualenv's `python -> /usr/bin/python3`): it is made as a link, and nothing is written through
// it. What the guard cannot read as tar readers do (a bad checksum, sparse or multi-volume members,
// a header-only member with data, a global header naming entries) fails the stream, so a reader can
// never see an entry the guard did not.
import { Transform, type TransformCallback } from "node:stream";

const BLOCK = 512;
/** Most bytes of long-name and pax headers before one entry: more is not a cache's. */
const META_LIMIT = 1 << 20;
/** Types with no data after the header (hard link, symlink, devices, directory, fifo). */
const HEADER_ONLY = new Set(["1", "2", "3", "4", "5", "6"]);
const FILE_TYPES = new Set(["0", "\0", "7"]);

export class TarGuardError extends Error {
  override name = "TarGuardError";
}

/** Whether `name` (as an archive gives it) is absolute or has a `..` part. */
export function leadsOut(name: string): boolean {
  return name.startsWith("/") || name.split("/").includes("..");
}

/** `name` without empty and `.` parts: `./a//b/` is `a/b`. */
function normal(name: string): string {
  return name.split("/").filter((p) => p && p !== ".").join("/");
}

function field(block: Buffer, start: number, length: number): string {
  const raw = block.subarray(start, start + length);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul < 0 ? raw.length : nul).toString("utf8");
}

function octal(block: Buffer, start: number, length: number): number {
  const raw = block.subarray(start, start + length);
  if (raw[0] & 0x80) {
    // GNU base-256, for sizes of 8 GiB and more.
    let n = raw[0] & 0x7f;
    for (let i = 1; i < raw.length; i++) n = n * 256 + raw[i];
    return n;
  }
  const text = field(block, start, length).trim();
  if (!/^[0-7]*$/.test(text)) throw new TarGuardError("a tar header with a size that is not a number");
  return text ? parseInt(text, 8) : 0;
}

function checksumOk(block: Buffer): boolean {
  const stored = field(block, 148, 8).trim();
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  return stored !== "" && parseInt(stored, 8) === sum;
}

/** The records of a pax header's data (`<length> <key>=<value>\n` each). */
export function paxRecords(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let at = 0;
  while (at < data.length && data[at] !== 0) {
    const space = data.indexOf(0x20, at);
    const length = Number(data.subarray(at, space).toString("ascii"));
    if (space < 0 || !Number.isSafeInteger(length) || length <= space - at || at + length > data.length) throw new TarGuardError("a damaged pax header");
    const record = data.subarray(space + 1, at + length - 1).toString("utf8");
    const eq = record.indexOf("=");
    if (eq < 0) throw new TarGuardError("a damaged pax header");
    out.set(record.slice(0, eq), record.slice(eq + 1));
    at += length;
  }
  return out;
}

type Mode = "header" | "meta" | "pass" | "skip" | "end";

/**
 * Passes a tar stream on, leaving out the entries that would be written outside the base it is
 * unpacked into (see the file's comment); `refused` names them. Data blocks pass untouched.
 */
export class TarGuard extends Transform {
  /** Entries left out, by the name the archive gives them. */
  readonly refused: string[] = [];
  private mode: Mode = "header";
  /** The header block being gathered. */
  private head: Buffer[] = [];
  private headBytes = 0;
  /** Bytes of the current member's data (padded) still to pass, skip or gather. */
  private left = 0;
  /** Long-name and pax members before the entry they describe: emitted with it, or dropped with it. */
  private meta: Buffer[] = [];
  private metaBytes = 0;
  private metaType = "";
  private metaData: Buffer[] = [];
  private metaSize = 0;
  private names: string[] = [];
  private links: string[] = [];
  private paxSize?: number;
  private zeros = 0;
  private readonly symlinks = new Set<string>();

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      this.consume(chunk);
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    if (this.mode !== "end" && (this.headBytes > 0 || this.left > 0 || this.metaBytes > 0)) return done(new TarGuardError("the archive ends inside an entry"));
    done();
  }

  private consume(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.mode === "end") return; // after the two zero blocks that end an archive, nothing is read
      if (this.mode === "pass" || this.mode === "skip") {
        const n = Math.min(this.left, chunk.length - at);
        if (this.mode === "pass") this.push(chunk.subarray(at, at + n));
        this.left -= n;
        at += n;
        if (this.left === 0) this.mode = "header";
        continue;
      }
      if (this.mode === "meta") {
        const n = Math.min(this.left, chunk.length - at);
        const piece = chunk.subarray(at, at + n);
        this.keepMeta(piece);
        this.metaData.push(piece);
        this.left -= n;
        at += n;
        if (this.left === 0) this.metaDone();
        continue;
      }
      const n = Math.min(BLOCK - this.headBytes, chunk.length - at);
      this.head.push(chunk.subarray(at, at + n));
      this.headBytes += n;
      at += n;
      if (this.headBytes === BLOCK) {
        const block = Buffer.concat(this.head);
        this.head = [];
        this.headBytes = 0;
        this.header(block);
      }
    }
  }

  private keepMeta(piece: Buffer): void {
    this.metaBytes += piece.length;
    if (this.metaBytes > META_LIMIT) throw new TarGuardError(`more than ${META_LIMIT} bytes of headers before one entry`);
    this.meta.push(piece);
  }

  private header(block: Buffer): void {
    if (block.every((b) => b === 0)) {
      if (this.metaBytes > 0) throw new TarGuardError("the archive ends after a header with no entry");
      this.push(block);
      if (++this.zeros === 2) this.mode = "end";
      return;
    }
    // A lone zero block is passed over by GNU tar, which reads on: so does the guard.
    this.zeros = 0;
    if (!checksumOk(block)) throw new TarGuardError("a tar header whose checksum is wrong");
    const type = String.fromCharCode(block[156]);
    const size = this.paxSize ?? octal(block, 124, 12);
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (type === "L" || type === "K" || type === "x" || type === "g") {
      if (this.paxSize !== undefined) throw new TarGuardError("a pax header that gives its own header a size");
      this.keepMeta(block);
      this.metaType = type;
      this.metaSize = octal(block, 124, 12);
      this.metaData = [];
      this.left = Math.ceil(this.metaSize / BLOCK) * BLOCK;
      this.mode = "meta";
      if (this.left === 0) this.metaDone();
      return;
    }
    if (!FILE_TYPES.has(type) && !HEADER_ONLY.has(type)) throw new TarGuardError(`a member of tar type ${JSON.stringify(type)}, which a cache never holds`);
    if (HEADER_ONLY.has(type) && size !== 0) throw new TarGuardError(`a ${type === "5" ? "directory" : "link or special file"} with data after it`);
    const name = field(block, 0, 100);
    const prefix = field(block, 345, 155);
    const names = [name, ...(prefix ? [`${prefix}/${name}`] : []), ...this.names];
    const links = [field(block, 157, 100), ...this.links];
    const why = this.refusal(type, names, links);
    const shown = this.names[0] ?? (prefix ? `${prefix}/${name}` : name);
    if (why) {
      this.refused.push(`${shown} (${why})`);
    } else {
      for (const piece of this.meta) this.push(piece);
      this.push(block);
      if (type === "2") for (const n of names) this.symlinks.add(normal(n));
    }
    this.meta = [];
    this.metaBytes = 0;
    this.names = [];
    this.links = [];
    this.paxSize = undefined;
    this.left = padded;
    this.mode = why ? "skip" : "pass";
    if (this.left === 0) this.mode = "header";
  }

  /** Why the entry is left out, or undefined. */
  private refusal(type: string, names: string[], links: string[]): string | undefined {
    for (const n of names) {
      if (leadsOut(n)) return "it leads out";
      const parts = normal(n).split("/").filter(Boolean);
      if (parts.length === 0 && type !== "5") return "it names the base itself";
      for (let i = 1; i <= parts.length; i++) {
        if (this.symlinks.has(parts.slice(0, i).join("/"))) return "it is under a symlink of the archive's";
      }
    }
    if (type === "1") {
      for (const l of links) {
        if (!l || leadsOut(l)) return "a hard link that leads out";
        const parts = normal(l).split("/");
        for (let i = 1; i < parts.length; i++) if (this.symlinks.has(parts.slice(0, i).join("/"))) return "a hard link under a symlink of the archive's";
      }
    }
    return undefined;
  }

  private metaDone(): void {
    const data = Buffer.concat(this.metaData).subarray(0, this.metaSize);
    this.metaData = [];
    this.mode = "header";
    if (this.metaType === "L") this.names.push(field(data, 0, data.length));
    else if (this.metaType === "K") this.links.push(field(data, 0, data.length));
    else {
      const records = paxRecords(data);
      if ([...records.keys()].some((k) => k.startsWith("GNU.sparse"))) throw new TarGuardError("a sparse member, which a cache never holds");
      if (this.metaType === "g") {
        if (records.has("path") || records.has("linkpath") || records.has("size")) throw new TarGuardError("a global pax header that names or sizes every entry");
        return;
      }
      if (records.has("path")) this.names.push(records.get("path")!);
      if (records.has("linkpath")) this.links.push(records.get("linkpath")!);
      if (records.has("size")) {
        const size = Number(records.get("size"));
        if (!Number.isSafeInteger(size) || size < 0) throw new TarGuardError("a pax header with a size that is not a number");
        this.paxSize = size;
      }
    }
  }
}
