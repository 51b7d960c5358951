// `djinn-worker check` on [cache]: the folder can be written (an entry is made beside the others
// and removed), and what it holds.
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { systemReason } from "../errors/errors.js";
import { formatBytes } from "../fs/size.js";
import { CacheStore } from "./store.js";

export async function checkCacheStore(cfg: { path: string; limit: number; quota: number }): Promise<string> {
  const probe = path.join(cfg.path, `.tmp-check-${randomBytes(6).toString("hex")}`);
  try {
    await fs.mkdir(cfg.path, { recursive: true });
    await fs.writeFile(probe, "", { flag: "wx" });
    await fs.rm(probe);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`cannot write in ${cfg.path}: ${systemReason(e.code) ?? e.message}`);
  }
  const entries = await new CacheStore({ root: cfg.path }).list();
  const bytes = entries.reduce((n, e) => n + e.bytes, 0);
  const limits = [cfg.limit ? `limit ${formatBytes(cfg.limit)} per entry` : "no limit per entry", cfg.quota ? `quota ${formatBytes(cfg.quota)}` : "no quota"].join(", ");
  return `cache: ${cfg.path} is writable, ${entries.length} ${entries.length === 1 ? "entry" : "entries"} (${formatBytes(bytes)}); ${limits}`;
}
