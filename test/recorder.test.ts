// The recorder's guarded writes against a real PostgreSQL: going from one job to the next is one
// statement, which writes both rows under the claim or neither.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { claimBuild, ClaimLostError } from "../internal/store/builds.js";
import { BuildRecorder } from "../internal/store/recorder.js";
import { osManifest, servicesSkip, daemonSuite } from "./helpers/daemon-suite.js";
import { insertManifestBuild } from "./helpers/services.js";

const skip = servicesSkip();

describe("build recorder", { skip }, () => {
  const suite = daemonSuite();

  it("a job's end goes with the next job's start: both rows, the ended stage and the output's rest in one statement", { timeout: 30_000 }, async () => {
    const t = await suite.env();
    const id = await insertManifestBuild(t.pool, osManifest([["echo one"], ["echo two"]]));
    const claim = await claimBuild(t.pool, id, "recorder-1", 60_000, 1 << 20);
    assert.ok(claim.outcome === "claimed");
    const [setup, one, two] = claim.build.jobs!;
    const rec = new BuildRecorder(t.pool, id, "recorder-1", claim.attempt);
    await rec.jobStarted(setup.id, setup.stageId);
    await rec.jobStarted(one.id, one.stageId, { jobId: setup.id, status: "passed", exitCode: 0, outputBytes: 6, rest: "ready\n", stage: { id: setup.stageId, status: "passed" } });
    let jobs = await t.jobs(id);
    assert.deepEqual(jobs.map((j) => [j.name, j.status, j.exit_code]), [["create-driver", "passed", 0], ["job1", "running", null], ["job2", "queued", null]]);
    assert.ok(jobs[0].finished_at && jobs[1].started_at && jobs[0].finished_at <= jobs[1].started_at);
    const stages = await t.pool.query(`SELECT status, finished_at FROM stages WHERE build_id = $1 ORDER BY position`, [id]);
    assert.deepEqual(stages.rows.map((s) => [s.status, s.finished_at !== null]), [["passed", true], ["running", false]]);
    assert.equal(await t.output(id), "ready\n");
    // The next job in the same stage: the stage goes on running.
    await rec.jobStarted(two.id, two.stageId, { jobId: one.id, status: "passed", exitCode: 0, outputBytes: 0, rest: "" });
    jobs = await t.jobs(id);
    assert.deepEqual(jobs.map((j) => [j.name, j.status]), [["create-driver", "passed"], ["job1", "passed"], ["job2", "running"]]);
    assert.equal((await t.pool.query(`SELECT status FROM stages WHERE id = $1`, [two.stageId])).rows[0].status, "running");
  });

  it("a claim taken over writes neither the end nor the start", { timeout: 30_000 }, async () => {
    const t = await suite.env();
    const id = await insertManifestBuild(t.pool, osManifest([["echo one"]]));
    const first = await claimBuild(t.pool, id, "recorder-1", 1, 1 << 20);
    assert.ok(first.outcome === "claimed");
    const [setup, one] = first.build.jobs!;
    const stale = new BuildRecorder(t.pool, id, "recorder-1", first.attempt);
    await stale.jobStarted(setup.id, setup.stageId);
    // Its lease (1 ms) gone, another worker takes the build: the earlier run's rows are reset.
    await t.pool.query(`UPDATE builds SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, [id]);
    assert.equal((await claimBuild(t.pool, id, "recorder-2", 60_000, 1 << 20)).outcome, "claimed");
    await assert.rejects(stale.jobStarted(one.id, one.stageId, { jobId: setup.id, status: "passed", exitCode: 0, outputBytes: 3, rest: "old", stage: { id: setup.stageId, status: "passed" } }), ClaimLostError);
    assert.deepEqual((await t.jobs(id)).map((j) => [j.name, j.status, j.finished_at]), [["create-driver", "queued", null], ["job1", "queued", null]]);
    assert.equal(await t.output(id), "");
  });

  it("a job's end, ran or skipped, by the one statement: a skipped job keeps no times", { timeout: 30_000 }, async () => {
    const t = await suite.env();
    const id = await insertManifestBuild(t.pool, osManifest([["echo one"], ["echo two"]]));
    const claim = await claimBuild(t.pool, id, "recorder-1", 60_000, 1 << 20);
    assert.ok(claim.outcome === "claimed");
    const [, one, two] = claim.build.jobs!;
    const rec = new BuildRecorder(t.pool, id, "recorder-1", claim.attempt);
    await rec.jobEnded({ jobId: one.id, status: "failed", exitCode: 1, outputBytes: 0, rest: "" });
    await rec.jobEnded({ jobId: two.id, status: "skipped", exitCode: undefined, outputBytes: 0, rest: "", stage: { id: two.stageId, status: "failed" } });
    const jobs = await t.jobs(id);
    assert.deepEqual(jobs.slice(1).map((j) => [j.name, j.status, j.exit_code, j.started_at !== null, j.finished_at !== null]), [["job1", "failed", 1, true, true], ["job2", "skipped", null, false, false]]);
    assert.equal((await t.pool.query(`SELECT status FROM stages WHERE id = $1`, [two.stageId])).rows[0].status, "failed");
  });
});
