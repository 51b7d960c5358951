// Just enough tar for the Docker archive API, streamed both ways: a writer for one file (with the
// directories it needs) of known size, and a reader that opens the first entry of an archive.
// Neither ever holds more than a block or a chunk in memory.
import { Readable } from "node:stream";

const BLOCK = 512;
const ZEROS = Buffer.alloc(BLOCK);

export class TarError extends Error {
  override name = "TarError";
}

export interface TarEntry {
  name: string;
  /** "file", "directory", "symlink", "hardlink" or "other". */
  type: "file" | "directory" | "symlink" | "hardlink" | "other";
  size: number;
  linkName: string;
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** Writes `value` as a NUL-terminated octal field, or base-256 when it does not fit (sizes of 8 GiB and more). */
function writeNumber(block: Buffer, offset: number, length: number, value: number): void {
  const octal = value.toString(8);
  if (octal.length < length) {
    block.write(octal.padStart(length - 1, "0"), offset, "ascii");
    block[offset + length - 1] = 0;
    return;
  }
  let rest = BigInt(value);
  for (let i = offset + length - 1; i > offset; i--) {
    block[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  block[offset] = 0x80;
}

function readNumber(block: Buffer, offset: number, length: number): number {
  if (block[offset]! & 0x80) {
    let value = 0n;
    for (let i = offset + 1; i < offset + length; i++) value = (value << 8n) | BigInt(block[i]!);
    return Number(value);
  }
  const text = block.toString("ascii", offset, offset + length).replace(/\0.*$/s, "").trim();
  return text === "" ? 0 : parseInt(text, 8);
}

function readString(block: Buffer, offset: number, length: number): string {
  const end = block.indexOf(0, offset);
  return block.toString("utf8", offset, end === -1 || end > offset + length ? offset + length : end);
}

function header(name: string, size: number, mode: number, typeflag: string): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(name, 0, 100, "utf8");
  writeNumber(block, 100, 8, mode);
  writeNumber(block, 108, 8, 0);
  writeNumber(block, 116, 8, 0);
  writeNumber(block, 124, 12, size);
  writeNumber(block, 136, 12, Math.floor(Date.now() / 1000));
  block.write("        ", 148, 8, "ascii");
  block.write(typeflag, 156, 1, "ascii");
  block.write("ustar\u000000", 257, 8, "ascii");
  block.write("root", 265, 32, "ascii");
  block.write("root", 297, 32, "ascii");
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "ascii");
  return block;
}

/** A PAX record "LEN path=VALUE\n", whose length counts its own digits. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const base = Buffer.byteLength(body);
  let length = base + String(base).length;
  while (base + String(length).length !== length) length = base + String(length).length;
  return `${length}${body}`;
}

/** The header blocks of one entry: a PAX header first when the name is long or not ASCII. */
function entryHeader(name: string, size: number, mode: number, typeflag: string): Buffer[] {
  if (Buffer.byteLength(name) < 100 && /^[\x20-\x7e]*$/.test(name)) return [header(name, size, mode, typeflag)];
  const pax = Buffer.from(paxRecord("path", name), "utf8");
  return [header("PaxHeader", pax.length, 0o644, "x"), pax, ZEROS.subarray(0, padding(pax.length)), header(name.slice(-99).replace(/^\/+/, "") || "file", size, mode, typeflag)];
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

/**
 * An archive of one file read from `source`, which must give exactly `size` bytes. It is produced as
 * it is read, so backpressure reaches the source.
 */
export function singleFileTar(spec: SingleFileTar): Readable {
  async function* blocks(): AsyncGenerator<Buffer> {
    for (const dir of spec.dirs) yield* entryHeader(`${dir}/`, 0, 0o755, "5");
    yield* entryHeader(spec.name, spec.size, spec.mode, "0");
    let sent = 0;
    try {
      for await (const chunk of spec.source) {
        const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
        sent += buf.length;
        if (sent > spec.size) throw new TarError(`the source gave more than the ${spec.size} bytes announced`);
        yield buf;
      }
    } finally {
      spec.source.destroy();
    }
    if (sent !== spec.size) throw new TarError(`the source ended after ${sent} of the ${spec.size} bytes announced`);
    yield ZEROS.subarray(0, padding(spec.size));
    yield ZEROS;
    yield ZEROS;
  }
  return Readable.from(blocks(), { objectMode: false });
}

/** Reads blocks from an async iterator of chunks, keeping only what is not yet consumed. */
class ChunkReader {
  private buffered: Buffer[] = [];
  private length = 0;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async fill(n: number): Promise<boolean> {
    while (this.length < n) {
      const { value, done } = await this.it.next();
      if (done) return false;
      const buf = Buffer.isBuffer(value) ? value : Buffer.from(value as Uint8Array);
      this.buffered.push(buf);
      this.length += buf.length;
    }
    return true;
  }

  /** Exactly `n` bytes, or undefined at the end of the stream. */
  async read(n: number): Promise<Buffer | undefined> {
    if (!(await this.fill(n))) return undefined;
    const all = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.buffered = rest.length ? [rest] : [];
    this.length = rest.length;
    return out;
  }

  /** Up to `max` bytes, at least one, without waiting for more than the next chunk; undefined at the end. */
  async readSome(max: number): Promise<Buffer | undefined> {
    if (this.length === 0 && !(await this.fill(1))) return undefined;
    const first = this.buffered[0]!;
    if (first.length <= max) {
      this.buffered.shift();
      this.length -= first.length;
      return first;
    }
    this.buffered[0] = first.subarray(max);
    this.length -= max;
    return first.subarray(0, max);
  }
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space === -1) break;
    const length = parseInt(data.toString("ascii", at, space), 10);
    if (!(length > 0)) break;
    const record = data.toString("utf8", space + 1, at + length - 1);
    const eq = record.indexOf("=");
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    at += length;
  }
  return out;
}

const TYPES: Record<string, TarEntry["type"]> = { "0": "file", "\0": "file", "7": "file", "5": "directory", "2": "symlink", "1": "hardlink" };

/**
 * Opens the first real entry of a tar stream: its header, and a stream of its bytes (empty for
 * anything but a file). The rest of the archive is not read; `tar` is destroyed when the body ends
 * or is destroyed.
 */
export async function openFirstEntry(tar: Readable): Promise<{ entry: TarEntry; body: Readable }> {
  const it = tar[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const reader = new ChunkReader(it);
  let pax: Record<string, string> = {};
  let longName: string | undefined;
  let longLink: string | undefined;
  try {
    for (;;) {
      const block = await reader.read(BLOCK);
      if (!block || block.every((b) => b === 0)) throw new TarError("the archive holds no entry");
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
      if (readNumber(block, 148, 8) !== sum) throw new TarError("the archive is damaged (header checksum)");
      const typeflag = String.fromCharCode(block[156]!);
      const size = readNumber(block, 124, 12);
      if (typeflag === "x" || typeflag === "g" || typeflag === "L" || typeflag === "K") {
        if (size > 1 << 20) throw new TarError("the archive has an oversized extended header");
        const data = await reader.read(size + padding(size));
        if (!data) throw new TarError("the archive ends inside a header");
        const content = data.subarray(0, size);
        if (typeflag === "x") pax = { ...pax, ...parsePax(content) };
        else if (typeflag === "L") longName = content.toString("utf8").replace(/\0+$/, "");
        else if (typeflag === "K") longLink = content.toString("utf8").replace(/\0+$/, "");
        continue;
      }
      const prefix = block.subarray(257, 262).toString("ascii") === "ustar" ? readString(block, 345, 155) : "";
      const baseName = readString(block, 0, 100);
      const entry: TarEntry = {
        name: pax.path ?? longName ?? (prefix ? `${prefix}/${baseName}` : baseName),
        type: TYPES[typeflag] ?? "other",
        size: pax.size !== undefined ? Number(pax.size) : size,
        linkName: pax.linkpath ?? longLink ?? readString(block, 157, 100),
      };
      const bodySize = entry.type === "file" ? entry.size : 0;
      async function* body(): AsyncGenerator<Buffer> {
        try {
          let left = bodySize;
          while (left > 0) {
            const chunk = await reader.readSome(Math.min(left, 1 << 16));
            if (!chunk) throw new TarError(`the archive ends ${left} bytes before the end of ${entry.name}`);
            left -= chunk.length;
            yield chunk;
          }
        } finally {
          tar.destroy();
        }
      }
      return { entry, body: Readable.from(body(), { objectMode: false }) };
    }
  } catch (err) {
    tar.destroy();
    throw err;
  }
}
