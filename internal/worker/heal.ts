// Heals the queue after Redis lost its data: every so often one worker of the installation (the
// one that takes the lock) compares the builds PostgreSQL says are waiting with the payloads in
// Redis, and puts back on its list each build whose payload is gone. docs/queue.md.
import type { Redis } from "ioredis";
import type pg from "pg";
import type { Logger } from "../log/log.js";
import { pushMissing, takeHealLock } from "../queue/heal.js";
import { queueDriverOf, queueList } from "../queue/names.js";
import { waitingBuilds, type WaitingBuild } from "../store/builds.js";

/** At most this many builds are looked at per sweep; the next sweep takes the rest. */
const SWEEP_LIMIT = 1000;

export interface HealDeps {
  redis: Redis;
  pool: pg.Pool;
  prefix: string;
  worker: string;
  /** How often a sweep runs (across all workers), and how long a build must have waited to be looked at. */
  intervalMs: number;
  log: Logger;
  healed?: (queue: string, builds: number) => void;
}

/** One sweep, when this worker wins the lock; the number of builds put back. */
export async function healQueue(deps: HealDeps): Promise<number> {
  if (!(await takeHealLock(deps.redis, deps.prefix, deps.worker, deps.intervalMs))) return 0;
  const waiting = await waitingBuilds(deps.pool, deps.intervalMs, SWEEP_LIMIT);
  let total = 0;
  for (const [list, builds] of byList(deps.prefix, waiting)) {
    const pushed = await pushMissing(deps.redis, deps.prefix, list, builds);
    if (pushed.length === 0) continue;
    total += pushed.length;
    deps.log.warn({ queue: list, builds: pushed }, "builds waiting in PostgreSQL had no payload in Redis (Redis lost its data?): put back on their queue");
    deps.healed?.(list, pushed.length);
  }
  return total;
}

function byList(prefix: string, builds: WaitingBuild[]): Map<string, WaitingBuild[]> {
  const lists = new Map<string, WaitingBuild[]>();
  for (const b of builds) {
    if (!b.driverType) continue;
    const list = queueList(prefix, queueDriverOf(b.driverType));
    lists.set(list, [...(lists.get(list) ?? []), b]);
  }
  return lists;
}
