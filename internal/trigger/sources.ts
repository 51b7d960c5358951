// The pushed repository as one of a manifest's sources, at the pushed commit: the source the
// manifest names it by (its ref replaced by the commit), or, when it names it nowhere, a new
// first source. The manifest's text is what the worker parses, so the text itself is rewritten
// (comments and the rest kept). Pure.
import { isSeq, parseDocument } from "yaml";
import type { Manifest } from "../manifest/manifest.js";

/**
 * A Git URL reduced to what names the repository whatever the transport: host and path, without
 * scheme, user, port, trailing slash or `.git` (`https://h/o/r.git`, `git@h:o/r`, `ssh://git@h:22/o/r`
 * are all `h/o/r`).
 */
export function repositoryKey(url: string): string {
  let rest = url.trim();
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(rest);
  let host = "";
  if (scheme) {
    rest = rest.slice(scheme[0].length);
    const slash = rest.indexOf("/");
    host = slash < 0 ? rest : rest.slice(0, slash);
    rest = slash < 0 ? "" : rest.slice(slash);
    host = host.replace(/^.*@/, "").replace(/:\d*$/, "");
  } else {
    // scp-like user@host:path
    const m = /^(?:[^@/]+@)?([^:/]+):(.*)$/.exec(rest);
    if (m) [host, rest] = [m[1], m[2]];
  }
  const p = rest.replace(/\/+$/, "").replace(/\.git$/, "").replace(/^\/+/, "");
  return `${host.toLowerCase()}/${p}`;
}

/** Which of the manifest's sources is the repository at one of `urls`; -1 when none is. */
export function namedSource(manifest: Manifest, urls: string[]): number {
  const keys = new Set(urls.map(repositoryKey));
  return manifest.sources.findIndex((s) => keys.has(repositoryKey(s.url)));
}

/** The directory a new first source is cloned into: the repository's base name, as `sources` defaults it. */
function baseDir(url: string): string {
  const base = url.replace(/\/+$/, "").split(/[/:]/).pop() ?? "";
  return base.replace(/\.git$/, "") || "src";
}

/**
 * `text` (the manifest `manifest` was parsed from) with the repository at `urls[0]` as a source
 * checked out at `commit`: the one it names (same repository by any URL), else a new first one.
 */
export function pinSource(text: string, manifest: Manifest, urls: string[], commit: string): string {
  const doc = parseDocument(text);
  const i = namedSource(manifest, urls);
  if (i >= 0) {
    const s = manifest.sources[i];
    const seq = doc.get("sources", true);
    if (!isSeq(seq)) throw new Error("sources is not a list");
    seq.set(i, doc.createNode(`${s.url} ${commit} => ${s.dir}`));
    return doc.toString();
  }
  const entry = `${urls[0]} ${commit} => ${baseDir(urls[0])}`;
  const seq = doc.get("sources", true);
  if (isSeq(seq)) seq.items.unshift(doc.createNode(entry));
  else doc.set("sources", doc.createNode([entry]));
  return doc.toString();
}
