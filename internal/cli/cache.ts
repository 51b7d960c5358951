// `djinn-worker cache list` and `cache rm`: the entries of the cache store ([cache] in worker.toml)
// as operators see and prune them.
import { loadWorkerConfig, requireSections } from "../config/config.js";
import { CacheStore } from "../cache/store.js";
import { InputError } from "../errors/errors.js";
import { formatBytes } from "../fs/size.js";
import { parseTimerDuration } from "../timers/duration.js";
import type { Out } from "./services.js";
import { terminalSafe } from "./terminal.js";

export interface CacheCommand {
  action: string;
  key?: string;
  namespace?: string;
  olderThan?: string;
}

function storeOf(configFile: string): CacheStore {
  const cfg = loadWorkerConfig(configFile);
  requireSections(cfg, "cache");
  return new CacheStore({ root: cfg.cache!.path, limit: cfg.cache!.limit, quota: cfg.cache!.quota });
}

export async function cacheCommand(configFile: string, cmd: CacheCommand, out: Out): Promise<void> {
  if (cmd.action === "list") {
    if (cmd.key !== undefined || cmd.olderThan !== undefined) throw new InputError("cache list takes no key and no --older-than: djinn-worker cache list [--namespace N]");
    return listEntries(storeOf(configFile), cmd.namespace, out);
  }
  if (cmd.action === "rm") return removeEntries(configFile, cmd, out);
  throw new InputError(`unknown cache action ${JSON.stringify(cmd.action)}: djinn-worker cache list [--namespace N] | cache rm KEY [--namespace N] | cache rm --older-than D`);
}

async function listEntries(store: CacheStore, namespace: string | undefined, out: Out): Promise<void> {
  const entries = await store.list(namespace);
  if (entries.length === 0) {
    out.write(`no cache entries${namespace === undefined ? "" : ` in namespace ${terminalSafe(namespace)}`} in ${store.root}\n`);
    return;
  }
  // Keys and namespaces come from builds: escaped, so none can split a row or reach the terminal as a control.
  const rows = entries.map((e) => [terminalSafe(e.namespace ?? "-"), terminalSafe(e.key), formatBytes(e.bytes), String(e.files), e.lastUsed.toISOString().replace(/\.\d+Z$/, "Z")]);
  const head = ["NAMESPACE", "KEY", "SIZE", "FILES", "LAST USED"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const r of [head, ...rows]) out.write(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ") + "\n");
  const total = entries.reduce((n, e) => n + e.bytes, 0);
  out.write(`${entries.length} ${entries.length === 1 ? "entry" : "entries"}, ${formatBytes(total)}${store.quota ? ` of a quota of ${formatBytes(store.quota)}` : ""}\n`);
}

async function removeEntries(configFile: string, cmd: CacheCommand, out: Out): Promise<void> {
  if ((cmd.key === undefined) === (cmd.olderThan === undefined)) throw new InputError("cache rm takes a KEY or --older-than D (one of them): djinn-worker cache rm KEY [--namespace N] | cache rm --older-than D [--namespace N]");
  let ms = 0;
  if (cmd.olderThan !== undefined) {
    try {
      ms = parseTimerDuration(cmd.olderThan);
    } catch (err) {
      throw new InputError(`--older-than: ${(err as Error).message}`);
    }
  }
  const store = storeOf(configFile);
  const where = cmd.namespace === undefined ? "" : ` of namespace ${terminalSafe(cmd.namespace)}`;
  if (cmd.key !== undefined) {
    if (!(await store.remove(cmd.namespace, cmd.key))) throw new InputError(`no cache entry ${terminalSafe(JSON.stringify(cmd.key))}${where || " without a namespace (give --namespace N for a namespace's)"}`);
    out.write(`removed cache ${terminalSafe(JSON.stringify(cmd.key))}${where}\n`);
    return;
  }
  const gone = await store.removeUnusedSince(new Date(Date.now() - ms), cmd.namespace);
  for (const name of gone) out.write(`removed ${terminalSafe(name)}\n`);
  out.write(`${gone.length} ${gone.length === 1 ? "entry" : "entries"}${where} not used for ${cmd.olderThan} removed\n`);
}
