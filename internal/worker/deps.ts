// What the daemon hands its worker: connections, configuration, and the optional mailer and metrics.
import type { Redis } from "ioredis";
import type pg from "pg";
import type { DriverConfig, WorkerConfig } from "../config/config.js";
import type { Crypto } from "../crypto/crypto.js";
import type { Logger } from "../log/log.js";
import type { Status } from "../runner/status.js";
import type { CacheObserver } from "../runner/cache.js";
import type { WorkerQueue } from "../queue/queue.js";

/** What the worker needs of the mailer (internal/mail). */
export interface FailureMailer {
  /** Logs one line per mail, on `buildLog`. */
  sendBuildFailure(m: { id: string; status: Status; namespace?: string; notify: string[]; outputTail: string[]; trigger?: string }, buildLog: Logger): Promise<boolean>;
}

/** What the worker needs of the metrics (internal/metrics). */
export interface WorkerMetrics {
  buildFinished(status: Status, durationSeconds: number): void;
  queueWait(seconds: number): void;
  setRunning(n: number): void;
  setQueueDepth(queue: string, depth: number): void;
  queueHealed(queue: string, builds: number): void;
  /** Cache hits, misses and bytes of the builds' cache jobs. */
  readonly cache?: CacheObserver;
}

export interface WorkerDeps {
  id: string;
  config: WorkerConfig;
  drivers: DriverConfig;
  pool: pg.Pool;
  queue: WorkerQueue;
  /** A connection in subscriber mode, for kill messages. */
  subscriber: Redis;
  crypto: Crypto;
  mailer?: FailureMailer;
  metrics?: WorkerMetrics;
  log: Logger;
}
