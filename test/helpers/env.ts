// What every suite shares: where things are, and the rule for missing services.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository (tests run from its root: `npm test`). Non-TypeScript fixtures live under it. */
export const repoRoot = process.cwd();

/** The compiled CLI, next to this compiled file, wherever the build went. */
export const cliPath = fileURLToPath(new URL("../../cmd/djinn-worker.js", import.meta.url));

export const fixtures = path.join(repoRoot, "test", "fixtures");

/**
 * Decides whether a suite that needs `service` runs. Missing: says so loudly and skips, unless
 * DJINN_TEST_REQUIRE is "all" or lists the service, in which case the suite fails: CI can never
 * pass by skipping.
 * Use as: `const skip = requireService("redis", findRedis() ? undefined : "redis-server not found"); describe("...", { skip }, ...)`.
 */
export function requireService(service: string, missingReason: string | undefined): string | false {
  if (!missingReason) return false;
  const required = (process.env.DJINN_TEST_REQUIRE ?? "").split(",").map((s) => s.trim());
  const message = `${service} unavailable: ${missingReason}`;
  if (required.includes("all") || required.includes(service)) {
    throw new Error(`${message} (DJINN_TEST_REQUIRE=${process.env.DJINN_TEST_REQUIRE} makes this a failure)`);
  }
  process.stderr.write(`\n*** SKIPPING ${service} tests: ${message} ***\n\n`);
  return message;
}

/** The path of `cmd` on PATH, or undefined. */
export function which(cmd: string): string | undefined {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** Why a test that acts as another local user cannot run here (it needs root and runuser), or false. */
export function otherUserSkip(): string | false {
  return process.getuid?.() === 0 && which("runuser") ? false : "needs root and runuser to act as nobody";
}

/** Runs a shell script as `nobody`, a local user with no rights of its own; `args` are $1, $2, … */
export function asNobody(script: string, ...args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync("runuser", ["-u", "nobody", "--", "/bin/sh", "-c", script, "sh", ...args], { encoding: "utf8", timeout: 30_000 });
  return { status: r.status, stderr: r.stderr };
}
