// The bytes of a stored cache entry: a fixed-size header (what the entry holds, each section's
// length and digest, so a cut or damaged entry is found before anything is unpacked), then one
// gzip-compressed tar stream per section, back to back. And a counter of a tar stream's files that
// only reads headers as they pass.
import { Transform, type TransformCallback } from "node:stream";
import type { CacheBase } from "./key.js";

/** Bytes before the first section: room for the header, written last, at the start of the file. */
export const HEADER_BYTES = 8192;
const MAGIC = "djinn-cache 1\n";

export interface SectionHeader {
  base: CacheBase;
  paths: string[];
  /** Compressed bytes in the file. */
  bytes: number;
  sha256: string;
  /** Bytes of the tar stream (uncompressed). */
  size: number;
  /** Regular files in it. */
  files: number;
}

export interface EntryHeader {
  namespace?: string;
  key: string;
  /** ISO 8601, when it was saved. */
  created: string;
  sections: SectionHeader[];
}

/** A header that does not say what an entry holds: the entry is not used. */
export class EntryFormatError extends Error {
  override name = "EntryFormatError";
}

/** What an entry would hold does not fit its header. */
export class EntryTooLargeError extends Error {
  override name = "EntryTooLargeError";
}

export function encodeHeader(header: EntryHeader): Buffer {
  const text = `${MAGIC}${JSON.stringify(header)}\n`;
  const bytes = Buffer.byteLength(text);
  if (bytes > HEADER_BYTES) throw new EntryTooLargeError(`the entry's header needs ${bytes} bytes, more than the ${HEADER_BYTES} it has (too many or too long paths)`);
  const out = Buffer.alloc(HEADER_BYTES, 0x20);
  out.write(text, "utf8");
  return out;
}

export function decodeHeader(bytes: Buffer): EntryHeader {
  const text = bytes.toString("utf8");
  if (!text.startsWith(MAGIC)) throw new EntryFormatError("not a cache entry (its header is missing or damaged)");
  const end = text.indexOf("\n", MAGIC.length);
  let header: EntryHeader;
  try {
    header = JSON.parse(text.slice(MAGIC.length, end)) as EntryHeader;
  } catch {
    throw new EntryFormatError("its header is damaged");
  }
  const sections = Array.isArray(header?.sections) ? header.sections : undefined;
  const sound = (s: SectionHeader) =>
    (s.base === "workspace" || s.base === "home") && Array.isArray(s.paths) && Number.isSafeInteger(s.bytes) && s.bytes >= 0 && /^[0-9a-f]{64}$/.test(s.sha256) && Number.isSafeInteger(s.files) && Number.isSafeInteger(s.size);
  if (typeof header.key !== "string" || !sections || !sections.every(sound)) throw new EntryFormatError("its header is damaged");
  return header;
}

/** The bytes an entry with `header` has, header included: a file of another length was cut or added to. */
export function entryLength(header: EntryHeader): number {
  return HEADER_BYTES + header.sections.reduce((n, s) => n + s.bytes, 0);
}

const BLOCK = 512;

/**
 * Passes a tar stream on unchanged, counting its bytes and its regular files from the headers as
 * they go by (the data blocks are skipped, never copied).
 */
export class TarCounter extends Transform {
  files = 0;
  bytes = 0;
  /** Bytes until the next header block begins. */
  private skip = 0;
  /** A header block split across chunks. */
  private partial: Buffer[] = [];
  private partialBytes = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    let at = 0;
    while (at < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        this.skip -= n;
        at += n;
        continue;
      }
      const need = BLOCK - this.partialBytes;
      const piece = chunk.subarray(at, at + need);
      at += piece.length;
      if (piece.length < need || this.partialBytes > 0) {
        this.partial.push(piece);
        this.partialBytes += piece.length;
        if (this.partialBytes < BLOCK) break;
        this.header(Buffer.concat(this.partial));
        this.partial = [];
        this.partialBytes = 0;
      } else {
        this.header(piece);
      }
    }
    done(null, chunk);
  }

  private header(block: Buffer): void {
    if (block.every((b) => b === 0)) return; // the end-of-archive blocks
    const sizeField = block.subarray(124, 136);
    let size: number;
    if (sizeField[0] & 0x80) {
      // GNU base-256 for sizes of 8 GiB and more.
      size = 0;
      for (let i = 1; i < sizeField.length; i++) size = size * 256 + sizeField[i];
    } else {
      size = parseInt(sizeField.toString("ascii").replace(/\0.*$/s, "").trim() || "0", 8);
    }
    const type = String.fromCharCode(block[156]);
    if (type === "0" || type === "\0" || type === "7") this.files++;
    this.skip = Math.ceil(size / BLOCK) * BLOCK;
  }
}
