// Djinn's build statuses: their order, which end a build, which are failures (mailed), and the
// exit code `run` ends with for each.
import { EnvironmentError } from "../errors/errors.js";

export const BUILD_STATUSES = ["queued", "running", "passed", "passed_with_failures", "failed", "killed", "timed_out"] as const;
/** Djinn's seven statuses; a job that was never run because the build stopped first is `skipped`. */
export type Status = (typeof BUILD_STATUSES)[number] | "skipped";

const rank: Record<Status, number> = { queued: 0, running: 1, skipped: 1, passed: 2, passed_with_failures: 3, failed: 4, killed: 5, timed_out: 6 };

/** The worse of two statuses: what a stage or build is when its jobs ended as `a` and `b`. */
export function worse(a: Status, b: Status): Status {
  return rank[b] > rank[a] ? b : a;
}

/** Every status a build, stage or job row may hold. */
export const STATUSES: readonly Status[] = [...BUILD_STATUSES, "skipped"];

/** A build with one of these is over: never claimed again. */
export const TERMINAL_STATUSES: readonly Status[] = ["passed", "passed_with_failures", "failed", "killed", "timed_out"];

const FAILURES: ReadonlySet<Status> = new Set(["failed", "killed", "timed_out"]);

/** A job that ended so stops its build; a build that ended so is mailed about. */
export function isFailure(status: Status): boolean {
  return FAILURES.has(status);
}

/** A status word read back (from the database) that this worker does not know: the records are not in a shape it can trust. */
export class UnknownStatusError extends EnvironmentError {
  override name = "UnknownStatusError";
}

/** `word` as a Status; anything else is an error naming where it was read (`builds row 7`). */
export function parseStatus(word: unknown, where: string): Status {
  if (typeof word === "string" && (STATUSES as readonly string[]).includes(word)) return word as Status;
  throw new UnknownStatusError(`${where}: unknown status ${JSON.stringify(word)} (this worker knows ${STATUSES.join(", ")})`);
}

/** Exit codes of `run` for how its build ended. */
export const BUILD_EXIT = { passed: 0, failed: 1, killed: 3, timedOut: 4 } as const;

export function exitCodeOf(status: Status): number {
  switch (status) {
    case "passed":
    case "passed_with_failures":
      return BUILD_EXIT.passed;
    case "killed":
      return BUILD_EXIT.killed;
    case "timed_out":
      return BUILD_EXIT.timedOut;
    default:
      return BUILD_EXIT.failed;
  }
}
