// The Redis half of healing the queue (docs/queue.md, "Redis loses its data"): builds PostgreSQL
// says are waiting, whose payload is nowhere in Redis, go back on their list.
import type { Redis } from "ioredis";
import type { BuildId } from "./delivery.js";
import { globLiteral } from "./inventory.js";
import { deadList, healLockKey, processingList } from "./names.js";
import type { Payload } from "./queue.js";

// KEYS[1]: a queue list, KEYS[2]: the dead list. ARGV[1]: the SCAN pattern of the queue's
// processing lists; then pairs of (build id, payload). Looks at the list, every processing list
// of it and the dead list, all in one atomic step (so a payload being moved between them cannot
// be missed), and pushes the payload of each build found in none of them onto the consumer end.
// A build on the dead list was given up on purpose: it stays there. Returns the ids pushed.
const PUSH_MISSING = `
local present = {}
local function noteId(raw)
  local ok, p = pcall(cjson.decode, raw)
  if ok and type(p) == 'table' then
    local n = tonumber(p.id)
    if n then present[string.format('%d', n)] = true end
  end
end
local function note(key)
  for _, raw in ipairs(redis.call('LRANGE', key, 0, -1)) do noteId(raw) end
end
note(KEYS[1])
for _, raw in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local ok, entry = pcall(cjson.decode, raw)
  if ok and type(entry) == 'table' and type(entry.payload) == 'string' then noteId(entry.payload) end
end
local cursor = '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = r[1]
  for _, key in ipairs(r[2]) do
    if redis.call('TYPE', key).ok == 'list' then note(key) end
  end
until cursor == '0'
local pushed = {}
for i = 2, #ARGV, 2 do
  if not present[ARGV[i]] then
    redis.call('RPUSH', KEYS[1], ARGV[i + 1])
    pushed[#pushed + 1] = ARGV[i]
  end
end
return pushed`;

/** Takes the sweep lock for `ms` when no other worker holds it. */
export async function takeHealLock(redis: Redis, prefix: string, worker: string, ms: number): Promise<boolean> {
  return (await redis.set(healLockKey(prefix), worker, "PX", Math.max(1, Math.round(ms)), "NX")) === "OK";
}

/**
 * Puts back on `list` each build of `builds` that has no payload on it, on any of its processing
 * lists or on the dead list of `prefix`; returns the ids put back.
 */
export async function pushMissing(redis: Redis, prefix: string, list: string, builds: { id: number; createdAt: number }[]): Promise<number[]> {
  if (builds.length === 0) return [];
  const pattern = `${globLiteral(processingList(list, ""))}*`;
  // RPUSH adds at the consumer end: push the newest first, so the oldest is taken first.
  const args = [...builds]
    .sort((a, b) => b.id - a.id)
    .flatMap((b) => [String(b.id), JSON.stringify({ id: b.id as BuildId, enqueued_at: b.createdAt } satisfies Payload)]);
  const pushed = (await redis.eval(PUSH_MISSING, 2, list, deadList(prefix), pattern, ...args)) as string[];
  return pushed.map(Number);
}
