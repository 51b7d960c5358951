// One run of a build, as drivers name what they leave on the host. Build ids are unique only inside
// one database, so two installations on a host share them; a run token is random, recorded with
// the claim (builds.runs), and carried by everything a driver creates, so reaping a dead run finds
// what that run left and nothing else.
import { randomBytes } from "node:crypto";

/** A build and one run of it. */
export interface RunRef {
  buildId: string;
  /** The run token: [0-9a-f]{16}. */
  run: string;
}

const TOKEN_CHARS = 16;

/** A new run's token: random, recorded with the claim (builds.runs) when a worker runs the build. */
export function freshRunToken(): string {
  return randomBytes(TOKEN_CHARS / 2).toString("hex");
}

/** Whether `s` has the shape of a token (read back from the database, it becomes part of names). */
export function isRunToken(s: unknown): s is string {
  return typeof s === "string" && /^[0-9a-f]{16}$/.test(s);
}

/** `<build>-<run>`, safe as a file name, a docker name part and a qemu -name. */
export function runName(ref: RunRef): string {
  return `${safeBuildId(ref.buildId)}-${ref.run}`;
}

function safeBuildId(buildId: string): string {
  return buildId.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 64) || "_";
}
