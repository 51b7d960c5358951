// Artifact downloads: the stored file streamed with its length, one byte range when asked (206,
// for resuming), and a Content-Disposition no name can break out of. Only files inside the
// artifact store are ever opened: the row's path must resolve inside `[artifacts] path`, and so
// must the file it leads to once symlinks are followed.
import type { FileHandle } from "node:fs/promises";
import fs from "node:fs/promises";
import path from "node:path";
import { isInside, resolveInside } from "../fs/confine.js";

/** One byte range of a file of `size` bytes; "whole" when there is no Range (or one this does not serve); "unsatisfiable" for 416. */
export type RangeAnswer = { start: number; end: number } | "whole" | "unsatisfiable";

/**
 * A Range header for a file of `size` bytes (RFC 9110 14.2): `bytes=a-b`, `bytes=a-` or
 * `bytes=-n`. Several ranges, or another unit, get the whole file, as the RFC allows.
 */
export function parseRange(header: string | undefined, size: number): RangeAnswer {
  if (!header) return "whole";
  const m = /^bytes=\s*(\d*)-(\d*)\s*$/.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) return "whole";
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (!Number.isSafeInteger(start) || start >= size) return "unsatisfiable";
  if (end < start) return "whole";
  return { start, end };
}

/**
 * `attachment` with the name's last part: a plain ASCII `filename` (anything else becomes "_")
 * and the exact name as RFC 6266/8187 `filename*`.
 */
export function contentDisposition(name: string): string {
  const base = name.split("/").filter(Boolean).pop() ?? "artifact";
  const ascii = base.replace(/[^A-Za-z0-9._ ()+,=@-]/g, "_") || "artifact";
  const encoded = encodeURIComponent(base).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

/** The stored file of an artifact row, open, or undefined when it is missing or not inside the store. */
export async function openStored(root: string, rowPath: string): Promise<{ handle: FileHandle; size: number } | undefined> {
  const inside = resolveInside(root, rowPath);
  if (!inside) return undefined;
  let real: string;
  let realRoot: string;
  try {
    [real, realRoot] = await Promise.all([fs.realpath(inside), fs.realpath(root)]);
  } catch {
    return undefined;
  }
  if (real === realRoot || !isInside(realRoot, real) || path.basename(real).startsWith(".tmp-")) return undefined;
  let handle: FileHandle;
  try {
    handle = await fs.open(real, "r");
  } catch {
    return undefined;
  }
  const stat = await handle.stat();
  if (!stat.isFile()) {
    await handle.close();
    return undefined;
  }
  return { handle, size: stat.size };
}
