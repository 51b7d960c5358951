// `djinn-worker check`: the effective configuration, then whether each configured part can work.
import type { DriverConfig, WorkerConfig } from "../config/config.js";
import { summarizeDrivers, summarizeWorker } from "../config/summary.js";
import { getDriver } from "../driver/driver.js";
import { configuredDrivers, driverTypeOfQueue, queueList, servedDrivers } from "../queue/names.js";
import "../driver/all.js";
import { createLogger } from "../log/log.js";
import { Mailer } from "../mail/mail.js";
import { checkListen } from "../metrics/metrics.js";
import { checkListenAddr } from "../net/listen.js";
import { probeRedis, redisOptions } from "../queue/queue.js";
import { createPool, probePool, schemaVersion, SCHEMA_VERSION } from "../store/db.js";
import { Redis } from "ioredis";
import { checkCacheStore } from "../cache/check.js";

/** ok/FAIL lines for each configured service the daemon connects to, and for the web process's [web]. */
export async function checkServices(worker: WorkerConfig): Promise<{ ok: boolean; lines: string[] }> {
  const lines: string[] = [];
  let ok = true;
  const failed = (line: string) => {
    lines.push(`FAIL ${line}`);
    ok = false;
  };
  if (worker.database) {
    const pool = createPool(worker.database, 1);
    pool.on("error", () => undefined);
    try {
      await probePool(pool, worker.database.addr);
      const v = await schemaVersion(pool);
      if (v === SCHEMA_VERSION) lines.push(`ok   postgresql: ${worker.database.addr}/${worker.database.name}, schema version ${v} (current)`);
      else failed(`postgresql: ${worker.database.addr}/${worker.database.name}: schema version ${v}, expected ${SCHEMA_VERSION}${v < SCHEMA_VERSION ? `: run \`djinn-worker migrate -config ${worker.file}\`` : ": upgrade djinn-worker"}`);
    } catch (err) {
      failed(`postgresql: ${(err as Error).message}`);
    } finally {
      await pool.end().catch(() => undefined);
    }
  }
  if (worker.redis) {
    try {
      await probeRedis(worker.redis);
      const client = new Redis(redisOptions(worker.redis, { maxRetriesPerRequest: 1, retryStrategy: () => null }));
      client.on("error", () => undefined);
      try {
        await client.connect();
        const info = await client.info("server");
        const version = /redis_version:(\S+)/.exec(info)?.[1] ?? "unknown";
        lines.push(`ok   redis: ${worker.redis.addr}, Redis ${version}`);
      } finally {
        client.disconnect();
      }
    } catch (err) {
      failed(`redis: ${(err as Error).message}`);
    }
  }
  if (worker.metrics) {
    try {
      lines.push(`ok   ${await checkListen(worker.metrics.addr)}`);
    } catch (err) {
      failed((err as Error).message);
    }
  }
  if (worker.web) {
    try {
      // What \`djinn-worker web\` refuses in [web] first, then whether it could listen.
      (await import("../web/server.js")).webSection(worker);
      lines.push(`ok   ${await checkListenAddr(worker.web.addr, "web", "/static/web.css")}`);
    } catch (err) {
      const message = (err as Error).message;
      failed(message.startsWith("web: ") ? message : `web: ${message}`);
    }
  }
  if (worker.cache) {
    try {
      lines.push(`ok   ${await checkCacheStore(worker.cache)}`);
    } catch (err) {
      failed(`cache: ${(err as Error).message}`);
    }
  }
  if (worker.smtp) {
    let mailer: Mailer | undefined;
    try {
      mailer = new Mailer(worker.smtp, createLogger({ log: { level: "error" } }, { fd: 2 }), { retries: 0 });
      lines.push(`ok   ${await mailer.verify()}`);
    } catch (err) {
      failed((err as Error).message);
    } finally {
      mailer?.close();
    }
  }
  return { ok, lines };
}

export async function checkConfiguration(worker: WorkerConfig, drivers: DriverConfig, out: NodeJS.WritableStream): Promise<boolean> {
  const lines = [...summarizeWorker(worker), "", ...summarizeDrivers(drivers), ""];
  let ok = true;
  let served: string[] = [];
  try {
    served = servedDrivers(worker, drivers);
    lines.push(`queues: ${served.map((d) => queueList(worker.queue, d)).join(", ")}`);
  } catch (err) {
    lines.push(`FAIL driver: ${(err as Error).message}`);
    ok = false;
  }
  for (const name of served.length ? served : configuredDrivers(drivers)) {
    const entry = await getDriver(driverTypeOfQueue(name));
    try {
      for (const line of (await entry.check?.(drivers)) ?? [`${name}: configured`]) lines.push(`ok   ${line}`);
    } catch (err) {
      lines.push(`FAIL ${name}: ${(err as Error).message}`);
      ok = false;
    }
  }
  const services = await checkServices(worker);
  lines.push(...services.lines);
  out.write(lines.join("\n") + "\n");
  return ok && services.ok;
}

