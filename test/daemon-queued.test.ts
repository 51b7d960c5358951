// A build that waits: which queue and how many live workers serve it (submit, status, logs -f,
// /metrics), cancelling it before it runs (kill), and submit storing nothing when it fails.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, it } from "node:test";
import { enqueue } from "../internal/queue/queue.js";
import { claimBuild, loadBuild } from "../internal/store/builds.js";
import { CANCELLED_NOTE } from "../internal/store/cancel.js";
import { osManifest, servicesSkip, daemonSuite, type TestEnv } from "./helpers/daemon-suite.js";
import { cliPath } from "./helpers/env.js";
import { insertManifestBuild, until } from "./helpers/services.js";

const skip = servicesSkip();

/** A build for the docker driver, which the suite's workers (os) do not serve. */
const DOCKER_MANIFEST = "driver:\n  type: docker\n  image: alpine\nstages: [test]\njobs:\n  - stage: test\n    commands: [echo never]\n";

async function buildCount(t: TestEnv): Promise<number> {
  return Number((await t.pool.query(`SELECT count(*) AS n FROM builds`)).rows[0].n);
}

describe("worker daemon: queued builds", { skip }, () => {
  const suite = daemonSuite();

  it("submit warns when no live worker serves the build's queue, and with --wait-for-worker refuses, storing nothing", async () => {
    const t = await suite.env();
    await t.daemon();
    const served = await t.cli(["submit", await t.writeManifest(osManifest([["echo ok"]]))]);
    assert.equal(served.code, 0, served.stderr);
    assert.equal(served.stderr, "", "a queue a live worker serves: no warning");

    const unserved = await t.cli(["submit", await t.writeManifest(DOCKER_MANIFEST)]);
    assert.equal(unserved.code, 0, unserved.stderr);
    const id = Number(unserved.stdout.trim());
    assert.ok(id > 0);
    assert.match(unserved.stderr, new RegExp(`no live worker serves queue ${t.queue}_docker: build ${id} waits`));

    const before = await buildCount(t);
    const refused = await t.cli(["submit", "--wait-for-worker", await t.writeManifest(DOCKER_MANIFEST)]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.equal(refused.stdout, "");
    assert.match(refused.stderr, new RegExp(`no live worker serves queue ${t.queue}_docker: nothing stored`));
    assert.equal(refused.stderr.trim().split("\n").length, 1);
    assert.equal(await buildCount(t), before, "nothing stored");
  });

  it("status and logs -f say which queue a queued build waits on; kill cancels it and takes its payload off the queue", async () => {
    const t = await suite.env();
    const id = await t.submit(DOCKER_MANIFEST);
    const redis = suite.redisClient();
    assert.equal(await redis.llen(`${t.queue}_docker`), 1);

    const status = await t.cli(["status", String(id)]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`build ${id} waits on queue ${t.queue}_docker: no live worker serves it`));

    // logs -f says it once, then follows until the build ends.
    const logs = spawn(process.execPath, [cliPath, "logs", "-f", String(id), "-config", t.cfg.worker], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    logs.stdout.on("data", (d) => (stdout += d));
    const exited = new Promise<number | null>((r) => logs.once("exit", (code) => r(code)));
    await new Promise<void>((resolve) =>
      logs.stderr.on("data", (d) => {
        stderr += d;
        if (stderr.includes("\n")) resolve();
      }),
    );
    assert.match(stderr, new RegExp(`^build ${id} waits on queue ${t.queue}_docker: no live worker serves it`));

    const kill = await t.cli(["kill", String(id)]);
    assert.equal(kill.code, 0, kill.stdout + kill.stderr);
    assert.match(kill.stdout, new RegExp(`build ${id} cancelled before it ran: killed`));
    assert.equal(await exited, 0);
    assert.equal(stderr.trim().split("\n").length, 1, "said once");
    assert.ok(stdout.includes(CANCELLED_NOTE), stdout);
    assert.match(stdout, /Done\. Build killed\n$/);

    assert.equal((await t.build(id)).status, "killed");
    assert.equal(await t.output(id), CANCELLED_NOTE);
    const jobs = await t.jobs(id);
    assert.equal(jobs[0].name, "create-driver");
    assert.deepEqual(jobs.map((j) => j.status), ["killed", ...jobs.slice(1).map(() => "skipped")]);
    assert.equal(await redis.llen(`${t.queue}_docker`), 0, "the payload is off the queue");
    assert.match((await t.cli(["kill", String(id)])).stdout, /already finished: killed/);
  });

  it("a cancelled build whose payload a worker takes afterwards is dropped, not run", async () => {
    const t = await suite.env();
    const id = await insertManifestBuild(t.pool, osManifest([["echo ran"]]));
    const kill = await t.cli(["kill", String(id)]);
    assert.equal(kill.code, 0, kill.stdout + kill.stderr);
    // A copy of its payload that the cancel did not see (taken by a worker meanwhile, or pushed late).
    await enqueue(suite.redisClient(), t.queue, "os", id);
    const d = await t.daemon();
    await d.waitForMsg("build already finished: dropping duplicate delivery", { build: id });
    assert.equal((await t.build(id)).status, "killed");
    assert.equal((await t.build(id)).attempt, 0, "never claimed");
    assert.equal(await t.output(id), CANCELLED_NOTE);
    await until("the payload acknowledged", async () => ((await suite.redisClient().keys(`${t.queue}_os*`)).length === 0 ? true : undefined), 10_000);
  });

  it("a build a worker claimed before the kill is not cancelled under it: the kill goes to the worker", async () => {
    const t = await suite.env();
    const id = await insertManifestBuild(t.pool, osManifest([["echo ran"]]));
    const claim = await claimBuild(t.pool, id, "elsewhere-1", 60_000, 1 << 20);
    assert.equal(claim.outcome, "claimed");
    assert.deepEqual(claim.outcome === "claimed" && claim.build, await loadBuild(t.pool, id, 1 << 20), "the claim reads the build as loadBuild does");
    assert.match(claim.outcome === "claimed" ? claim.build.manifestText : "", /echo ran/);
    const large = await insertManifestBuild(t.pool, osManifest([["echo ran"]]));
    const limited = await claimBuild(t.pool, large, "elsewhere-1", 60_000, 10);
    assert.ok(limited.outcome === "claimed" && limited.build.manifestText === "" && limited.build.manifestBytes > 10, "over the limit, the manifest is not read");
    const kill = await t.cli(["kill", String(id)]);
    assert.equal(kill.code, 1, "no worker of this test is subscribed");
    assert.match(kill.stdout, /is running: no worker is running it right now, nothing killed/);
    const b = await t.build(id);
    assert.equal(b.status, "running");
    assert.equal(b.worker, "elsewhere-1");
    assert.equal(await t.output(id), "");
  });

  it("/metrics reports the depth of every queue under the prefix, served or not", async () => {
    const t = await suite.env({ metrics: "127.0.0.1:0" });
    // Another installation whose prefix begins with this one's: its lists match `<prefix>_*` too.
    const other = `${t.queue}_other`;
    await suite.redisClient().lpush(`${other}_os`, JSON.stringify({ id: 1 }), JSON.stringify({ id: 2 }));
    await suite.redisClient().lpush(`${other}_qemu-x86_64`, JSON.stringify({ id: 3 }));
    await suite.redisClient().lpush(`${other}_dead`, "{}");
    const d = await t.daemon();
    const port = (await d.waitForMsg("metrics listening")).port as number;
    await t.submit(DOCKER_MANIFEST);
    await t.submit(DOCKER_MANIFEST);
    const depth = new RegExp(`djinn_queue_depth\\{queue="${t.queue}_docker"\\} 2`);
    await until("the unserved queue's depth", async () => (depth.test(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()) ? true : undefined), 20_000);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(text, new RegExp(`djinn_queue_depth\\{queue="${t.queue}_os"\\} 0`));
    assert.doesNotMatch(text, /processing|_dead"/);
    assert.doesNotMatch(text, new RegExp(`queue="${other}_`), "another installation's queues are not this one's");
  });

  it("submit with Redis away exits 1 and stores nothing: no build runs later", async () => {
    const relay = await suite.relay(suite.redis.port, "closed");
    const t = await suite.env({ redis: relay.addr });
    const r = await t.cli(["submit", await t.writeManifest(osManifest([["echo ok"]]))]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot connect to Redis/);
    assert.equal(r.stdout, "");
    assert.equal(await buildCount(t), 0, "nothing for the heal sweep to queue once Redis is back");
  });

  it("submit whose push fails after the rows are stored withdraws them and exits 1", async () => {
    const t = await suite.env();
    // Redis answers the probe but refuses the push: the queue's key holds a string.
    await suite.redisClient().set(`${t.queue}_os`, "not a list");
    const r = await t.cli(["submit", await t.writeManifest(osManifest([["echo ok"]]))]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`cannot queue the build on ${t.queue}_os: .*WRONGTYPE.*; nothing stored`));
    assert.equal(r.stderr.trim().split("\n").length, 1);
    assert.equal(await buildCount(t), 0, "the rows are withdrawn: the heal sweep finds nothing to queue");
  });
});
