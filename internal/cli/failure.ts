// How every command ends when something goes wrong: one line on stderr and an exit code from
// one table. Errors are recognised by name and shape, so this module imports none of the
// libraries that throw them (commands load those lazily).
import os from "node:os";

/** Exit codes of every command (`run` adds its build outcomes to them). */
export const EXIT = {
  passed: 0,
  failed: 1,
  badInput: 2,
  killed: 3,
  timedOut: 4,
  internal: 5,
} as const;

/**
 * input: the operator typed or wrote something wrong (flag, build id, manifest).
 * environment: a file, server or permission the configuration names is missing, unreachable
 * or unusable, or the configuration itself is wrong.
 * internal: anything else; a defect of the worker.
 */
export type FailureKind = "input" | "environment" | "internal";

const INPUT = new Set(["InputError", "ManifestError", "YError"]);
const ENVIRONMENT = new Set(["ConfigError", "CryptoError", "DatabaseError", "QueueError", "StartupError", "StoreError", "DriverError", "CollectError", "MailError", "ReplyError", "MaxRetriesPerRequestError"]);

type Loose = Error & { code?: unknown; errno?: unknown; syscall?: string; path?: string; severity?: string; address?: string; port?: number };

/** True for a PostgreSQL server error (pg-protocol's DatabaseError carries a severity). */
function isPostgresError(e: Loose): boolean {
  return typeof e.severity === "string" && typeof e.code === "string";
}

/** True for a failed system call (open, connect, mkdir ...). */
function isSystemError(e: Loose): boolean {
  return typeof e.code === "string" && /^E[A-Z0-9]+$/.test(e.code) && (typeof e.syscall === "string" || typeof e.errno === "number");
}

export function classify(err: unknown): FailureKind {
  if (!(err instanceof Error)) return "internal";
  const e = err as Loose;
  if (INPUT.has(e.name)) return "input";
  if (ENVIRONMENT.has(e.name) || isPostgresError(e) || isSystemError(e)) return "environment";
  return "internal";
}

const SYSTEM_REASONS: Record<string, string> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EISDIR: "is a directory",
  ENOTDIR: "not a directory",
  EROFS: "read-only file system",
  ENOSPC: "no space left on device",
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ETIMEDOUT: "timed out",
  EHOSTUNREACH: "host unreachable",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host not found",
  EADDRINUSE: "address already in use",
  EEXIST: "a file is in the way",
};

/** The one line an error is reported as (without the program name). */
export function describe(err: unknown): string {
  if (!(err instanceof Error)) return `internal error: ${String(err).split("\n")[0]} (set DJINN_DEBUG=1 for details)`;
  const e = err as Loose;
  const first = (s: string) => s.split("\n").find((l) => l.trim() !== "")?.trim() ?? "";
  if (isPostgresError(e)) return `PostgreSQL: ${first(e.message)}`;
  if (e.name === "ReplyError" || e.name === "MaxRetriesPerRequestError") return `Redis: ${first(e.message)}`;
  if (isSystemError(e) && !ENVIRONMENT.has(e.name)) {
    const reason = SYSTEM_REASONS[e.code as string] ?? first(e.message);
    const what = e.path ?? (e.address ? `${e.address}${e.port ? `:${e.port}` : ""}` : undefined);
    return what ? `${e.syscall ? `${e.syscall} ` : ""}${what}: ${reason}` : first(e.message) || reason;
  }
  if (classify(err) === "internal") return `internal error: ${first(e.message) || e.name} (set DJINN_DEBUG=1 for the stack trace)`;
  return first(e.message);
}

export interface ExitRules {
  /** Exit code of a configuration error: 2 for `run` (its driver file is input), 1 elsewhere. */
  config?: number;
}

export function exitCodeFor(err: unknown, rules: ExitRules = {}): number {
  // The daemon's start-up errors carry their own documented code.
  const own = (err as { exitCode?: unknown } | undefined)?.exitCode;
  if (err instanceof Error && err.name === "StartupError" && typeof own === "number" && Number.isInteger(own)) return own;
  if (err instanceof Error && err.name === "ConfigError" && rules.config !== undefined) return rules.config;
  switch (classify(err)) {
    case "input":
      return EXIT.badInput;
    case "environment":
      return EXIT.failed;
    default:
      return EXIT.internal;
  }
}

export function debugEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.DJINN_DEBUG !== undefined && env.DJINN_DEBUG !== "" && env.DJINN_DEBUG !== "0";
}

/** The text written to stderr for `err`: one line, or the stack as well under DJINN_DEBUG. */
export function failureText(err: unknown, program = "djinn-worker"): string {
  let text = `${program}: ${describe(err)}${os.EOL}`;
  if (debugEnabled() && err instanceof Error && err.stack) text += `${err.stack}${os.EOL}`;
  return text;
}
