// What an installation's queues hold and who serves them, as any client of its Redis sees it: the
// live workers (registered, heartbeat not expired) and their lists, the depth of every queue
// under the prefix, and taking a build's payloads off its queue (cancelling it before it runs).
import type { Redis } from "ioredis";
import type { BuildId } from "./delivery.js";
import { heartbeatKey, queueDriverOfList, registryKey } from "./names.js";
import { parsePayload } from "./queue.js";

/** Escapes glob characters, so a name matches only itself in a SCAN pattern. */
export function globLiteral(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** The workers whose heartbeat is live, each with the lists it serves. */
export async function liveWorkers(redis: Redis, prefix: string): Promise<Map<string, string[]>> {
  const registered = await redis.hgetall(registryKey(prefix));
  const ids = Object.keys(registered);
  const out = new Map<string, string[]>();
  if (ids.length === 0) return out;
  const beats = await redis.mget(ids.map((w) => heartbeatKey(prefix, w)));
  ids.forEach((w, i) => {
    if (beats[i] === null) return;
    try {
      const lists: unknown = JSON.parse(registered[w]);
      out.set(w, Array.isArray(lists) ? lists.filter((l): l is string => typeof l === "string") : []);
    } catch {
      out.set(w, []);
    }
  });
  return out;
}

/** How many live workers serve `list`. */
export async function workersServing(redis: Redis, prefix: string, list: string): Promise<number> {
  let n = 0;
  for (const lists of (await liveWorkers(redis, prefix)).values()) if (lists.includes(list)) n++;
  return n;
}

/**
 * The depth of every queue under the prefix (`<prefix>_<queue driver>` lists: not the processing
 * lists, the dead list nor another installation's lists that the pattern also matches), whoever
 * serves it or not. A queue emptied since Redis last had it is absent.
 */
export async function allQueueDepths(redis: Redis, prefix: string): Promise<Map<string, number>> {
  const names = new Set<string>();
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${globLiteral(prefix)}_*`, "COUNT", 1000, "TYPE", "list");
    cursor = next;
    for (const k of keys) if (queueDriverOfList(prefix, k) !== undefined) names.add(k);
  } while (cursor !== "0");
  const out = new Map<string, number>();
  for (const name of [...names].sort()) out.set(name, await redis.llen(name));
  return out;
}

/**
 * Removes every payload naming build `id` from `list` (LREM on their exact bytes); how many. A
 * payload taken meanwhile is left to the claim, which refuses a finished build.
 */
export async function removeQueued(redis: Redis, list: string, id: BuildId): Promise<number> {
  let removed = 0;
  for (const raw of await redis.lrangeBuffer(list, 0, -1)) {
    const payload = parsePayload(raw);
    if (typeof payload !== "string" && payload.id === id) removed += await redis.lrem(list, 0, raw);
  }
  return removed;
}
