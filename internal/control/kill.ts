// Killing a build, as `djinn-worker kill` and the web's kill button and API do it: a running build
// is killed by the worker running it (published to it); a queued one is cancelled here: ended as
// killed in PostgreSQL, then its payload taken off the queue.
import type pg from "pg";
import type { Redis } from "ioredis";
import { removeQueued } from "../queue/inventory.js";
import { killChannel, queueDriverOf, queueList } from "../queue/names.js";
import type { BuildId } from "../queue/build-id.js";
import { buildSummary } from "../store/builds.js";
import { cancelQueuedBuild } from "../store/cancel.js";
import { TERMINAL_STATUSES, type Status } from "../runner/status.js";

export type KillOutcome =
  /** Cancelled before it ran; `leftOn` names the queue its payload stays on when Redis could not take it off (the worker that takes it drops it). */
  | { outcome: "cancelled"; leftOn?: { list: string; reason: string } }
  | { outcome: "finished"; status: Status }
  /** The kill reached the worker running it. */
  | { outcome: "sent" }
  /** Running (or claimed) but no worker listens for its kill right now. */
  | { outcome: "unreached"; status: Status };

/** Redis, for as long as `fn` needs it: the CLI connects only when it must, the web holds one client. */
export type WithRedis = <T>(fn: (redis: Redis) => Promise<T>) => Promise<T>;

/** Kills build `id` of the installation whose queue prefix is `queue`; undefined when there is no such build. */
export async function killBuild(pool: pg.Pool, withRedis: WithRedis, queue: string, id: BuildId): Promise<KillOutcome | undefined> {
  const b = await buildSummary(pool, id);
  if (!b) return undefined;
  let status = b.status;
  if (status === "queued") {
    // The row first: a worker that takes the payload from now on finds the build finished.
    const c = await cancelQueuedBuild(pool, id);
    if (c.cancelled) {
      const list = queueList(queue, queueDriverOf(b.driver.type));
      try {
        await withRedis((redis) => removeQueued(redis, list, id));
        return { outcome: "cancelled" };
      } catch (err) {
        return { outcome: "cancelled", leftOn: { list, reason: (err as Error).message } };
      }
    }
    status = c.status ?? status; // a worker claimed it meanwhile: kill it where it runs
  }
  if (TERMINAL_STATUSES.includes(status)) return { outcome: "finished", status };
  const receivers = await withRedis((redis) => redis.publish(killChannel(id), b.secret));
  return receivers === 0 ? { outcome: "unreached", status } : { outcome: "sent" };
}

/** The line `kill` prints for an outcome, and the web shows. */
export function killLine(id: BuildId, k: KillOutcome): string {
  switch (k.outcome) {
    case "cancelled":
      return k.leftOn
        ? `build ${id} cancelled before it ran: killed (its payload stays on ${k.leftOn.list} until a worker takes and drops it: ${k.leftOn.reason})`
        : `build ${id} cancelled before it ran: killed`;
    case "finished":
      return `build ${id} already finished: ${k.status}`;
    case "sent":
      return `kill sent for build ${id}`;
    case "unreached":
      return `build ${id} is ${k.status}: no worker is running it right now, nothing killed`;
  }
}
