// The build cache's two jobs (docs/cache.md): restore-cache in the setup stage, save-cache after
// the last stage. Each says what it did in one line (files, size, time) and never fails the
// build: a missing, damaged or unusable cache is a line, and the build goes on cold.
import type { Readable } from "node:stream";
import type { Driver, TarBase } from "../driver/driver.js";
import { CacheDamagedError, CacheLimitError } from "../cache/errors.js";
import type { CacheStore, SectionSource } from "../cache/store.js";
import type { BuildCache } from "../cache/key.js";
import { formatDuration } from "../timers/duration.js";
import { formatBytes } from "../fs/size.js";

/** What the metrics count of caches. */
export interface CacheObserver {
  hit(bytes: number): void;
  miss(): void;
  saved(bytes: number): void;
}

export interface CacheContext {
  /** The build's cache, its key expanded. */
  spec: BuildCache;
  /** Without one (no [cache] in worker.toml), each job says so. */
  store?: CacheStore;
  observe?: CacheObserver;
}

type Note = (line: string) => Promise<void>;

/** `stream`, destroyed when the build is killed or times out: a transfer under way stops at once, whichever driver moves it. */
function untilAborted<T extends Readable>(stream: T, signal: AbortSignal): T {
  const stop = () => stream.destroy(new Error("the build was stopped"));
  if (signal.aborted) stop();
  else {
    signal.addEventListener("abort", stop, { once: true });
    stream.once("close", () => signal.removeEventListener("abort", stop));
  }
  return stream;
}


function took(started: number): string {
  return formatDuration(Math.max(1, Math.round((Date.now() - started) / 10) * 10));
}

function where(spec: BuildCache): string {
  return `cache ${JSON.stringify(spec.key)}${spec.namespace ? ` of namespace ${spec.namespace}` : ""}`;
}

/** Why caches cannot work in this build, or undefined. */
function unusable(cache: CacheContext | undefined, driver: Driver, what: "restored" | "saved"): string | undefined {
  if (!cache?.store) return `cache not ${what}: no cache store is configured here ([cache] path in worker.toml)`;
  if (!driver.packTar || !driver.unpackTar) return `cache not ${what}: this driver cannot move caches`;
  if (cache.spec.refused) return `cache not ${what}: ${cache.spec.refused}`;
  return undefined;
}

export async function restoreCache(cache: CacheContext | undefined, driver: Driver, note: Note, signal: AbortSignal): Promise<void> {
  const why = unusable(cache, driver, "restored");
  if (why) return note(why);
  const { spec, store, observe } = cache!;
  const started = Date.now();
  let entry;
  try {
    entry = await store!.open(spec.namespace, spec.key);
  } catch (err) {
    observe?.miss();
    const reason = err instanceof CacheDamagedError ? err.message : `cannot read it: ${(err as Error).message}`;
    return note(`${where(spec)} not restored: ${reason}; the build goes on without it`);
  }
  if (!entry) {
    observe?.miss();
    return note(`${where(spec)}: none saved yet; the build goes on without it`);
  }
  let files = 0;
  let size = 0;
  const refused: string[] = [];
  try {
    for (const section of entry.sections) {
      if (signal.aborted) return;
      const tar = section.tar();
      await driver.unpackTar!(section.base as TarBase, untilAborted(tar, signal), signal);
      files += section.files;
      size += section.size;
      refused.push(...tar.refused);
    }
  } catch (err) {
    observe?.miss();
    if (signal.aborted) return;
    return note(`${where(spec)} not restored whole: ${(err as Error).message}; the build goes on with what was unpacked`);
  } finally {
    await entry.close();
  }
  if (refused.length) await note(`cache: ${refused.length} ${refused.length === 1 ? "entry" : "entries"} not restored, as ${refused.length === 1 ? "it" : "they"} would be written outside the workspace: ${refused.slice(0, 5).join(", ")}${refused.length > 5 ? ", ..." : ""}`);
  observe?.hit(entry.bytes);
  await note(`Restored ${where(spec)}: ${files} files, ${formatBytes(size)} (${formatBytes(entry.bytes)} stored) in ${took(started)}`);
}

export async function saveCache(cache: CacheContext | undefined, driver: Driver, note: Note, signal: AbortSignal): Promise<void> {
  const why = unusable(cache, driver, "saved");
  if (why) return note(why);
  const { spec, store, observe } = cache!;
  const started = Date.now();
  const missing: string[] = [];
  const shown = (base: TarBase, p: string) => (base === "home" ? `~/${p}` : p);
  const sections: SectionSource[] = spec.sections.map((s) => ({
    ...s,
    tar: async () => {
      const packed = await driver.packTar!(s.base, s.paths, signal);
      missing.push(...packed.missing.map((p) => shown(s.base, p)));
      return untilAborted(packed.archive, signal);
    },
  }));
  let saved;
  try {
    saved = await store!.save(spec.namespace, spec.key, sections);
  } catch (err) {
    if (signal.aborted) return;
    const reason = err instanceof CacheLimitError ? err.message : (err as Error).message;
    return note(`${where(spec)} not saved: ${reason}`);
  }
  if (missing.length) await note(`cache: ${missing.join(", ")} ${missing.length === 1 ? "does" : "do"} not exist: not in the cache`);
  const files = saved.header.sections.reduce((n, s) => n + s.files, 0);
  const size = saved.header.sections.reduce((n, s) => n + s.size, 0);
  observe?.saved(saved.bytes);
  await note(`Saved ${where(spec)}: ${files} files, ${formatBytes(size)} (${formatBytes(saved.bytes)} stored) in ${took(started)}`);
  if (saved.evicted.length) await note(`cache store over its quota: removed ${saved.evicted.length} least recently used ${saved.evicted.length === 1 ? "entry" : "entries"}`);
}
