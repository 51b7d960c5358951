// Installations sharing a host, a Redis that forgets, and processes that try to outlive their
// build: what one installation's worker does never reaches another's builds, and no build is lost.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { Redis } from "ioredis";
import { enqueue } from "../internal/queue/queue.js";
import { claimBuild } from "../internal/store/builds.js";
import { TERMINAL_STATUSES } from "../internal/runner/status.js";
import { osManifest, servicesSkip, daemonSuite, type TestEnv } from "./helpers/daemon-suite.js";
import { until, waitForStatus, insertManifestBuild, isAlive, hostState } from "./helpers/services.js";

const skip = servicesSkip();

/** Starts a sleeper in a session of its own as $p (outside the workspace), once setsid has run. */
const ESCAPE = `cd /; setsid sleep 300 >/dev/null 2>&1 & p=$!; while [ "$(cat /proc/$p/comm)" != sleep ]; do sleep 0.01; done`;

/**
 * A job that leaves a setsid sleeper, records "start <shell pid> <sleeper pid>" in `runs`, waits
 * for `go`, then records "end <shell pid>".
 */
function escapingGatedJob(dir: string): string {
  const runs = path.join(dir, "runs");
  const go = path.join(dir, "go");
  return osManifest([[ESCAPE, `echo "start $$ $p" >> ${runs}`, `while [ ! -e ${go} ]; do sleep 0.05; done`, `echo "end $$" >> ${runs}`]]);
}

const runLines = (dir: string) => (existsSync(path.join(dir, "runs")) ? readFileSync(path.join(dir, "runs"), "utf8").trim().split("\n") : []);
const startPids = (line: string) => line.split(" ").slice(1).map(Number);

describe("worker daemon: isolation and a Redis that forgets", { skip }, () => {
  const suite = daemonSuite();

  it("two installations on one host with the same build id: recovering one after kill -9 never touches the other's build", async () => {
    const a = await suite.env({ lease: "2s" });
    const b = await suite.env({ lease: "2s" });
    // One host: both installations' os-driver workspaces under the same TMPDIR.
    const tmp = path.join(a.dir, "host-tmp");
    const aFirst = await a.daemon({ tmp });
    await b.daemon({ tmp });
    const idA = await a.submit(escapingGatedJob(a.dir));
    const idB = await b.submit(escapingGatedJob(b.dir));
    assert.equal(idA, idB, "both databases gave the same id");
    await until("both jobs started", () => (runLines(a.dir).length === 1 && runLines(b.dir).length === 1) || undefined);
    const [aShell, aEscaped] = startPids(runLines(a.dir)[0]);
    const [bShell, bEscaped] = startPids(runLines(b.dir)[0]);

    // Installation a's worker dies; the job's setsid sleeper lives on (the job's shell soon dies
    // of SIGPIPE, as it traces each command into the dead worker's pipe).
    aFirst.kill("SIGKILL");
    await aFirst.exit;
    assert.ok(isAlive(aEscaped));
    const aSecond = await a.daemon({ tmp });
    // Cleaned up by the sweep of the host at start, or else by the reap before the build runs again.
    await aSecond.waitFor(
      (l) => (l.msg === "reaped what a dead worker's run left on the host" && l.build === String(idA)) || l.msg === "removed a workspace whose worker died",
      "a's dead run cleaned up",
      15_000,
    );
    await until("a's second run started", () => runLines(a.dir).length === 2 || undefined, 15_000);
    await until("a's first run is gone, setsid sleeper included", () => (!isAlive(aShell) && !isAlive(aEscaped)) || undefined, 5000);
    assert.ok(isAlive(bShell), "b's build 1 still runs");
    assert.ok(isAlive(bEscaped), "b's build 1's own processes are untouched");
    assert.equal((await b.build(idB)).status, "running");

    await fs.writeFile(path.join(a.dir, "go"), "");
    await fs.writeFile(path.join(b.dir, "go"), "");
    assert.equal(await waitForStatus(a.pool, idA, TERMINAL_STATUSES, 30_000), "passed");
    assert.equal(await waitForStatus(b.pool, idB, TERMINAL_STATUSES, 30_000), "passed");
    assert.equal((await b.build(idB)).attempt, 1, "b's build ran once, uninterrupted");
    assert.deepEqual(runLines(b.dir), [`start ${bShell} ${bEscaped}`, `end ${bShell}`]);
    assert.doesNotMatch(await b.output(idB), /attempt/);
    assert.equal((await a.build(idA)).attempt, 2);
    await until("every escaped sleeper ended with its build", () => startPids(runLines(a.dir)[1]).concat(bEscaped).every((p) => !isAlive(p)) || undefined, 5000);
    assert.deepEqual(await hostState(tmp), [], "no workspace is left on the host");
  });

  it("a run that died before it could reap the one before it: the next run reaps both", async () => {
    const t = await suite.env({ lease: "2s" });
    const first = await t.daemon();
    const id = await t.submit(escapingGatedJob(t.dir));
    await until("the first run started", () => runLines(t.dir).length === 1 || undefined);
    // The job's shell dies of SIGPIPE once its worker is gone (it traces each command); the setsid
    // sleeper, writing nowhere, lives on until something reaps it.
    const [, escaped] = startPids(runLines(t.dir)[0]);
    first.kill("SIGKILL");
    await first.exit;
    // A second run claims the build once the first's lease is over, and dies at once, before its
    // reap: its token is recorded, it left nothing.
    const second = await until("a second claim", async () => {
      const claim = await claimBuild(t.pool, id, "second-worker-died-at-once", 1, 1 << 20);
      return claim.outcome === "claimed" ? claim : undefined;
    });
    assert.equal(second.earlierRuns.length, 1);
    // A value of another shape in the column names nothing on the host: it is never used.
    await t.pool.query(`UPDATE builds SET runs = array_append(runs, '../..') WHERE id = $1`, [id]);
    assert.ok(isAlive(escaped), "the first run's sleeper is still there");
    const third = await t.daemon();
    await until("the third run started", () => runLines(t.dir).length === 2 || undefined, 20_000);
    await until("the first run's sleeper was reaped", () => !isAlive(escaped) || undefined, 5000);
    await fs.writeFile(path.join(t.dir, "go"), "");
    await third.waitForMsg("build finished", { build: id }, 30_000);
    const build = await t.build(id);
    assert.equal(build.status, "passed");
    assert.equal(build.attempt, 3);
    const runs = (await t.pool.query(`SELECT runs FROM builds WHERE id = $1`, [id])).rows[0].runs as string[];
    assert.equal(runs.length, 4);
    assert.equal(new Set(runs.filter((r) => /^[0-9a-f]{16}$/.test(r))).size, 3, "three runs, three tokens");
    assert.deepEqual(await hostState(t.tmp), [], "no workspace is left");
  });

  it("a process a job started with setsid ends with the job", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const pidFile = path.join(t.dir, "escaped");
    const id = await t.submit(osManifest([[ESCAPE, `echo $p > ${pidFile}`], ["echo next"]]));
    await d.waitForMsg("build finished", { build: id }, 30_000);
    assert.equal((await t.build(id)).status, "passed");
    const pid = Number(readFileSync(pidFile, "utf8"));
    assert.ok(pid > 1);
    await until("the setsid sleeper ended", () => !isAlive(pid) || undefined, 5000);
  });

  it("Redis restarting without its data mid-load: every build still finishes, the healed ones are logged and counted", async () => {
    const t = await suite.env({ lease: "2s", parallelism: 2, metrics: "127.0.0.1:0" });
    const builds = await insertBuilds(t, suite.redis.port, 60, osManifest([["sleep 0.1"]]));
    const workers = [await t.daemon(), await t.daemon()];
    const finished = async () => Number((await t.pool.query(`SELECT count(*) AS n FROM builds WHERE status = ANY($1)`, [TERMINAL_STATUSES])).rows[0].n);
    await until("a few builds finished", async () => ((await finished()) >= 8 ? true : undefined));
    await suite.redis.restart();
    await until("every build finished", async () => ((await finished()) === builds.length ? true : undefined), 90_000);
    const statuses = (await t.pool.query(`SELECT status, count(*)::int AS n FROM builds GROUP BY status`)).rows;
    const notPassed = (await t.pool.query(`SELECT id FROM builds WHERE status <> 'passed' ORDER BY id LIMIT 1`)).rows;
    assert.deepEqual(statuses, [{ status: "passed", n: builds.length }], notPassed.length ? `build ${notPassed[0].id}: ${await t.output(notPassed[0].id)}` : "");

    const healedLines = workers.flatMap((w) => w.lines.filter((l) => /had no payload in Redis/.test(String(l.msg))));
    const healed = healedLines.flatMap((l) => l.builds as number[]);
    assert.ok(healed.length > 0, "builds were lost with Redis and put back");
    assert.equal(new Set(healed).size, healed.length, "each lost build was put back once");
    let counted = 0;
    for (const w of workers) {
      const port = (await w.waitForMsg("metrics listening")).port as number;
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      for (const m of text.matchAll(/^djinn_queue_healed_total\{queue="([^"]+)"\} (\d+)$/gm)) {
        assert.equal(m[1], `${t.queue}_os`);
        counted += Number(m[2]);
      }
    }
    assert.equal(counted, healed.length, "the metric counts every build put back");
  });
});

/** Inserts `n` builds as a producer does (rows, then payloads); their ids. */
async function insertBuilds(t: TestEnv, redisPort: number, n: number, text: string): Promise<number[]> {
  const redis = new Redis(redisPort, "127.0.0.1");
  try {
    const ids: number[] = [];
    for (let i = 0; i < n; i++) {
      const id = await insertManifestBuild(t.pool, text);
      await enqueue(redis, t.queue, "os", id);
      ids.push(id);
    }
    return ids;
  } finally {
    redis.disconnect();
  }
}
