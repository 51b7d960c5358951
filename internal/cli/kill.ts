// `djinn-worker kill`: the kill protocol of ../control/kill.ts, its outcome as one line.
import { loadWorkerConfig } from "../config/config.js";
import { killBuild, killLine } from "../control/kill.js";
import { InputError } from "../errors/errors.js";
import { parseBuildId } from "./input.js";
import { withPool, withRedis, type Out } from "./services.js";

export async function killCommand(configFile: string, idText: string, out: Out): Promise<boolean> {
  const id = parseBuildId(idText);
  const cfg = loadWorkerConfig(configFile);
  return withPool(cfg, async (pool) => {
    const k = await killBuild(pool, (fn) => withRedis(cfg, fn), cfg.queue, id);
    if (!k) throw new InputError(`build ${id} not found`);
    out.write(`${killLine(id, k)}\n`);
    return k.outcome !== "unreached";
  });
}
