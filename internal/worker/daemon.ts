// The daemon's life: configuration, connections, pidfile, signals, and a clean exit.
import fs from "node:fs";
import { Redis } from "ioredis";
import { loadDriverConfig, loadWorkerConfig, requireSections, servedDrivers, type DriverConfig, type WorkerConfig } from "../config/config.js";
import { Crypto } from "../crypto/crypto.js";
import { createLogger, reopenLog, type Logger } from "../log/log.js";
import { Mailer } from "../mail/mail.js";
import { Metrics } from "../metrics/metrics.js";
import { newWorkerId, probeRedis, queueList, redisOptions, WorkerQueue } from "../queue/queue.js";
import { createPool, probePool, requireCurrentSchema } from "../store/db.js";
import { Worker } from "./worker.js";

/** Start-up cannot go on: one line for the operator, exit 1. */
export class StartupError extends Error {
  override name = "StartupError";
}

/** Refuses to start when the pidfile names a live process; otherwise writes ours. */
export function writePidfile(file: string): void {
  let text: string | undefined;
  try {
    text = fs.readFileSync(file, "utf8").trim();
  } catch {
    // None yet.
  }
  const pid = text ? Number(text) : NaN;
  if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) {
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (err) {
      alive = (err as NodeJS.ErrnoException).code === "EPERM";
    }
    if (alive) throw new StartupError(`pidfile ${file} names process ${pid}, which is running: is another worker using this configuration?`);
  }
  try {
    fs.writeFileSync(file, `${process.pid}\n`);
  } catch (err) {
    throw new StartupError(`cannot write pidfile ${file}: ${(err as Error).message}`);
  }
}

function removePidfile(file: string | undefined): void {
  if (!file) return;
  try {
    if (fs.readFileSync(file, "utf8").trim() === String(process.pid)) fs.unlinkSync(file);
  } catch {
    // Already gone.
  }
}

export interface DaemonHandle {
  worker: Worker;
  /** Resolves with the exit code once the daemon has stopped. */
  done: Promise<number>;
}

export function loadDaemonConfig(configFile: string, driverFile: string): { worker: WorkerConfig; drivers: DriverConfig; queues: string[] } {
  const worker = loadWorkerConfig(configFile);
  const drivers = loadDriverConfig(driverFile);
  requireSections(worker, "crypto", "database", "redis");
  const queues = servedDrivers(worker, drivers).map((d) => queueList(worker.queue, d));
  return { worker, drivers, queues };
}

export async function startDaemon(configFile: string, driverFile: string): Promise<DaemonHandle> {
  const { worker: cfg, drivers, queues } = loadDaemonConfig(configFile, driverFile);
  const log: Logger = createLogger(cfg, { fd: 1 });
  for (const w of [...cfg.warnings, ...drivers.warnings]) log.warn(w);
  const crypto = new Crypto(cfg.crypto!.block);

  const pool = createPool(cfg.database!, Math.max(4, cfg.parallelism * 2 + 2));
  // An idle client losing its server must not crash the daemon; the next query reconnects.
  pool.on("error", (err) => log.warn({ err: err.message }, "PostgreSQL connection lost"));
  try {
    await probePool(pool, cfg.database!.addr);
    await requireCurrentSchema(pool, configFile);
    await probeRedis(cfg.redis!);
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw new StartupError((err as Error).message);
  }
  if (cfg.pidfile) writePidfile(cfg.pidfile);

  const id = newWorkerId();
  const errorLogger = (which: string) => {
    let last = 0;
    return (err: Error) => {
      // ioredis reports every failed reconnect: one line every few seconds is enough.
      if (Date.now() - last > 5000) log.warn({ err: err.message, connection: which }, `Redis at ${cfg.redis!.addr} unavailable; reconnecting`);
      last = Date.now();
    };
  };
  const redis = new Redis(redisOptions(cfg.redis!, { connectionName: `djinn-worker:${id}` }));
  const blocking = new Redis(redisOptions(cfg.redis!, { connectionName: `djinn-worker:${id}:take` }));
  const subscriber = new Redis(redisOptions(cfg.redis!, { connectionName: `djinn-worker:${id}:kill` }));
  redis.on("error", errorLogger("commands"));
  blocking.on("error", errorLogger("take"));
  subscriber.on("error", errorLogger("kill"));
  await Promise.all([redis.connect(), blocking.connect(), subscriber.connect()]);

  let mailer: Mailer | undefined;
  let server: Awaited<ReturnType<Metrics["serve"]>> | undefined;
  const metrics = cfg.metrics ? new Metrics() : undefined;
  let part = "smtp";
  try {
    mailer = cfg.smtp ? new Mailer(cfg.smtp, log) : undefined;
    part = "metrics";
    server = metrics
      ? await metrics.serve(cfg.metrics!.addr, {
          redis: async () => void (await redis.ping()),
          postgres: async () => void (await pool.query("SELECT 1")),
        })
      : undefined;
  } catch (err) {
    for (const c of [redis, blocking, subscriber]) c.disconnect();
    await pool.end().catch(() => undefined);
    removePidfile(cfg.pidfile);
    const msg = (err as Error).message;
    throw new StartupError(msg.startsWith(`${part}`) ? msg : `${part}: ${msg}`);
  }
  if (server) log.info({ addr: cfg.metrics!.addr, port: server.port }, "metrics listening");

  const queue = new WorkerQueue(redis, blocking, cfg.queue, id, queues, cfg.leaseMs);
  const worker = new Worker({ id, config: cfg, drivers, pool, queue, subscriber, crypto, mailer, metrics, log });
  await worker.start();

  let signals = 0;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      log.info({ signal: sig }, `${sig}: finishing running builds (up to shutdown_timeout), then exiting; send it again to stop now`);
      void stop();
    } else {
      log.info({ signal: sig }, `${sig} again: killing and re-queueing running builds now`);
      worker.force();
    }
  };
  const onHup = () => {
    reopenLog(log);
    log.info("SIGHUP: log file reopened");
  };
  // A daemon that runs for months logs a stray rejection rather than dying with the builds it runs.
  process.on("unhandledRejection", (err) => log.error({ err: (err as Error)?.stack ?? String(err) }, "unhandled rejection"));
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  process.on("SIGHUP", onHup);

  const stop = async () => {
    let code = 0;
    try {
      await worker.shutdown(cfg.shutdownTimeoutMs);
    } catch (err) {
      log.error({ err: (err as Error).stack }, "error during shutdown");
      code = 1;
    }
    await server?.close().catch(() => undefined);
    mailer?.close();
    subscriber.disconnect();
    blocking.disconnect();
    await Promise.race([redis.quit().catch(() => undefined), new Promise((r) => setTimeout(r, 2000))]);
    redis.disconnect();
    await pool.end().catch(() => undefined);
    removePidfile(cfg.pidfile);
    process.off("SIGHUP", onHup);
    log.info("worker stopped");
    resolveDone(code);
  };
  return { worker, done };
}
