// The daemon's life: configuration, connections, pidfile, signals, and a clean exit.
import { Redis } from "ioredis";
import type pg from "pg";
import type { DriverConfig, WorkerConfig } from "../config/config.js";
import { loadDaemonConfig } from "./configuration.js";
import { Crypto } from "../crypto/crypto.js";
import { createLogger, reopenLog, type Logger } from "../log/log.js";
import { newWorkerId, probeRedis, redisOptions, WorkerQueue } from "../queue/queue.js";
import { createPool, probePool, requireCurrentSchema } from "../store/db.js";
import { MAX_TIMER_MS, sleep } from "../timers/timers.js";
import { removePidfile, writePidfile, writeState } from "./pidfile.js";
import { StartupError, waitForServers } from "./startup.js";
import { Worker } from "./worker.js";

export { EXIT_TRY_AGAIN, StartupError } from "./startup.js";
export { writePidfile } from "./pidfile.js";

/** How long past shutdown_timeout a stop may take to hand builds back before the daemon exits regardless. */
export const SHUTDOWN_MARGIN_MS = 10_000;
/** After a second signal: how long handing back may take. */
export const FORCED_EXIT_MS = 2_000;

export interface DaemonHandle {
  worker: Worker;
  /** Resolves with the exit code once the daemon has stopped. */
  done: Promise<number>;
}

export async function startDaemon(configFile: string, driverFile: string): Promise<DaemonHandle> {
  const { worker: cfg, drivers, queues } = loadDaemonConfig(configFile, driverFile);
  const log: Logger = createLogger(cfg, { fd: 1 });
  try {
    return await startLogged(cfg, drivers, queues, configFile, log);
  } catch (err) {
    // The caller prints it on stderr; an operator reading only the log file sees it there too.
    if (cfg.log.file) log.error({ err: err instanceof StartupError ? undefined : (err as Error).stack }, `cannot start: ${(err as Error).message}`);
    writeState(cfg.pidfile, `stopped: ${(err as Error).message}`);
    removePidfile(cfg.pidfile);
    throw err;
  }
}

async function startLogged(cfg: WorkerConfig, drivers: DriverConfig, queues: string[], configFile: string, log: Logger): Promise<DaemonHandle> {
  // From the first moment: logrotate may move the log while the daemon still waits for its
  // servers, and a SIGHUP with no handler would end the process.
  process.on("SIGHUP", () => {
    reopenLog(log);
    log.info("SIGHUP: log file reopened");
  });
  for (const w of [...cfg.warnings, ...drivers.warnings]) log.warn(w);
  if (process.getuid?.() === 0) {
    log.warn(`running as root: jobs of the os driver run as root on this host, and every file the worker writes is root's; run the daemon as its own user (djinn), see docs/daemon.md "Running as djinn"`);
  }
  const crypto = new Crypto(cfg.crypto!.block);
  // Written before the servers answer, so an init script sees the daemon started while it waits for them.
  if (cfg.pidfile) writePidfile(cfg.pidfile);
  writeState(cfg.pidfile, "starting");
  const pool = await openDatabase(cfg, configFile, log, (reason) => writeState(cfg.pidfile, `waiting: ${reason}`));
  const id = newWorkerId();
  const conns = await openRedis(cfg, id, log);
  const services = await startServices(cfg, log, conns.redis, pool).catch(async (err) => {
    for (const c of [conns.redis, conns.blocking, conns.subscriber]) c.disconnect();
    await pool.end().catch(() => undefined);
    throw err;
  });
  const queue = new WorkerQueue(conns.redis, conns.blocking, cfg.queue, id, queues, cfg.leaseMs);
  const worker = new Worker({ id, config: cfg, drivers, pool, queue, subscriber: conns.subscriber, crypto, mailer: services.mailer, metrics: services.metrics, log });
  await worker.start();
  writeState(cfg.pidfile, "serving");
  const done = stopOnSignals(cfg, log, worker, async () => {
    await services.server?.close().catch(() => undefined);
    services.mailer?.close();
    conns.subscriber.disconnect();
    conns.blocking.disconnect();
    await Promise.race([conns.redis.quit().catch(() => undefined), sleep(2000)]);
    conns.redis.disconnect();
    await pool.end().catch(() => undefined);
  });
  return { worker, done };
}

/** A pool on a PostgreSQL that answers, with the current schema; Redis answering too. */
async function openDatabase(cfg: WorkerConfig, configFile: string, log: Logger, onWait: (reason: string) => void): Promise<pg.Pool> {
  const pool = createPool(cfg.database!, Math.max(4, cfg.parallelism * 2 + 2));
  // An idle client losing its server must not crash the daemon; the next query reconnects.
  pool.on("error", (err) => log.warn({ err: err.message }, "PostgreSQL connection lost"));
  try {
    await waitForServers(async () => {
      await probePool(pool, cfg.database!.addr);
      await requireCurrentSchema(pool, configFile);
      await probeRedis(cfg.redis!);
    }, log, { onWait });
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  return pool;
}

/** Commands, the blocking take and kill messages each have a connection of their own. */
async function openRedis(cfg: WorkerConfig, id: string, log: Logger): Promise<{ redis: Redis; blocking: Redis; subscriber: Redis }> {
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
  return { redis, blocking, subscriber };
}

/** The mailer and the metrics server, when configured; a failure names which. */
async function startServices(cfg: WorkerConfig, log: Logger, redis: Redis, pool: pg.Pool) {
  // Their libraries are loaded only when configured: an idle worker without them stays small.
  const metrics = cfg.metrics ? new (await import("../metrics/metrics.js")).Metrics() : undefined;
  let part = "smtp";
  try {
    const mailer = cfg.smtp ? new (await import("../mail/mail.js")).Mailer(cfg.smtp, log) : undefined;
    part = "metrics";
    const server = metrics
      ? await metrics.serve(cfg.metrics!.addr, {
          redis: async () => void (await redis.ping()),
          postgres: async () => void (await pool.query("SELECT 1")),
        })
      : undefined;
    if (server) log.info({ addr: cfg.metrics!.addr, port: server.port }, "metrics listening");
    return { mailer, metrics, server };
  } catch (err) {
    const msg = (err as Error).message;
    throw new StartupError(msg.startsWith(`${part}`) ? msg : `${part}: ${msg}`);
  }
}

/**
 * SIGTERM/SIGINT: finish running builds (up to shutdown_timeout), then `close` and exit; a second
 * signal stops them now (SIGHUP is startLogged's). Resolves with the exit code.
 */
function stopOnSignals(cfg: WorkerConfig, log: Logger, worker: Worker, close: () => Promise<void>): Promise<number> {
  let signals = 0;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  // Whatever the servers do, a stop ends: past the deadline, jobs are killed and the daemon exits;
  // what it could not hand back is recovered by other workers once its lease runs out.
  let deadline: NodeJS.Timeout | undefined;
  const exitBy = (ms: number, why: string) => {
    clearTimeout(deadline);
    // shutdown_timeout is at most what a timer holds; with the margin it may be past it.
    deadline = setTimeout(() => {
      worker.force();
      log.error({ builds: worker.running }, `${why}: exiting now; builds not handed back are recovered once their lease runs out`);
      removePidfile(cfg.pidfile);
      void Promise.race([worker.abandon(), sleep(1000)]).then(() => resolveDone(1));
    }, Math.min(ms, MAX_TIMER_MS));
  };
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      writeState(cfg.pidfile, "stopping");
      log.info({ signal: sig }, `${sig}: finishing running builds (up to shutdown_timeout), then exiting; send it again to stop now`);
      exitBy(cfg.shutdownTimeoutMs + SHUTDOWN_MARGIN_MS, `shutdown not done ${(cfg.shutdownTimeoutMs + SHUTDOWN_MARGIN_MS) / 1000}s after ${sig}`);
      void stop();
    } else {
      log.info({ signal: sig }, `${sig} again: killing and re-queueing running builds now`);
      worker.force();
      exitBy(FORCED_EXIT_MS, `running builds not handed back ${FORCED_EXIT_MS / 1000}s after the second signal`);
    }
  };
  // A daemon that runs for months logs a stray rejection rather than dying with the builds it runs.
  process.on("unhandledRejection", (err) => log.error({ err: (err as Error)?.stack ?? String(err) }, "unhandled rejection"));
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  const stop = async () => {
    let code = 0;
    try {
      await worker.shutdown(cfg.shutdownTimeoutMs);
    } catch (err) {
      log.error({ err: (err as Error).stack }, "error during shutdown");
      code = 1;
    }
    await close();
    removePidfile(cfg.pidfile);
    clearTimeout(deadline);
    log.info("worker stopped");
    resolveDone(code);
  };
  return done;
}
