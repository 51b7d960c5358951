// The os driver's sweep of the host against records another local user plants: nothing it reads
// outside the worker's own directory, or in a shape this code does not write, kills anything.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmdirSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, test } from "node:test";
import { detectCgroupRoot } from "../internal/driver/os/processes.js";
import { freshRunToken, hostStateRoot } from "../internal/driver/run.js";
import { asNobody, otherUserSkip } from "./helpers/env.js";
import { sharedTmp, sweepHost, withTmp } from "./helpers/host.js";
import { isAlive } from "./helpers/services.js";

/** Why this host cannot hold a cgroup of the test's own beside the run cgroups, or false. */
function cgroupSkip(): string | false {
  const root = detectCgroupRoot();
  if (!root) return "no cgroup v2 hierarchy";
  const probe = path.join(root, `djinn-probe-${process.pid}`);
  try {
    mkdirSync(probe);
    rmdirSync(probe);
    return false;
  } catch (err) {
    return `cannot make a cgroup in ${root}: ${(err as NodeJS.ErrnoException).code}`;
  }
}

describe("os driver: the sweep of the host against planted records", { skip: otherUserSkip() || cgroupSkip() }, () => {
  test("a record naming x/../victim leaves a foreign cgroup beside the run cgroups, and its process, alone", { timeout: 60_000 }, async () => {
    const victim = path.join(detectCgroupRoot()!, `victim-${process.pid}-${Date.now()}`);
    await fs.mkdir(victim);
    const sleeper = spawn("sleep", ["300"], { stdio: "ignore" });
    const exited = new Promise((resolve) => sleeper.once("exit", resolve));
    const tmp = await sharedTmp();
    try {
      await fs.writeFile(path.join(victim, "cgroup.procs"), String(sleeper.pid));
      const run = freshRunToken();
      const record = JSON.stringify({ pid: 999999, started: "x", name: `x/../${path.basename(victim)}`, run });
      // Another user plants where anyone may write, as in /tmp…
      const planted = asNobody(`mkdir "$1/djinn-build-x" && printf %s "$2" > "$1/djinn-build-x/owner.json"`, tmp, record);
      assert.equal(planted.status, 0, planted.stderr);
      // …and this user's own directory holds a record whose name is not its directory's run.
      const own = path.join(await withTmp(tmp, hostStateRoot), `djinn-build-1-${run}-aaaaaa`);
      await fs.mkdir(own);
      await fs.writeFile(path.join(own, "owner.json"), record);

      await sweepHost(tmp);
      assert.ok(existsSync(victim), "the foreign cgroup is still there");
      assert.equal(readFileSync(path.join(victim, "cgroup.procs"), "utf8").trim(), String(sleeper.pid), "its process is still in it");
      assert.ok(isAlive(sleeper.pid!), "its process still runs");
    } finally {
      sleeper.kill("SIGKILL");
      await exited;
      await fs.rmdir(victim).catch(() => undefined);
      await fs.rm(tmp, { recursive: true, force: true });
    }
  });
});
