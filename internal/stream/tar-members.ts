// A tar stream read member by member as it passes, without copying data blocks: what the cache's
// guard (leaving out entries that lead out) and the docker driver's renaming (prefixing names on
// the fly) share. A subclass sees each member's header with the long-name and pax headers before
// it, and says what to send in their place, or to leave the member out. What cannot be read as tar
// readers do (a bad checksum, sparse or multi-volume members, a header-only member with data, a
// global header naming entries) fails the stream, so a reader never sees a member this did not.
import { Transform, type TransformCallback } from "node:stream";

export const BLOCK = 512;
/** Most bytes of long-name and pax headers before one member: more is not an archive of files. */
const META_LIMIT = 1 << 20;
/** Types with no data after the header (hard link, symlink, devices, directory, fifo). */
const HEADER_ONLY = new Set(["1", "2", "3", "4", "5", "6"]);
const FILE_TYPES = new Set(["0", "\0", "7"]);

export class TarFormatError extends Error {
  override name = "TarFormatError";
}

export interface TarMember {
  /** The type flag: "0" file, "1" hard link, "2" symlink, "5" directory, ... */
  type: string;
  /** The header block (a copy: a subclass may change it, then call setChecksum). */
  block: Buffer;
  /** The ustar name (prefix/name when it has a prefix), its GNU long name, its pax path. */
  ustarName: string;
  longName?: string;
  paxPath?: string;
  /** The same for its link target. */
  ustarLink: string;
  longLink?: string;
  paxLinkpath?: string;
  /** Its pax header's records, when it has one. */
  pax?: Map<string, string>;
  /** Its long-name and pax headers as they came (header blocks and data). */
  meta: Buffer[];
}

/** The name a reader uses: the pax path, else the GNU long name, else the ustar name. */
export const memberName = (m: TarMember) => m.paxPath ?? m.longName ?? m.ustarName;
export const memberLink = (m: TarMember) => m.paxLinkpath ?? m.longLink ?? m.ustarLink;

export function field(block: Buffer, start: number, length: number): string {
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
  if (!/^[0-7]*$/.test(text)) throw new TarFormatError("a tar header with a size that is not a number");
  return text ? parseInt(text, 8) : 0;
}

function checksumOf(block: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  return sum;
}

/** Writes a header block's checksum for what it now holds. */
export function setChecksum(block: Buffer): void {
  block.write(`${checksumOf(block).toString(8).padStart(6, "0")}\0 `, 148, 8, "ascii");
}

/** Writes `value` into a header's field, NUL-padded; false when it does not fit. */
export function setField(block: Buffer, start: number, length: number, value: string): boolean {
  const bytes = Buffer.from(value, "utf8");
  if (bytes.length > length) return false;
  block.fill(0, start, start + length);
  bytes.copy(block, start);
  return true;
}

/** The records of a pax header's data (`<length> <key>=<value>\n` each). */
export function paxRecords(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let at = 0;
  while (at < data.length && data[at] !== 0) {
    const space = data.indexOf(0x20, at);
    const length = Number(data.subarray(at, space).toString("ascii"));
    if (space < 0 || !Number.isSafeInteger(length) || length <= space - at || at + length > data.length) throw new TarFormatError("a damaged pax header");
    const record = data.subarray(space + 1, at + length - 1).toString("utf8");
    const eq = record.indexOf("=");
    if (eq < 0) throw new TarFormatError("a damaged pax header");
    out.set(record.slice(0, eq), record.slice(eq + 1));
    at += length;
  }
  return out;
}

/** A pax header member ('x') holding `records`: its header block and padded data. */
export function paxMember(records: Map<string, string>): Buffer {
  const lines = [...records].map(([key, value]) => {
    const body = ` ${key}=${value}\n`;
    const bytes = Buffer.byteLength(body);
    // The length counts its own digits.
    let length = bytes + String(bytes).length;
    if (String(length).length > String(bytes).length) length++;
    return `${length}${body}`;
  });
  const data = Buffer.from(lines.join(""), "utf8");
  const block = Buffer.alloc(BLOCK);
  setField(block, 0, 100, "PaxHeader");
  block.write("0000644\0", 100);
  block.write("0000000\0", 108);
  block.write("0000000\0", 116);
  block.write(`${data.length.toString(8).padStart(11, "0")}\0`, 124);
  block.write("00000000000\0", 136);
  block.write("x", 156);
  block.write("ustar\0", 257);
  block.write("00", 263);
  setChecksum(block);
  return Buffer.concat([block, data, Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK)]);
}

type Mode = "header" | "meta" | "pass" | "skip" | "end";

export abstract class TarMembers extends Transform {
  private mode: Mode = "header";
  private head: Buffer[] = [];
  private headBytes = 0;
  /** Bytes of the current member's data (padded) still to pass, skip or gather. */
  private left = 0;
  private meta: Buffer[] = [];
  private metaBytes = 0;
  private metaType = "";
  private metaData: Buffer[] = [];
  private metaSize = 0;
  private longName?: string;
  private longLink?: string;
  private pax?: Map<string, string>;
  private zeros = 0;

  /** @param endBlocks whether the two zero blocks that end the archive are passed on. */
  constructor(private readonly endBlocks = true) {
    super();
  }

  /** What to send for `m` before its data (its headers, changed or not); undefined leaves it out, data and all. */
  protected abstract member(m: TarMember): Buffer[] | undefined;

  /** What one input chunk gives, sent as one chunk: a reader (a pipe, an HTTP body) gets few large writes, not one per header. */
  private out: Buffer[] = [];

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      this.consume(chunk);
      const out = this.out;
      this.out = [];
      if (out.length === 0) done();
      else done(null, out.length === 1 ? out[0] : Buffer.concat(out));
    } catch (err) {
      done(err as Error);
    }
  }

  private send(piece: Buffer): void {
    this.out.push(piece);
  }

  override _flush(done: TransformCallback): void {
    if (this.mode !== "end" && (this.headBytes > 0 || this.left > 0 || this.metaBytes > 0)) return done(new TarFormatError("the archive ends inside a member"));
    done();
  }

  private consume(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.mode === "end") return; // after the two zero blocks that end an archive, nothing is read
      if (this.mode === "pass" || this.mode === "skip") {
        const n = Math.min(this.left, chunk.length - at);
        if (this.mode === "pass") this.send(chunk.subarray(at, at + n));
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
    if (this.metaBytes > META_LIMIT) throw new TarFormatError(`more than ${META_LIMIT} bytes of headers before one member`);
    this.meta.push(piece);
  }

  private header(block: Buffer): void {
    if (block.every((b) => b === 0)) {
      if (this.metaBytes > 0) throw new TarFormatError("the archive ends after a header with no member");
      if (this.endBlocks) this.send(block);
      if (++this.zeros === 2) this.mode = "end";
      return;
    }
    // A lone zero block is passed over by GNU tar, which reads on: so does this.
    this.zeros = 0;
    if (field(block, 148, 8).trim() === "" || parseInt(field(block, 148, 8).trim(), 8) !== checksumOf(block)) throw new TarFormatError("a tar header whose checksum is wrong");
    const type = String.fromCharCode(block[156]);
    const paxSize = this.pax?.get("size");
    const size = paxSize !== undefined ? Number(paxSize) : octal(block, 124, 12);
    if (!Number.isSafeInteger(size) || size < 0) throw new TarFormatError("a pax header with a size that is not a number");
    if (type === "L" || type === "K" || type === "x" || type === "g") {
      if (paxSize !== undefined) throw new TarFormatError("a pax header that gives its own header a size");
      this.keepMeta(block);
      this.metaType = type;
      this.metaSize = octal(block, 124, 12);
      this.metaData = [];
      this.left = Math.ceil(this.metaSize / BLOCK) * BLOCK;
      this.mode = "meta";
      if (this.left === 0) this.metaDone();
      return;
    }
    if (!FILE_TYPES.has(type) && !HEADER_ONLY.has(type)) throw new TarFormatError(`a member of tar type ${JSON.stringify(type)}, which is not a file, link or directory`);
    if (HEADER_ONLY.has(type) && size !== 0) throw new TarFormatError(`a ${type === "5" ? "directory" : "link or special file"} with data after it`);
    const name = field(block, 0, 100);
    const prefix = field(block, 345, 155);
    const m: TarMember = {
      type,
      block: Buffer.from(block),
      ustarName: prefix ? `${prefix}/${name}` : name,
      ustarLink: field(block, 157, 100),
      meta: this.meta,
      ...(this.longName !== undefined ? { longName: this.longName } : {}),
      ...(this.longLink !== undefined ? { longLink: this.longLink } : {}),
      ...(this.pax ? { pax: this.pax } : {}),
      ...(this.pax?.has("path") ? { paxPath: this.pax.get("path")! } : {}),
      ...(this.pax?.has("linkpath") ? { paxLinkpath: this.pax.get("linkpath")! } : {}),
    };
    this.meta = [];
    this.metaBytes = 0;
    this.longName = this.longLink = this.pax = undefined;
    const send = this.member(m);
    for (const piece of send ?? []) this.send(piece);
    this.left = Math.ceil(size / BLOCK) * BLOCK;
    this.mode = this.left === 0 ? "header" : send ? "pass" : "skip";
  }

  private metaDone(): void {
    const data = Buffer.concat(this.metaData).subarray(0, this.metaSize);
    this.metaData = [];
    this.mode = "header";
    if (this.metaType === "L") this.longName = field(data, 0, data.length);
    else if (this.metaType === "K") this.longLink = field(data, 0, data.length);
    else {
      const records = paxRecords(data);
      if ([...records.keys()].some((k) => k.startsWith("GNU.sparse"))) throw new TarFormatError("a sparse member");
      if (this.metaType === "g") {
        if (records.has("path") || records.has("linkpath") || records.has("size")) throw new TarFormatError("a global pax header that names or sizes every member");
        return;
      }
      this.pax = new Map([...(this.pax ?? []), ...records]);
    }
  }
}
