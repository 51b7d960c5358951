// `djinn-worker migrate`: create or upgrade the schema.
import { loadWorkerConfig } from "../config/config.js";
import { migrate, SCHEMA_VERSION } from "../store/db.js";
import { withPool, type Out } from "./services.js";

export async function migrateCommand(configFile: string, out: Out): Promise<void> {
  const cfg = loadWorkerConfig(configFile);
  await withPool(cfg, async (pool) => {
    const applied = await migrate(pool);
    out.write(applied.length ? `applied migration${applied.length > 1 ? "s" : ""} ${applied.join(", ")}; schema at version ${SCHEMA_VERSION}\n` : `schema already at version ${SCHEMA_VERSION}\n`);
  }, true);
}
