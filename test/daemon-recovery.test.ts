// What happens to builds when a worker stops, dies or loses Redis: none is lost, none runs twice at once.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { Redis } from "ioredis";
import { osManifest, servicesSkip, daemonSuite } from "./helpers/daemon-suite.js";
import { until, waitForStatus, hostState } from "./helpers/services.js";

const skip = servicesSkip();

/** A job that records each run's start and end in `runs` and waits for `go` in between. */
function gatedJob(dir: string): string {
  const runs = path.join(dir, "runs");
  const go = path.join(dir, "go");
  return osManifest([[`echo "start $$" >> ${runs}`, `while [ ! -e ${go} ]; do sleep 0.05; done`, `echo "end $$" >> ${runs}`]]);
}

const runLines = (dir: string) => (existsSync(path.join(dir, "runs")) ? readFileSync(path.join(dir, "runs"), "utf8").trim().split("\n") : []);

describe("worker daemon: shutdown, crashes and outages", { skip }, () => {
  const suite = daemonSuite();

  it("SIGTERM lets a running build finish within shutdown_timeout, removes the pidfile and exits 0", async () => {
    const t = await suite.env({ shutdownTimeout: "30s", pidfile: "" });
    const pidfile = path.join(t.dir, "worker.pid");
    await fs.appendFile(t.cfg.worker, "");
    const text = await fs.readFile(t.cfg.worker, "utf8");
    await fs.writeFile(t.cfg.worker, `pidfile = "${pidfile}"\n${text}`);
    const d = await t.daemon();
    assert.equal(readFileSync(pidfile, "utf8").trim(), String(d.pid));
    const id = await t.submit(gatedJob(t.dir));
    await until("the job started", () => runLines(t.dir).length === 1 || undefined);
    d.kill("SIGTERM");
    await d.waitForMsg("shutting down: no new builds");
    // Builds submitted now wait for another worker.
    const later = await t.submit(osManifest([["echo later"]]));
    await fs.writeFile(path.join(t.dir, "go"), "");
    const exit = await d.exit;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.equal((await t.build(id)).status, "passed");
    assert.equal((await t.build(later)).status, "queued");
    assert.equal(existsSync(pidfile), false);
  });

  it("refuses to start when the pidfile names a live process", async () => {
    const t = await suite.env();
    const pidfile = path.join(t.dir, "worker.pid");
    await fs.writeFile(pidfile, `${process.pid}\n`);
    const text = await fs.readFile(t.cfg.worker, "utf8");
    await fs.writeFile(t.cfg.worker, `pidfile = "${pidfile}"\n${text}`);
    const d = await t.daemon({ ready: false });
    const exit = await d.exit;
    assert.equal(exit.code, 1);
    assert.match(d.stderr, new RegExp(`pidfile .*worker.pid names process ${process.pid}, which is running`));
    assert.equal(readFileSync(pidfile, "utf8").trim(), String(process.pid));
  });

  it("a build still running when the grace ends is killed, re-queued and run again by the next worker", async () => {
    const t = await suite.env({ shutdownTimeout: "1s" });
    const d = await t.daemon();
    const id = await t.submit(gatedJob(t.dir));
    await until("the job started", () => runLines(t.dir).length === 1 || undefined);
    d.kill("SIGTERM");
    assert.deepEqual(await d.exit, { code: 0, signal: null });
    assert.ok(d.lines.some((l) => l.msg === "build put back on its queue" && l.build === id));
    assert.equal((await t.build(id)).status, "queued");
    // Reset as for recovery: nothing of the interrupted run remains.
    assert.deepEqual((await t.jobs(id)).map((j) => j.status), ["queued", "queued"]);
    assert.equal(await t.output(id), "");
    const redis = new Redis(suite.redis.port, "127.0.0.1");
    try {
      assert.equal(await redis.llen(`${t.queue}_os`), 1);
    } finally {
      redis.disconnect();
    }
    const d2 = await t.daemon();
    await until("the second run started", () => runLines(t.dir).length === 2 || undefined);
    await fs.writeFile(path.join(t.dir, "go"), "");
    await d2.waitForMsg("build finished", { build: id });
    const b = await t.build(id);
    assert.equal(b.status, "passed");
    assert.equal(b.attempt, 2);
    const lines = runLines(t.dir);
    assert.equal(lines.length, 3, lines.join("\n"));
    assert.ok(lines[0].startsWith("start") && lines[1].startsWith("start") && lines[2] === `end ${lines[1].slice(6)}`);
    const out = await t.output(id);
    assert.match(out, /^--- attempt 2: an earlier run \(worker [^)]+\) did not finish; its output was discarded and the build runs again from the start ---\n/);
    assert.equal(out.match(/^\+ echo .*start/gm)?.length, 1, `the first run's output was reset:\n${out}`);
  });

  it("a second signal ends the grace period at once", async () => {
    const t = await suite.env({ shutdownTimeout: "5m" });
    const d = await t.daemon();
    const id = await t.submit(gatedJob(t.dir));
    await until("the job started", () => runLines(t.dir).length === 1 || undefined);
    d.kill("SIGTERM");
    await d.waitForMsg("shutting down: no new builds");
    d.kill("SIGINT");
    assert.deepEqual(await d.exit, { code: 0, signal: null });
    assert.equal((await t.build(id)).status, "queued");
  });

  it("after kill -9 of a worker mid-build, another worker recovers the build within the lease and runs it again from the start", async () => {
    const t = await suite.env({ lease: "2s" });
    const a = await t.daemon();
    const id = await t.submit(gatedJob(t.dir));
    await until("the job started on worker a", () => runLines(t.dir).length === 1 || undefined);
    // Power loss: the worker and everything it started die at once.
    a.kill("SIGKILL");
    await a.exit;
    process.kill(-Number(runLines(t.dir)[0].slice(6)), "SIGKILL");
    const died = Date.now();
    const b = await t.daemon();
    const bStarted = Date.now();
    await b.waitForMsg("recovered the builds of a worker whose lease ran out", {}, 15_000);
    await until("the second run started on worker b", () => runLines(t.dir).length === 2 || undefined, 15_000);
    // The lease, a heartbeat of the new worker, and the database lease running out: well under 10 s.
    assert.ok(Date.now() - bStarted < 10_000, `run again ${Date.now() - bStarted} ms after the new worker started (${Date.now() - died} ms after the crash), with a 2s lease`);
    await fs.writeFile(path.join(t.dir, "go"), "");
    await b.waitForMsg("build finished", { build: id });
    const build = await t.build(id);
    assert.equal(build.status, "passed");
    assert.equal(build.attempt, 2);
    assert.equal(build.worker, b.lines.find((l) => l.msg === "worker started")!.worker);
    const lines = runLines(t.dir);
    assert.equal(lines.length, 3, lines.join("\n"));
    assert.equal(lines[2], `end ${lines[1].slice(6)}`, "only the second run finished");
    const aWorker = a.lines.find((l) => l.msg === "worker started")!.worker as string;
    assert.match(await t.output(id), new RegExp(`^--- attempt 2: an earlier run \\(worker ${aWorker}\\) did not finish`));
    const jobs = await t.jobs(id);
    assert.deepEqual(jobs.map((j) => j.status), ["passed", "passed"]);
    assert.deepEqual(await hostState(t.tmp), [], "the dead worker's workspace was reaped, the new run's removed");
  });

  it("a build survives Redis restarting mid-run, and the worker goes on taking builds", async () => {
    const t = await suite.env({ lease: "2s" });
    const d = await t.daemon();
    const id = await t.submit(gatedJob(t.dir));
    await until("the job started", () => runLines(t.dir).length === 1 || undefined);
    await suite.redis.restart();
    await fs.writeFile(path.join(t.dir, "go"), "");
    await d.waitForMsg("build finished", { build: id }, 30_000);
    assert.equal((await t.build(id)).status, "passed");
    const next = await t.submit(osManifest([["echo after the restart"]]));
    await d.waitForMsg("build finished", { build: next }, 30_000);
    assert.equal((await t.build(next)).status, "passed");
    assert.equal(runLines(t.dir).length, 2);
  });

  it("SIGHUP reopens the log file after it was moved away", async () => {
    const t = await suite.env({ logFile: true });
    const log = t.cfg.logFile!;
    const d = await t.daemon({ ready: false });
    await until("the worker started", async () => (existsSync(log) && (await fs.readFile(log, "utf8")).includes("worker started")) || undefined);
    await fs.rename(log, `${log}.1`);
    d.kill("SIGHUP");
    await until("a fresh log file", async () => (existsSync(log) && (await fs.readFile(log, "utf8")).includes("log file reopened")) || undefined);
    const id = await t.submit(osManifest([["echo hi"]]));
    await waitForStatus(t.pool, id, ["passed"]);
    await until("the build in the new log", async () => (await fs.readFile(log, "utf8")).includes('"msg":"build finished"') || undefined);
    assert.ok(!(await fs.readFile(`${log}.1`, "utf8")).includes("build finished"));
  });
});
