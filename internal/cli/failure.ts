// How every command ends when something goes wrong: one line on stderr and an exit code from
// one table. Errors are told apart by class: the project's own by the kind they extend
// (internal/errors), Redis and PostgreSQL server errors by their client libraries' small error
// modules (not the clients, which commands load only when they need them). Node.js exports no
// class for a failed system call: that one is recognised by its documented fields.
import os from "node:os";
import { ConfigError } from "../config/schema.js";
import { debugEnabled, EnvironmentError, InputError, systemReason } from "../errors/errors.js";
import { BUILD_EXIT } from "../runner/status.js";
import { serverOf } from "./server-errors.cjs";

/** Exit codes of every command: `run`'s build outcomes (0 passed, 1 failed, 3 killed, 4 timed out), and these. */
export const EXIT = { ...BUILD_EXIT, badInput: 2, internal: 5 } as const;

/**
 * input: the operator typed or wrote something wrong (flag, build id, manifest).
 * environment: a file, server or permission the configuration names is missing, unreachable
 * or unusable, or the configuration itself is wrong.
 * internal: anything else; a defect of the worker.
 */
export type FailureKind = "input" | "environment" | "internal";

type SystemError = Error & { code: string; errno?: number; syscall?: string; path?: string; address?: string; port?: number };

/** True for a failed system call (open, connect, mkdir ...). */
function isSystemError(e: Error): e is SystemError {
  const s = e as Partial<SystemError>;
  return typeof s.code === "string" && /^E[A-Z0-9]+$/.test(s.code) && (typeof s.syscall === "string" || typeof s.errno === "number");
}

export function classify(err: unknown): FailureKind {
  if (err instanceof InputError) return "input";
  if (err instanceof EnvironmentError) return "environment";
  if (err instanceof Error && (isSystemError(err) || serverOf(err))) return "environment";
  return "internal";
}

/** The one line an error is reported as (without the program name). */
export function describe(err: unknown): string {
  if (!(err instanceof Error)) return `internal error: ${String(err).split("\n")[0]} (set DJINN_DEBUG=1 for details)`;
  const first = (s: string) => s.split("\n").find((l) => l.trim() !== "")?.trim() ?? "";
  const server = serverOf(err);
  if (server) return `${server}: ${first(err.message)}`;
  if (isSystemError(err) && !(err instanceof EnvironmentError)) {
    const reason = systemReason(err.code) ?? first(err.message);
    const what = err.path ?? (err.address ? `${err.address}${err.port ? `:${err.port}` : ""}` : undefined);
    return what ? `${err.syscall ? `${err.syscall} ` : ""}${what}: ${reason}` : first(err.message) || reason;
  }
  if (classify(err) === "internal") return `internal error: ${first(err.message) || err.name} (set DJINN_DEBUG=1 for the stack trace)`;
  return first(err.message);
}

export interface ExitRules {
  /** Exit code of a configuration error: 2 for `run` (its driver file is input), 1 elsewhere. */
  config?: number;
}

export function exitCodeFor(err: unknown, rules: ExitRules = {}): number {
  if (err instanceof ConfigError && rules.config !== undefined) return rules.config;
  // Some environment errors document their own code (the daemon's start-up: try again later).
  if (err instanceof EnvironmentError) return err.exitCode;
  switch (classify(err)) {
    case "input":
      return EXIT.badInput;
    case "environment":
      return EXIT.failed;
    default:
      return EXIT.internal;
  }
}

/** The text written to stderr for `err`: one line, or the stack as well under DJINN_DEBUG. */
export function failureText(err: unknown, program = "djinn-worker"): string {
  let text = `${program}: ${describe(err)}${os.EOL}`;
  if (debugEnabled() && err instanceof Error && err.stack) text += `${err.stack}${os.EOL}`;
  return text;
}

/** Ends the process for `err`: one line (the stack too under DJINN_DEBUG=1) and its exit code. */
export function die(err: unknown, rules: ExitRules = {}): never {
  process.stderr.write(failureText(err));
  process.exit(exitCodeFor(err, rules));
}

/** Runs a command to its exit code; whatever it throws ends as one line and its exit code. */
export async function guard(command: () => Promise<number | void>, rules: ExitRules = {}): Promise<void> {
  try {
    process.exitCode = (await command()) ?? 0;
  } catch (err) {
    die(err, rules);
  }
}
