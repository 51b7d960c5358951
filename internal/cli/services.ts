// The database and Redis connections an operator command holds for its one request.
import { Redis } from "ioredis";
import type pg from "pg";
import { requireSections, type WorkerConfig } from "../config/config.js";
import { probeRedis, redisOptions } from "../queue/queue.js";
import { createPool, probePool, requireCurrentSchema } from "../store/db.js";

export type Out = NodeJS.WritableStream;

/** Connects to the database; unless `migrating`, refuses a schema this worker does not know (not migrated, or someone else's). */
export async function withPool<T>(cfg: WorkerConfig, fn: (pool: pg.Pool) => Promise<T>, migrating = false): Promise<T> {
  requireSections(cfg, "database");
  const pool = createPool(cfg.database!, 2);
  pool.on("error", () => undefined);
  try {
    await probePool(pool, cfg.database!.addr);
    if (!migrating) await requireCurrentSchema(pool, cfg.file);
    return await fn(pool);
  } finally {
    await pool.end().catch(() => undefined);
  }
}

export async function withRedis<T>(cfg: WorkerConfig, fn: (redis: Redis) => Promise<T>): Promise<T> {
  requireSections(cfg, "redis");
  await probeRedis(cfg.redis!);
  const redis = new Redis(redisOptions(cfg.redis!, { maxRetriesPerRequest: 3 }));
  redis.on("error", () => undefined);
  try {
    await redis.connect();
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}
