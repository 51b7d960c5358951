// The runner through its programmatic interface, on the os driver: what a reporter sees.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import { defaultDriverConfig } from "../internal/config/config.js";
import { getDriver, type RunRef } from "../internal/driver/driver.js";
import { cgroupSource, detectCgroupRoot } from "../internal/driver/os/processes.js";
import { freshRunToken, hostStatePath } from "../internal/driver/run.js";
import "../internal/driver/all.js";
import { ArtifactStore } from "../internal/fs/store.js";
import { parseManifest } from "../internal/manifest/manifest.js";
import { planBuild } from "../internal/runner/plan.js";
import type { Status } from "../internal/runner/status.js";
import { outcomeLines } from "../internal/runner/outcome.js";
import { runBuild, type BuildReporter } from "../internal/runner/runner.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-runner-test-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

async function build(yaml: string, opts: { limit?: number; signal?: AbortSignal; timeoutMs?: number; onOutput?: (text: string) => void } = {}) {
  const { manifest } = parseManifest(yaml);
  const events: string[] = [];
  const output = new Map<string, string>();
  const reporter: BuildReporter = {
    jobStarted(job) {
      events.push(`start ${job.name}`);
      const chunks: Buffer[] = [];
      return new Writable({
        write(c: Buffer, _e, done) {
          chunks.push(c);
          opts.onOutput?.(c.toString());
          done();
        },
        final(done) {
          output.set(job.name, Buffer.concat(chunks).toString());
          done();
        },
      });
    },
    jobFinished(job, result) {
      events.push(`${result.status} ${job.name}${result.exitCode !== undefined ? ` (${result.exitCode})` : ""}`);
    },
  };
  const artifacts = new ArtifactStore(fs.mkdtempSync(path.join(dir, "art-")), opts.limit ?? 0);
  const driver = (await getDriver("os")).create({ buildId: "t", manifest: manifest.driver, config: defaultDriverConfig(), log: pino({ level: "silent" }) });
  const status: Status = await runBuild({ plan: planBuild(manifest, "t"), driver, env: {}, masks: [], artifacts, reporter, signal: opts.signal, timeoutMs: opts.timeoutMs });
  return { status, events, output, artifacts: artifacts.root };
}

describe("runner", () => {
  test("reports every job in order, skipping the rest after a failure", async () => {
    const r = await build("driver: {type: os}\nstages: [a, b, c]\nallow_failures: [b]\njobs:\n- {stage: a, commands: [true]}\n- {stage: b, commands: ['exit 3']}\n- {stage: c, commands: ['exit 2']}\n- {stage: c, commands: [true]}\n");
    assert.equal(r.status, "failed");
    assert.deepEqual(r.events, [
      "start create-driver",
      "passed create-driver (0)",
      "start a.1",
      "passed a.1 (0)",
      "start b.1",
      "passed_with_failures b.1 (3)",
      "start c.1",
      "failed c.1 (2)",
      "skipped c.2",
    ]);
  });

  test("the run's directory is gone at the end, with what its jobs left in the workspace and beside their scripts", async () => {
    const r = await build(`driver: {type: os}\nstages: [a]\njobs:\n- {stage: a, commands: ['mkdir -p deep/er && echo x > deep/er/f', 'echo y > "$(dirname "$0")/beside"']}\n- {stage: a, commands: ['test -e ../beside']}\n`);
    assert.equal(r.status, "passed", "the second job sees the file the first left beside its script");
    const workspace = /workspace (\/\S+)$/m.exec(r.output.get("create-driver")!)?.[1];
    assert.ok(workspace?.startsWith(hostStatePath()), r.output.get("create-driver"));
    assert.equal(fs.existsSync(path.dirname(workspace!)), false);
  });

  test("an artifact over the limit is cut to exactly the limit and the job output says so", async () => {
    const r = await build("driver: {type: os}\nstages: [a]\njobs:\n- stage: a\n  commands: ['head -c 300000 /dev/zero > big']\n  artifacts: [big]\n", { limit: 4096 });
    assert.equal(r.status, "passed");
    assert.match(r.output.get("a.1")!, /artifact big => big: cut to 4096 bytes \(the artifact limit\)/);
    assert.equal(fs.statSync(path.join(r.artifacts, "big")).size, 4096);
  });

  test("a kill during a job gives killed for the job and the build", async () => {
    const abort = new AbortController();
    let seen = "";
    const r = await build("driver: {type: os}\nstages: [a]\njobs:\n- {stage: a, commands: ['sleep 60']}\n- {stage: a, commands: [true]}\n", {
      signal: abort.signal,
      // Output may arrive in pieces: look at all of it so far.
      onOutput: (text) => (seen += text).includes("+ sleep 60") && abort.abort(),
    });
    assert.equal(r.status, "killed");
    assert.deepEqual(r.events.slice(-2), ["killed a.1", "skipped a.2"]);
    assert.match(r.output.get("a.1")!, /build killed\n$/);
  });

  test("a job's output sink that fails (the database gone) and the kill that follows end the build: the writer is never left waiting", { timeout: 60_000 }, async () => {
    // As the daemon does: a write of output that keeps failing stops the build.
    const abort = new AbortController();
    const { manifest } = parseManifest("driver: {type: os}\nstages: [a]\njobs:\n- {stage: a, commands: ['yes output-that-fills-every-buffer']}\n");
    const events: string[] = [];
    const reporter: BuildReporter = {
      jobStarted(job) {
        events.push(`start ${job.name}`);
        let writes = 0;
        const sink = new Writable({
          highWaterMark: 1024,
          write(_c, _e, done) {
            if (job.createsDriver || ++writes < 50) return done();
            abort.abort();
            done(new Error("database gone"));
          },
        });
        sink.on("error", () => undefined);
        return sink;
      },
      jobFinished(job, result) {
        events.push(`${result.status} ${job.name}`);
      },
    };
    const driver = (await getDriver("os")).create({ buildId: "t", manifest: manifest.driver, config: defaultDriverConfig(), log: pino({ level: "silent" }) });
    const status = await runBuild({ plan: planBuild(manifest, "t"), driver, env: {}, masks: [], reporter, signal: abort.signal });
    assert.equal(status, "killed");
    assert.deepEqual(events.slice(-1), ["killed a.1"]);
  });
});

/** A process that still runs: neither gone nor a zombie waiting to be reaped. */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts a sleeper outside the workspace in a session of its own as $p, and waits until it is one (setsid has run). */
const ESCAPE = `cd /; setsid sleep 300 >/dev/null 2>&1 & p=$!; while [ "$(cat /proc/$p/comm)" != sleep ]; do sleep 0.01; done`;

/** A command that passes once the process named in `pidFile` has ended (gone, or a zombie), within 5 s. */
function gone(pidFile: string): string {
  return `p=$(cat ${pidFile}); for i in $(seq 100); do if [ ! -e /proc/$p ] || grep -q '^[0-9]* ([^)]*) Z' /proc/$p/stat; then exit 0; fi; sleep 0.05; done; echo "$p still runs"; exit 1`;
}

/** With a cgroup per run (where this host allows one) and without (the environment marker alone). */
const trackings = [
  { name: "cgroup", root: detectCgroupRoot, skip: detectCgroupRoot() ? false : "no cgroup v2 hierarchy on this host" },
  { name: "marker only", root: () => undefined, skip: false },
] as const;

for (const tracking of trackings) {
  describe(`os driver processes (${tracking.name})`, { skip: tracking.skip }, () => {
    const saved = cgroupSource.root;
    before(() => (cgroupSource.root = tracking.root));
    after(() => (cgroupSource.root = saved));

    /** Starts a run whose job leaves a process in a session of its own and waits; its pids. */
    async function startRun(ref: RunRef, tmp: string) {
      const entry = await getDriver("os");
      const log = pino({ level: "silent" });
      const driver = entry.create({ ...ref, manifest: { type: "os" }, config: defaultDriverConfig(), log });
      const sink = new Writable({ write: (_c, _e, done) => done() });
      await driver.create(sink, new AbortController().signal);
      const pids = path.join(tmp, `pids-${ref.run}`);
      const script = `set -e\n${ESCAPE}\necho "$p $$" > ${pids}.tmp\nmv ${pids}.tmp ${pids}\nsleep 300\n`;
      const job = driver.execute({ name: "a/a.1", script, env: {}, output: sink, signal: new AbortController().signal });
      await until("the job started", () => fs.existsSync(pids));
      const [escaped, shell] = fs.readFileSync(pids, "utf8").trim().split(" ").map(Number);
      assert.notEqual(fs.readFileSync(`/proc/${escaped}/stat`, "utf8").split(") ")[1].split(" ")[3], fs.readFileSync(`/proc/${shell}/stat`, "utf8").split(") ")[1].split(" ")[3], "the sleeper left the job's session");
      return { driver, job, escaped, shell };
    }

    test("reap kills exactly the dead run's processes, those that left its session too, and removes its workspace; another run of the same build id is untouched", async () => {
      const tmp = fs.mkdtempSync(path.join(dir, "reap-"));
      const saved = process.env.TMPDIR;
      process.env.TMPDIR = tmp;
      try {
        const dead: RunRef = { buildId: "1", run: freshRunToken() };
        const other: RunRef = { buildId: "1", run: freshRunToken() };
        const a = await startRun(dead, tmp);
        const b = await startRun(other, tmp);
        // The worker of `dead` crashed: its driver object is dropped without destroy.
        await (await getDriver("os")).reap!(dead, defaultDriverConfig(), pino({ level: "silent" }));
        assert.deepEqual(await a.job, { exitCode: 137 }, "the dead run's job was killed");
        await until("the dead run's escaped process ended", () => !running(a.escaped));
        assert.ok(running(b.shell) && running(b.escaped), "the other run's processes are untouched");
        assert.deepEqual(fs.readdirSync(hostStatePath(tmp)).filter((f) => f.startsWith("djinn-build-")).length, 1, "only the other run's workspace is left");
        await b.driver.destroy();
        assert.deepEqual(await b.job, { exitCode: 137 });
        await until("the other run's escaped process ended with its build", () => !running(b.escaped));
        assert.deepEqual(fs.readdirSync(hostStatePath(tmp)).filter((f) => f.startsWith("djinn-build-")), []);
      } finally {
        if (saved === undefined) delete process.env.TMPDIR;
        else process.env.TMPDIR = saved;
      }
    });

    test("a process that left the job's session ends when its job does", async () => {
      const pidFile = path.join(dir, `escaped-${tracking.name.replace(/ /g, "-")}`);
      const { status, output } = await build(`
driver: {type: os}
stages: [s]
jobs:
  - {stage: s, name: a, commands: [${JSON.stringify(ESCAPE)}, "echo $p > ${pidFile}"]}
  - {stage: s, name: b, commands: [${JSON.stringify(gone(pidFile))}]}
`);
      assert.equal(status, "passed", `${output.get("a")}${output.get("b")}`);
      const pid = Number(fs.readFileSync(pidFile, "utf8"));
      assert.ok(pid > 1);
      await until("the escaped sleeper ended with its job", () => !running(pid));
    });
  });
}

describe("job outcome", () => {
  test("the runner words a driver's result: out of memory, a stopped environment, a failure", () => {
    assert.deepEqual(outcomeLines("a.1", { exitCode: 0 }), []);
    assert.deepEqual(outcomeLines("a.1", { exitCode: 2 }), ["job a.1 failed: exit status 2"]);
    assert.deepEqual(outcomeLines("a.1", { exitCode: 137, oomKilled: true, memoryLimitMb: 64 }), ["out of memory (limit 64 MB): the kernel killed a process of this job", "job a.1 failed: exit status 137"]);
    assert.deepEqual(outcomeLines("a.1", { exitCode: 1, oomKilled: true }), ["out of memory: the kernel killed a process of this job (no memory limit is set; the host ran out)", "job a.1 failed: exit status 1"]);
    assert.deepEqual(outcomeLines("a.1", { exitCode: 137, oomKilled: true, memoryLimitMb: 64, environmentExitCode: 137 }), [
      "out of memory (limit 64 MB): the kernel killed a process of this job",
      "the build environment stopped (exit status 137)",
      "job a.1 failed: exit status 137",
    ]);
  });
});
