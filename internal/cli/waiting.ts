// What a queued build waits on, as the operator commands tell it: its queue, and how many live
// workers serve that queue (none: it waits until one starts, or is cancelled with `kill`).
import type { WorkerConfig } from "../config/config.js";
import { workersServing } from "../queue/inventory.js";
import { queueDriverOf, queueList } from "../queue/names.js";
import { withRedis } from "./services.js";

/** The queue a build of driver `type` waits on. */
export function queueOfDriver(cfg: WorkerConfig, type: string): string {
  return queueList(cfg.queue, queueDriverOf(type));
}

/** How many live workers serve `list`, asked of the installation's Redis. */
export function servingCount(cfg: WorkerConfig, list: string): Promise<number> {
  return withRedis(cfg, (redis) => workersServing(redis, cfg.queue, list));
}

/** One line: the queue a queued build waits on and who serves it (or that Redis cannot say). */
export async function waitingLine(cfg: WorkerConfig, id: number, driverType: string): Promise<string> {
  const list = queueOfDriver(cfg, driverType);
  let n: number;
  try {
    n = await servingCount(cfg, list);
  } catch (err) {
    return `build ${id} waits on queue ${list} (which workers serve it is unknown: ${(err as Error).message})`;
  }
  return n === 0 ? `build ${id} waits on queue ${list}: no live worker serves it (it runs once one does; kill ${id} cancels it)` : `build ${id} waits on queue ${list}, served by ${n} live worker${n === 1 ? "" : "s"}`;
}
