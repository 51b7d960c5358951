// What kind of failure an error is, declared by the class that is thrown: every error an operator
// can cause extends one of these two, and internal/cli/failure.ts turns the kind into one line and
// an exit code. Anything else is a defect of the worker.
import { getSystemErrorName } from "node:util";

/** The operator typed or wrote something wrong (a flag, a build id, a manifest): exit 2. */
export class InputError extends Error {
  override name = "InputError";
}

/**
 * A file, server or permission the configuration names is missing, unreachable or unusable, or
 * the configuration itself is wrong: exit 1, or the code a case documents (`exitCode`).
 */
export class EnvironmentError extends Error {
  override name = "EnvironmentError";
  readonly exitCode: number;
  constructor(message: string, options?: ErrorOptions & { exitCode?: number }) {
    super(message, options);
    this.exitCode = options?.exitCode ?? 1;
  }
}

/** DJINN_DEBUG=1: a failure prints its stack trace too, and a build's command runs its modules unbundled. */
export function debugEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.DJINN_DEBUG !== undefined && env.DJINN_DEBUG !== "" && env.DJINN_DEBUG !== "0";
}

/** What a failed system call's code means, in the words every message of the worker uses. */
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
  ENETUNREACH: "network unreachable",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host not found",
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available on this machine",
  EEXIST: "a file is in the way",
};

/** The reason for a system error code (`EADDRINUSE` → "address already in use"); undefined for a code without one. */
export function systemReason(code: string | undefined): string | undefined {
  return code === undefined ? undefined : SYSTEM_REASONS[code];
}

/**
 * The reason for a failed system call carried by `err`: its code, or its errno where a library
 * puts its own code in front (nodemailer's ESOCKET over ECONNREFUSED).
 */
export function systemReasonOf(err: unknown): string | undefined {
  const e = err as { code?: unknown; errno?: unknown };
  const byCode = typeof e?.code === "string" ? systemReason(e.code) : undefined;
  if (byCode || typeof e?.errno !== "number" || e.errno >= 0) return byCode;
  try {
    return systemReason(getSystemErrorName(e.errno));
  } catch {
    return undefined;
  }
}

/**
 * Why a file named in the configuration, a flag or a manifest could not be read, in one phrase:
 * "no such file" (the path names a file), else the system reason, else the error's own message.
 */
export function fileReadReason(err: unknown): string {
  if ((err as NodeJS.ErrnoException)?.code === "ENOENT") return "no such file";
  return systemReasonOf(err) ?? String((err as Error)?.message ?? err);
}
