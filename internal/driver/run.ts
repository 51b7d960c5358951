// One run of a build, as drivers name what they leave on the host. Build ids are unique only inside
// one database, so two installations on a host share them; a run token is unique across
// installations and runs, and everything a driver creates carries it, so reaping a dead run finds
// what that run left and nothing else.
import { createHash, randomBytes } from "node:crypto";

/** A build and one run of it. */
export interface RunRef {
  buildId: string;
  /** The run token: [0-9a-f]{16}. */
  run: string;
}

const TOKEN_CHARS = 16;

/**
 * The token of the run a worker makes of a build as claim `attempt`: derived from what the claim
 * records (the worker's id, unique per process and host, and the attempt), so the worker that
 * recovers the build computes the dead run's token from the claim it replaced. Unique per build
 * too: a worker runs many builds at once, each attempt 1.
 */
export function runToken(buildId: string, worker: string, attempt: number): string {
  return createHash("sha256").update(`${buildId}\0${worker}\0${attempt}`).digest("hex").slice(0, TOKEN_CHARS);
}

/** A token for a run nothing will ever reap by name (`run`, tests). */
export function freshRunToken(): string {
  return randomBytes(TOKEN_CHARS / 2).toString("hex");
}

/** `<build>-<run>`, safe as a file name, a docker name part and a qemu -name. */
export function runName(ref: RunRef): string {
  return `${safeBuildId(ref.buildId)}-${ref.run}`;
}

function safeBuildId(buildId: string): string {
  return buildId.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 64) || "_";
}
