// The worker's logger: JSON lines to a file or stdout, readable lines when writing to a terminal.
import type { Level, Logger } from "pino";
import { ConfigError, lineInFile } from "../config/schema.js";
import type { WorkerConfig } from "../config/config.js";
import { loadPino } from "./pino.cjs";
import { prettyStream } from "./pretty.cjs";

export type { Logger } from "pino";

/** Keys whose values never reach a log line, wherever they sit in a logged object. */
const REDACT = ["password", "secret", "block", "*.password", "*.secret", "*.block", "*.*.password", "*.*.secret", "*.*.block"];

export interface LoggerOptions {
  /** File descriptor when no log file is configured: 1 for the daemon, 2 for commands whose stdout is output. */
  fd?: 1 | 2;
  pretty?: boolean;
}

type FileDestination = ReturnType<ReturnType<typeof loadPino>["destination"]>;

const reopeners = new WeakMap<Logger, () => void>();

/** Reopens the log file (after logrotate moved it: SIGHUP); a no-op when logging to stdout or stderr. */
export function reopenLog(logger: Logger): void {
  reopeners.get(logger)?.();
}

/** Opens the log file; one that cannot be opened is a configuration error naming it and why. */
function openLogFile(file: string, configFile: string | undefined): FileDestination {
  try {
    return loadPino().destination({ dest: file, mkdir: true, sync: true });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === "EEXIST" || e.code === "ENOTDIR"
        ? "a directory on its path is a file"
        : e.code === "EACCES" || e.code === "EPERM"
          ? "permission denied"
          : e.code === "EISDIR"
            ? "it is a directory"
            : e.code === "EROFS"
              ? "read-only file system"
              : (e.code ?? e.message);
    const line = configFile === undefined ? undefined : lineInFile(configFile, "log", "file");
    throw new ConfigError(configFile ?? "worker configuration", "log.file", line, `cannot open ${JSON.stringify(file)}: ${why}`);
  }
}

/**
 * Reopens the log file (logrotate moved it). One that cannot be opened now is logged, and logging
 * goes on to the file opened before: a SIGHUP never ends the daemon.
 */
function reopenOrKeep(dest: FileDestination, logger: Logger, file: string): void {
  // A failed reopen is also emitted as an 'error' event on the next tick: that one is this.
  const expected = () => undefined;
  dest.once("error", expected);
  try {
    dest.reopen();
    dest.removeListener("error", expected);
  } catch (err) {
    logger.error({ file, err: (err as NodeJS.ErrnoException).code ?? (err as Error).message }, "cannot reopen the log file: still writing to the one opened before");
  }
}

/**
 * JSON lines an operator can read and grep: `"level":"warn"`, `"time":"2026-12-04T20:09:31.123Z"`,
 * rather than pino's numbers and epoch milliseconds.
 */
function readableJson(pino: ReturnType<typeof loadPino>) {
  return {
    formatters: { level: (label: string) => ({ level: label }) },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
}

export function createLogger(cfg: Pick<WorkerConfig, "log"> & { file?: string }, opts: LoggerOptions = {}): Logger {
  const pino = loadPino();
  const base = { level: cfg.log.level, redact: { paths: REDACT, censor: "***" } };
  if (cfg.log.file) {
    const dest = openLogFile(cfg.log.file, cfg.file);
    const logger = pino({ ...base, ...readableJson(pino) }, dest);
    reopeners.set(logger, () => reopenOrKeep(dest, logger, cfg.log.file!));
    return logger;
  }
  const fd = opts.fd ?? 1;
  const tty = fd === 1 ? process.stdout.isTTY : process.stderr.isTTY;
  if (opts.pretty ?? tty) {
    return pino(base, prettyStream({ destination: fd, sync: true, colorize: true, translateTime: "SYS:HH:MM:ss", ignore: "pid,hostname" }));
  }
  return pino({ ...base, ...readableJson(pino) }, pino.destination({ dest: fd, sync: true }));
}

/** pino's levels, quietest first: a call below the logger's level writes nothing. */
const LEVELS: Level[] = ["trace", "debug", "info", "warn", "error", "fatal"];

/**
 * A logger made at its first line: `run` writes a warning or two at most, and most runs none, so
 * pino is loaded then rather than at every start. A call below `level` writes nothing, as pino's
 * own would, without making the logger.
 */
export function deferredLogger(level: Level, make: () => Logger): Logger {
  let made: Logger | undefined;
  const quiet = new Set<string | symbol>(LEVELS.slice(0, LEVELS.indexOf(level)));
  const nothing = () => undefined;
  return new Proxy({} as Logger, {
    get(_, key) {
      if (made === undefined && quiet.has(key)) return nothing;
      made ??= make();
      const value: unknown = Reflect.get(made, key, made);
      return typeof value === "function" ? value.bind(made) : value;
    },
    set(_, key, value) {
      made ??= make();
      return Reflect.set(made, key, value, made);
    },
  });
}
