// `djinn-worker kill`: publish a kill to the worker running a build.
import { loadWorkerConfig } from "../config/config.js";
import { killChannel } from "../queue/names.js";
import { buildSummary } from "../store/builds.js";
import { TERMINAL_STATUSES } from "../runner/status.js";
import { InputError } from "../errors/errors.js";
import { parseBuildId } from "./input.js";
import { withPool, withRedis, type Out } from "./services.js";

export async function killCommand(configFile: string, idText: string, out: Out): Promise<boolean> {
  const id = parseBuildId(idText);
  const cfg = loadWorkerConfig(configFile);
  const b = await withPool(cfg, (pool) => buildSummary(pool, id));
  if (!b) throw new InputError(`build ${id} not found`);
  if (TERMINAL_STATUSES.includes(b.status)) {
    out.write(`build ${id} already finished: ${b.status}\n`);
    return true;
  }
  const receivers = await withRedis(cfg, (redis) => redis.publish(killChannel(id), b.secret));
  if (receivers === 0) {
    out.write(`build ${id} is ${b.status}: no worker is running it right now, nothing killed\n`);
    return false;
  }
  out.write(`kill sent for build ${id}\n`);
  return true;
}
