// The daemon end to end, against real redis-server and PostgreSQL, with the os driver.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { Redis } from "ioredis";
import { enqueue } from "../internal/queue/queue.js";
import { osManifest, servicesSkip, daemonSuite } from "./helpers/daemon-suite.js";
import { until, waitForStatus, insertManifestBuild, hostState } from "./helpers/services.js";

const skip = servicesSkip();

describe("worker daemon", { skip }, () => {
  const suite = daemonSuite();

  it("runs a submitted build and records its rows and output as it goes", async () => {
    const t = await suite.env();
    const go = path.join(t.dir, "go");
    const d = await t.daemon();
    const id = await t.submit(osManifest([["echo first line", `while [ ! -e ${go} ]; do sleep 0.05; done`, "printf 'nul:\\000:end\\n'", "printf 'bad:\\377\\376:end\\n'", "printf 'caf\\303\\251\\n'"], ["exit 3"]], { allowFailures: true }), ["--env", "GREETING=hi"]);
    assert.ok(id > 0);
    // Output reaches the database while the job is still running.
    await until("the first line stored while the job runs", async () => (await t.output(id)).includes("first line") || undefined, 10_000);
    const running = await t.jobs(id);
    assert.equal(running[0].name, "create-driver");
    assert.equal(running[0].status, "passed");
    assert.equal(running[1].status, "running");
    assert.ok(running[1].started_at && !running[1].finished_at);
    assert.equal((await t.build(id)).status, "running");
    await fs.writeFile(go, "");
    await d.waitForMsg("build finished", { build: id });
    const b = await t.build(id);
    assert.equal(b.status, "passed_with_failures");
    assert.equal(b.attempt, 1);
    assert.ok(b.started_at && b.finished_at);
    const jobs = await t.jobs(id);
    assert.deepEqual(jobs.map((j) => [j.name, j.status, j.exit_code]), [["create-driver", "passed", 0], ["job1", "passed", 0], ["job2", "passed_with_failures", 3]]);
    const out = await t.output(id);
    assert.match(out, /nul:\uFFFD:end/);
    assert.match(out, /bad:\uFFFD\uFFFD:end/);
    assert.match(out, /café/);
    const status = await t.cli(["status", String(id)]);
    assert.equal(status.code, 0);
    assert.equal(status.stdout.split("\n")[0], `build ${id} passed_with_failures`);
    assert.match(status.stdout, /test \/ job2\s+passed_with_failures\s+exit 3/);
    const logs = await t.cli(["logs", String(id)]);
    assert.equal(logs.code, 0);
    assert.match(logs.stdout, /==> test \/ job1\n\+ echo first line\nfirst line\n/);
    assert.match(logs.stdout, /==> test \/ job2\n\+ exit 3\n/);
  });

  it("logs -f follows live output until the build ends", async () => {
    const t = await suite.env();
    const go = path.join(t.dir, "go");
    await t.daemon();
    const id = await t.submit(osManifest([["echo before", `while [ ! -e ${go} ]; do sleep 0.05; done`, "echo after"]]));
    const { spawn } = await import("node:child_process");
    const { cliPath } = await import("./helpers/env.js");
    const follow = spawn(process.execPath, [cliPath, "logs", String(id), "-f", "-config", t.cfg.worker], { stdio: ["ignore", "pipe", "pipe"] });
    let seen = "";
    const sawBefore = new Promise<void>((resolve) => follow.stdout.on("data", (c) => (seen += c) && seen.includes("before\n") && resolve()));
    const exit = new Promise<number | null>((r) => follow.once("exit", r));
    await sawBefore;
    assert.ok(!seen.includes("after"));
    await fs.writeFile(go, "");
    assert.equal(await exit, 0);
    assert.match(seen, /before\n[\s\S]*\+ echo after\nafter\n\nDone\. Build passed\n$/);
  });

  it("caps a job's stored output at output_limit with a note", async () => {
    const t = await suite.env({ outputLimit: 2000 });
    const d = await t.daemon();
    const id = await t.submit(osManifest([["head -c 300000 /dev/zero | tr '\\0' a", "echo", "echo tail-marker"]]));
    await d.waitForMsg("build finished", { build: id });
    assert.equal((await t.build(id)).status, "passed");
    const r = await t.pool.query(`SELECT j.name, sum(octet_length(o.data))::int AS bytes, string_agg(o.data, '' ORDER BY o.id) AS text FROM job_output o JOIN jobs j ON j.id = o.job_id WHERE o.build_id = $1 GROUP BY j.name`, [id]);
    const job = r.rows.find((row) => row.name === "job1");
    assert.ok(job.bytes < 2000 + 200, `stored ${job.bytes} bytes`);
    assert.match(job.text, /output truncated: this job printed more than output_limit \(2000 bytes\)/);
    assert.ok(!job.text.includes("tail-marker"));
  });

  for (const parallelism of [1, 2]) {
    it(`runs at most parallelism = ${parallelism} builds at once`, async () => {
      const t = await suite.env({ parallelism });
      const go = path.join(t.dir, "go");
      const d = await t.daemon();
      const wait = (name: string) => osManifest([[`touch ${path.join(t.dir, name)}`, `while [ ! -e ${go} ]; do sleep 0.05; done`]]);
      const a = await t.submit(wait("a"));
      const b = await t.submit(wait("b"));
      await until("build a started", () => existsSync(path.join(t.dir, "a")) || undefined);
      const redis = new Redis(suite.redis.port, "127.0.0.1");
      try {
        if (parallelism === 2) {
          await until("build b started alongside a", () => existsSync(path.join(t.dir, "b")) || undefined);
          assert.equal((await t.build(b)).status, "running");
        } else {
          // With the only slot taken, the worker does not even take b off the queue.
          await d.waitForMsg("build started", { build: a });
          await new Promise((r) => setTimeout(r, 1500));
          assert.equal(existsSync(path.join(t.dir, "b")), false);
          assert.equal((await t.build(b)).status, "queued");
          assert.equal(await redis.llen(`${t.queue}_os`), 1);
        }
      } finally {
        redis.disconnect();
      }
      await fs.writeFile(go, "");
      await waitForStatus(t.pool, a, ["passed"]);
      await waitForStatus(t.pool, b, ["passed"]);
    });
  }

  it("two workers on one queue run each of 30 builds exactly once", async () => {
    const t = await suite.env({ parallelism: 3 });
    const shared = path.join(t.dir, "ran");
    await Promise.all([t.daemon(), t.daemon()]);
    const redis = new Redis(suite.redis.port, "127.0.0.1");
    const ids: number[] = [];
    try {
      for (let i = 0; i < 30; i++) {
        const text = osManifest([[`echo "$DJINN_BUILD" >> ${shared}`]]);
        const id = await insertManifestBuild(t.pool, text);
        await enqueue(redis, t.queue, "os", id);
        ids.push(id);
      }
    } finally {
      redis.disconnect();
    }
    for (const id of ids) await waitForStatus(t.pool, id, ["passed"]);
    const ran = (await fs.readFile(shared, "utf8")).trim().split("\n").map(Number).sort((x, y) => x - y);
    assert.deepEqual(ran, ids);
    const workers = await t.pool.query(`SELECT count(DISTINCT worker)::int AS n FROM builds`);
    assert.equal(workers.rows[0].n, 2, "both workers took builds");
  });

  it("kill with the build's secret kills it; a wrong secret is ignored", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const started = path.join(t.dir, "started");
    const id = await t.submit(osManifest([[`touch ${started}`, "sleep 60"]]));
    await until("the job started", () => existsSync(started) || undefined);
    const redis = new Redis(suite.redis.port, "127.0.0.1");
    try {
      await redis.publish(`kill-${id}`, "not-the-secret");
    } finally {
      redis.disconnect();
    }
    await d.waitForMsg("kill request with the wrong secret ignored", { build: id });
    assert.equal((await t.build(id)).status, "running");
    const k = await t.cli(["kill", String(id)]);
    assert.equal(k.code, 0, k.stderr);
    assert.equal(await waitForStatus(t.pool, id, ["killed", "passed", "failed"], 20_000), "killed");
    const jobs = await t.jobs(id);
    assert.equal(jobs[1].status, "killed");
    assert.match(await t.output(id), /build killed/);
    const again = await t.cli(["kill", String(id)]);
    assert.match(again.stdout, /already finished: killed/);
  });

  it("a build past worker.toml timeout is timed_out and its driver released", async () => {
    const t = await suite.env({ timeout: "2s" });
    const d = await t.daemon();
    const workspaces = async () => (await hostState(t.tmp)).filter((f) => f.startsWith("djinn-build-"));
    const id = await t.submit(osManifest([["echo $$ > pid", "sleep 60"], ["echo never"]]));
    await d.waitForMsg("build finished", { build: id }, 20_000);
    assert.equal((await t.build(id)).status, "timed_out");
    const jobs = await t.jobs(id);
    assert.deepEqual(jobs.map((j) => j.status), ["passed", "timed_out", "skipped"]);
    assert.match(await t.output(id), /build timed out after 2s/);
    assert.deepEqual(await workspaces(), [], "the os driver's workspace is removed");
  });

  it("moves malformed payloads and unknown ids to the dead list and keeps working", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const redis = new Redis(suite.redis.port, "127.0.0.1");
    try {
      await redis.lpush(`${t.queue}_os`, "{not json", JSON.stringify({ build: 1 }), JSON.stringify({ id: 987654 }));
      const dead = await until("three dead entries", async () => {
        const items = await redis.lrange(`${t.queue}_dead`, 0, -1);
        return items.length === 3 ? items.map((i) => JSON.parse(i)) : undefined;
      });
      assert.ok(dead.some((e) => e.payload === "{not json" && /not valid JSON/.test(e.reason)));
      assert.ok(dead.some((e) => e.payload === '{"build":1}' && /no positive integer "id"/.test(e.reason)));
      assert.ok(dead.some((e) => e.payload === '{"id":987654}' && /no build with id 987654/.test(e.reason)));
      const id = await t.submit(osManifest([["echo fine"]]));
      await d.waitForMsg("build finished", { build: id });
      assert.equal((await t.build(id)).status, "passed");
      // Acknowledged once recorded: the worker's processing list empties.
      const processing = `${t.queue}_os:processing:${d.lines.find((l) => l.msg === "worker started")!.worker}`;
      await until("the build acknowledged", async () => ((await redis.llen(processing)) === 0 ? true : undefined), 5000);
    } finally {
      redis.disconnect();
    }
  });

  it('driver = "*" serves the list of every configured driver', async () => {
    const t = await suite.env({ driver: "*", driverToml: "[ssh]\n[os]\n" });
    const d = await t.daemon();
    assert.deepEqual(d.lines.find((l) => l.msg === "worker started")!.queues, [`${t.queue}_ssh`, `${t.queue}_os`]);
    const redis = new Redis(suite.redis.port, "127.0.0.1");
    try {
      await redis.lpush(`${t.queue}_ssh`, JSON.stringify({ id: 99999 }));
      const id = await t.submit(osManifest([["echo from the os list"]]));
      await d.waitForMsg("build finished", { build: id });
      assert.equal((await t.build(id)).status, "passed");
      await until("the ssh payload in the dead list", async () => ((await redis.llen(`${t.queue}_dead`)) === 1 ? true : undefined));
    } finally {
      redis.disconnect();
    }
  });

  it("places objects from [objects] and records collected artifacts with their digest", async () => {
    const t = await suite.env();
    await fs.writeFile(path.join(t.dir, "objects", "input.txt"), "object content\n");
    const d = await t.daemon();
    const manifest = [
      "driver:",
      "  type: os",
      "objects:",
      "  - input.txt => data/in.txt",
      "stages: [build]",
      "jobs:",
      "  - stage: build",
      "    name: make",
      "    commands:",
      '      - "tr a-z A-Z < data/in.txt > out.txt"',
      "    artifacts:",
      "      - out.txt => result.txt",
      "",
    ].join("\n");
    const id = await t.submit(manifest);
    await d.waitForMsg("build finished", { build: id });
    assert.equal((await t.build(id)).status, "passed");
    const objects = await t.pool.query(`SELECT source, dest FROM objects WHERE build_id = $1`, [id]);
    assert.deepEqual(objects.rows, [{ source: "input.txt", dest: "data/in.txt" }]);
    const a = await t.pool.query(`SELECT a.source, a.name, a.size, a.sha256, a.path, j.name AS job FROM artifacts a JOIN jobs j ON j.id = a.job_id WHERE a.build_id = $1`, [id]);
    assert.equal(a.rowCount, 1);
    const row = a.rows[0];
    assert.deepEqual({ source: row.source, name: row.name, size: Number(row.size), job: row.job }, { source: "out.txt", name: "result.txt", size: 15, job: "make" });
    assert.equal(row.path, path.join(t.dir, "artifacts", String(id), "result.txt"));
    assert.equal(await fs.readFile(row.path, "utf8"), "OBJECT CONTENT\n");
    const { createHash } = await import("node:crypto");
    assert.equal(row.sha256, createHash("sha256").update("OBJECT CONTENT\n").digest("hex"));
  });

  it("a build that collects no artifacts leaves no folder in the artifact store", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const id = await t.submit(osManifest([["echo nothing to collect > out.txt"]]));
    await d.waitForMsg("build finished", { build: id });
    assert.equal((await t.build(id)).status, "passed");
    await assert.rejects(fs.stat(path.join(t.dir, "artifacts", String(id))), { code: "ENOENT" });
  });

  it("two jobs collecting to one artifact name keep both: each row's file has the row's digest", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const job = (name: string, text: string) => [`  - stage: build`, `    name: ${name}`, `    commands: ["echo ${text} > out.txt"]`, `    artifacts: [out.txt => app.txt]`];
    const manifest = ["driver: {type: os}", "stages: [build]", "jobs:", ...job("one", "first"), ...job("two", "second run"), ""].join("\n");
    const id = await t.submit(manifest);
    await d.waitForMsg("build finished", { build: id });
    assert.equal((await t.build(id)).status, "passed");
    const a = await t.pool.query(`SELECT a.name, a.size, a.sha256, a.path, j.name AS job FROM artifacts a JOIN jobs j ON j.id = a.job_id WHERE a.build_id = $1 ORDER BY a.id`, [id]);
    const { createHash } = await import("node:crypto");
    const rows = await Promise.all(a.rows.map(async (r) => {
      const bytes = await fs.readFile(r.path);
      return { job: r.job, name: r.name, size: Number(r.size), content: bytes.toString(), digestMatches: createHash("sha256").update(bytes).digest("hex") === r.sha256 };
    }));
    assert.deepEqual(rows, [
      { job: "one", name: "app.txt", size: 6, content: "first\n", digestMatches: true },
      { job: "two", name: "app-2.txt", size: 11, content: "second run\n", digestMatches: true },
    ]);
    assert.equal(a.rows[1].path, path.join(t.dir, "artifacts", String(id), "app-2.txt"));
    assert.match(await t.output(id), /Collected artifact out\.txt => app-2\.txt \(11 bytes\): app\.txt was collected earlier in this build, so this one is kept as app-2\.txt/);
  });
});
