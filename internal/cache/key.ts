// What names a build's cache: its key (written with variables, expanded when the build runs), the
// namespace it belongs to, and the file both make in the store. Pure: no I/O.
import { createHash } from "node:crypto";
import type { ManifestCache } from "../manifest/manifest.js";

/** Where a cache path lives in the build environment: under the workspace, or under the job user's home (`~/`). */
export type CacheBase = "workspace" | "home";

export interface CacheSection {
  base: CacheBase;
  /** Relative to the base, without trailing slashes. */
  paths: string[];
}

/** What the runner needs of a build's cache, its key expanded. */
export interface BuildCache {
  namespace?: string;
  key: string;
  sections: CacheSection[];
  policy: ManifestCache["policy"];
  /** Why this build's cache cannot be used at all (its key holds a masked value): each cache job says so. */
  refused?: string;
}

/** `${VAR}` and `$VAR` replaced by the build's variables (an unset one by nothing, as a shell does); `$$` is one `$`. */
export function expandKey(template: string, env: Record<string, string>): string {
  return template.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (whole, braced?: string, bare?: string) => {
    if (whole === "$$") return "$";
    return env[(braced ?? bare)!] ?? "";
  });
}

/** The key of a manifest without `cache.key`: one cache per namespace and driver image (or machine). */
export function defaultKey(driver: Record<string, string>): string {
  const where = driver.image ?? driver.address;
  return where ? `default-${driver.type}-${where}` : `default-${driver.type}`;
}

/** The manifest's paths grouped by where they live, workspace first. */
export function cacheSections(paths: string[]): CacheSection[] {
  const workspace: string[] = [];
  const home: string[] = [];
  for (const p of paths) {
    const inHome = p.startsWith("~/");
    const rel = (inHome ? p.slice(2) : p).replace(/\/+$/, "").replace(/^(\.\/)+/, "");
    (inHome ? home : workspace).push(rel);
  }
  const sections: CacheSection[] = [];
  if (workspace.length) sections.push({ base: "workspace", paths: [...new Set(workspace)] });
  if (home.length) sections.push({ base: "home", paths: [...new Set(home)] });
  return sections;
}

export function buildCache(cache: ManifestCache, driver: Record<string, string>, env: Record<string, string>, namespace?: string): BuildCache {
  const key = cache.key === undefined ? defaultKey(driver) : expandKey(cache.key, env);
  return { namespace, key, sections: cacheSections(cache.paths), policy: cache.policy };
}

/** Longest file name made from a key; a longer key is cut and a digest of the whole keeps it apart. */
const MAX_NAME = 160;

/**
 * One file name for any text: letters, digits, `_`, `-` and `.` as they are, every other byte
 * (and a leading `.`) as `%XX`. So a key is always one name in its folder: `../other` becomes
 * `%2E.%2Fother`, never a path.
 */
export function encodeName(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_-]/.test(c) || (c === "." && out !== "") ? c : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  if (out.length <= MAX_NAME) return out;
  return `${out.slice(0, MAX_NAME - 18)}~${createHash("sha256").update(text).digest("hex").slice(0, 16)}`;
}

/** Extension of a stored entry. */
export const ENTRY_SUFFIX = ".cache";

/** The folder of a namespace's entries: `ns-<name>`, or `none` for builds without a namespace (an encoded name never is). */
export function namespaceFolder(namespace: string | undefined): string {
  return namespace === undefined || namespace === "" ? "none" : `ns-${encodeName(namespace)}`;
}

/** The entry's name relative to the store's root: its namespace's folder, then its key. */
export function entryName(namespace: string | undefined, key: string): string {
  return `${namespaceFolder(namespace)}/${encodeName(key)}${ENTRY_SUFFIX}`;
}
