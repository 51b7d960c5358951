// `djinn-worker kill`: a running build is killed by the worker running it (published to it); a
// queued one is cancelled here: ended as killed in PostgreSQL, then its payload taken off the queue.
import { loadWorkerConfig, type WorkerConfig } from "../config/config.js";
import { removeQueued } from "../queue/inventory.js";
import { killChannel } from "../queue/names.js";
import { buildSummary, type BuildSummary } from "../store/builds.js";
import { cancelQueuedBuild } from "../store/cancel.js";
import { TERMINAL_STATUSES } from "../runner/status.js";
import { InputError } from "../errors/errors.js";
import { parseBuildId } from "./input.js";
import { withPool, withRedis, type Out } from "./services.js";
import { queueOfDriver } from "./waiting.js";

export async function killCommand(configFile: string, idText: string, out: Out): Promise<boolean> {
  const id = parseBuildId(idText);
  const cfg = loadWorkerConfig(configFile);
  return withPool(cfg, async (pool) => {
    const b = await buildSummary(pool, id);
    if (!b) throw new InputError(`build ${id} not found`);
    let status = b.status;
    if (status === "queued") {
      // The row first: a worker that takes the payload from now on finds the build finished.
      const c = await cancelQueuedBuild(pool, id);
      if (c.cancelled) return cancelled(cfg, b, out);
      status = c.status ?? status; // a worker claimed it meanwhile: kill it where it runs
    }
    if (TERMINAL_STATUSES.includes(status)) {
      out.write(`build ${id} already finished: ${status}\n`);
      return true;
    }
    const receivers = await withRedis(cfg, (redis) => redis.publish(killChannel(id), b.secret));
    if (receivers === 0) {
      out.write(`build ${id} is ${status}: no worker is running it right now, nothing killed\n`);
      return false;
    }
    out.write(`kill sent for build ${id}\n`);
    return true;
  });
}

/** Takes the cancelled build's payload off its queue; one left there (Redis away) is dropped by the worker that takes it. */
async function cancelled(cfg: WorkerConfig, b: BuildSummary, out: Out): Promise<true> {
  const { id } = b;
  const list = queueOfDriver(cfg, b.driver.type);
  try {
    await withRedis(cfg, (redis) => removeQueued(redis, list, id));
    out.write(`build ${id} cancelled before it ran: killed\n`);
  } catch (err) {
    out.write(`build ${id} cancelled before it ran: killed (its payload stays on ${list} until a worker takes and drops it: ${(err as Error).message})\n`);
  }
  return true;
}
