// The worker's logger: JSON lines to a file or stdout, readable lines when writing to a terminal.
import pino, { type Logger } from "pino";
import type { WorkerConfig } from "../config/config.js";

export type { Logger } from "pino";

/** Keys whose values never reach a log line, wherever they sit in a logged object. */
const REDACT = ["password", "secret", "block", "*.password", "*.secret", "*.block", "*.*.password", "*.*.secret", "*.*.block"];

export interface LoggerOptions {
  /** File descriptor when no log file is configured: 1 for the daemon, 2 for commands whose stdout is output. */
  fd?: 1 | 2;
  pretty?: boolean;
}

const reopeners = new WeakMap<Logger, () => void>();

/** Reopens the log file (after logrotate moved it: SIGHUP); a no-op when logging to stdout or stderr. */
export function reopenLog(logger: Logger): void {
  reopeners.get(logger)?.();
}

export function createLogger(cfg: Pick<WorkerConfig, "log">, opts: LoggerOptions = {}): Logger {
  const base = { level: cfg.log.level, redact: { paths: REDACT, censor: "***" } };
  if (cfg.log.file) {
    const dest = pino.destination({ dest: cfg.log.file, mkdir: true, sync: true });
    const logger = pino(base, dest);
    reopeners.set(logger, () => dest.reopen());
    return logger;
  }
  const fd = opts.fd ?? 1;
  const tty = fd === 1 ? process.stdout.isTTY : process.stderr.isTTY;
  if (opts.pretty ?? tty) {
    return pino({ ...base, transport: { target: "pino-pretty", options: { destination: fd, colorize: true, translateTime: "SYS:HH:MM:ss", ignore: "pid,hostname" } } });
  }
  return pino(base, pino.destination({ dest: fd, sync: true }));
}
