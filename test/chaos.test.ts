// Kill -9 chaos, bounded (the full run is bench/chaos.ts): workers on one queue killed and
// replaced while builds run. Nothing is lost or stuck, no finished build runs again, and nothing
// is left behind: no workspace, no job process, no payload.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { chaosReport, chaosRun } from "./helpers/chaos.js";
import { servicesSkip, daemonSuite } from "./helpers/daemon-suite.js";

const skip = servicesSkip();

describe("kill -9 chaos (os driver)", { skip }, () => {
  const suite = daemonSuite();

  it("3 workers, one killed every 1.5 s and replaced, 40 builds: none lost, stuck or re-run, nothing left behind", async () => {
    const r = await chaosRun(suite.redis, suite.postgres, {
      builds: 40,
      workers: 3,
      killEveryMs: 1500,
      minJobMs: 300,
      maxJobMs: 1500,
      parallelism: 2,
      lease: "2s",
      leaseMs: 2000,
      settleMs: 8000,
      timeoutMs: 180_000,
    });
    const report = chaosReport(r);
    assert.ok(r.kills >= 5, report);
    assert.deepEqual(r.lost, [], report);
    assert.deepEqual(r.stuck, [], report);
    assert.deepEqual(r.reRun, [], report);
    assert.deepEqual(r.notPassed, [], report);
    assert.deepEqual(r.workspaces, [], report);
    assert.equal(r.processes, 0, report);
    assert.deepEqual(r.badArtifacts, [], report);
    assert.equal(r.payloadsLeft, 0, report);
    assert.equal(r.dead, 0, report);
  });
});
