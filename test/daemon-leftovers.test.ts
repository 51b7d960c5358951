// What a worker killed with -9 leaves on its host (os-driver workspace, job processes) is removed
// by the next worker started there, even when that worker serves another queue and the build
// runs elsewhere; what live workers run is left alone.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { osManifest, servicesSkip, daemonSuite, type TestEnv } from "./helpers/daemon-suite.js";
import { startDaemon, until, waitForStatus, isAlive, hostState } from "./helpers/services.js";
import { hostStatePath } from "../internal/driver/run.js";
import { asNobody, otherUserSkip } from "./helpers/env.js";
import { sharedTmp, sweepHost } from "./helpers/host.js";

const skip = servicesSkip();


/** A job that records its shell's pid, starts a background process, and waits for `go`. */
async function gated(t: TestEnv, name: string): Promise<{ id: number; pid: () => number | undefined; go: () => Promise<void> }> {
  const marks = path.join(t.dir, `${name}.pid`);
  const go = path.join(t.dir, `${name}.go`);
  const id = await t.submit(osManifest([["sleep 300 &", `echo $$ > ${marks}`, `while [ ! -e ${go} ]; do sleep 0.05; done`]]));
  return { id, pid: () => (existsSync(marks) ? Number(readFileSync(marks, "utf8")) || undefined : undefined), go: () => fs.writeFile(go, "") };
}

describe("worker daemon: leftovers of a killed worker", { skip }, () => {
  const suite = daemonSuite();

  it("the next worker on the host removes a dead worker's workspace and kills its processes, and leaves a live one's", async () => {
    const dead = await suite.env();
    const live = await suite.env();
    await fs.mkdir(dead.tmp, { recursive: true });
    // Both installations put their workspaces in one TMPDIR, as on one machine.
    const onHost = (t: TestEnv) => startDaemon(t.cfg, { env: { TMPDIR: dead.tmp } });
    const killed = await onHost(dead);
    const survivor = await onHost(live);
    const x = await gated(dead, "x");
    const y = await gated(live, "y");
    const xPid = await until("x running", x.pid);
    await until("y running", y.pid);
    assert.equal((await hostState(dead.tmp)).length, 2);

    killed.kill("SIGKILL");
    await killed.exit;
    assert.ok(isAlive(xPid), "a killed worker's job outlives it");
    const next = await onHost(live);
    try {
      await next.waitForMsg("removed a workspace whose worker died");
      assert.equal((await hostState(dead.tmp)).length, 1, "the live worker's workspace is kept");
      await until("x's job killed", () => !isAlive(xPid) || undefined, 5000);
      await y.go();
      assert.equal(await waitForStatus(live.pool, y.id, ["passed", "failed"]), "passed");
      await until("y's workspace removed at its end", async () => (await hostState(dead.tmp)).length === 0 || undefined, 5000);
    } finally {
      await next.stop();
      await survivor.stop();
    }
  });

  it("another local user planting an owner record that names a live build's run kills nothing", { skip: otherUserSkip() }, async () => {
    const t = await suite.env();
    // The workers' TMPDIR is a directory every user may write to, as /tmp is.
    const tmp = await sharedTmp();
    try {
      const d = await t.daemon({ tmp });
      const x = await gated(t, "x");
      const xPid = await until("x running", x.pid);
      const run = ((await t.pool.query(`SELECT runs FROM builds WHERE id = $1`, [x.id])).rows[0].runs as string[]).at(-1)!;
      const name = `${x.id}-${run}`;
      // Another user may learn the run's name and token (run cgroups' names are world-readable).
      const record = JSON.stringify({ pid: 999999, started: "x", name, run });
      const planted = asNobody(`mkdir "$1/djinn-build-x" && printf %s "$2" > "$1/djinn-build-x/owner.json"`, tmp, record);
      assert.equal(planted.status, 0, planted.stderr);
      const intoWorkers = asNobody(`mkdir "$1/djinn-build-$2-aaaaaa"`, hostStatePath(tmp), name);
      assert.notEqual(intoWorkers.status, 0, "nobody else may write into the worker's own directory");

      await sweepHost(tmp);
      assert.ok(isAlive(xPid), "the live build's job still runs");
      await x.go();
      assert.equal(await waitForStatus(t.pool, x.id, ["passed", "failed"]), "passed");
      assert.equal((await t.build(x.id)).attempt, 1);
      await d.stop();
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  });

  it("a worker that stalls past its lease and resumes after another finished the build writes nothing, runs nothing and leaves nothing", async () => {
    const t = await suite.env({ lease: "2s" });
    const stalled = await t.daemon();
    const runs = path.join(t.dir, "runs");
    const go = path.join(t.dir, "go");
    const id = await t.submit(osManifest([[`echo "start $(date +%s%3N)" >> ${runs}`, `while [ ! -e ${go} ]; do sleep 0.05; done`]]));
    await until("the job started", () => existsSync(runs) || undefined);
    process.kill(stalled.pid, "SIGSTOP");
    try {
      const other = await t.daemon();
      await other.waitForMsg("build started", { build: id }, 20_000);
      await fs.writeFile(go, "");
      await other.waitForMsg("build finished", { build: id }, 20_000);
    } finally {
      process.kill(stalled.pid, "SIGCONT");
    }
    const done = await t.build(id);
    assert.deepEqual([done.status, done.attempt], ["passed", 2]);
    await stalled.waitForMsg(/^claim lost/, { build: id }, 20_000);
    const next = await t.submit(osManifest([["echo next"]]));
    assert.equal(await waitForStatus(t.pool, next, ["passed", "failed"]), "passed");
    const after = await t.build(id);
    assert.deepEqual([after.status, after.attempt, after.finished_at], ["passed", 2, done.finished_at], "its result stands");
    const starts = readFileSync(runs, "utf8").trim().split("\n").map((l) => Number(l.split(" ")[1]));
    assert.equal(starts.length, 2);
    assert.ok(starts.every((at) => at < done.finished_at!.getTime()), "nothing ran after the build finished");
    await until("no workspace left", async () => (await hostState(t.tmp)).length === 0 || undefined, 5000);
  });
});
