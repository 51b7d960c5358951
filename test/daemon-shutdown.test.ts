// Shutdown is bounded whatever the servers do: with PostgreSQL and Redis unreachable (connections
// that answer nothing), SIGTERM ends the daemon within shutdown_timeout plus a fixed margin and a
// second signal ends it at once; the job is killed, its workspace removed, and the build is run
// by another worker once the lease runs out.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { FORCED_EXIT_MS, SHUTDOWN_MARGIN_MS } from "../internal/worker/daemon.js";
import { osManifest, servicesSkip, daemonSuite } from "./helpers/daemon-suite.js";
import { until, waitForStatus, isAlive, hostState } from "./helpers/services.js";

const skip = servicesSkip();


describe("worker daemon: shutdown with the servers gone", { skip }, () => {
  const suite = daemonSuite();

  /** A daemon reaching both servers through relays, running a job that waits for a file; the job's pid. */
  async function running(shutdownTimeout: string) {
    const pg = await suite.relay(suite.postgres.port);
    const redis = await suite.relay(suite.redis.port);
    const t = await suite.env({ postgres: pg.addr, redis: redis.addr, shutdownTimeout, lease: "2s" });
    const d = await t.daemon();
    const marks = path.join(t.dir, "runs");
    const id = await t.submit(osManifest([[`echo "start $$" >> ${marks}`, `while [ ! -e ${path.join(t.dir, "go")} ]; do sleep 0.05; done`, `echo end >> ${marks}`]]));
    const pid = await until("the job started", () => (existsSync(marks) ? Number(/start (\d+)/.exec(readFileSync(marks, "utf8"))?.[1]) || undefined : undefined));
    await pg.set("blackhole");
    await redis.set("blackhole");
    return { t, d, id, pid, pg, redis };
  }

  it("SIGTERM ends it within shutdown_timeout plus the margin; the build is recovered once the servers are back", async () => {
    const { t, d, id, pid, pg, redis } = await running("2s");
    const sent = Date.now();
    d.kill("SIGTERM");
    const exit = await d.exit;
    const took = Date.now() - sent;
    assert.equal(exit.code, 1, "not a clean stop");
    assert.ok(took < 2000 + SHUTDOWN_MARGIN_MS + 3000, `ended ${took} ms after SIGTERM`);
    assert.ok(d.lines.some((l) => /^shutdown not done \d+s after SIGTERM: exiting now/.test(String(l.msg))));
    await until("the job killed", () => !isAlive(pid) || undefined, 5000);
    assert.deepEqual(await hostState(t.tmp), [], "its workspace removed");

    await pg.set("open");
    await redis.set("open");
    await fs.writeFile(path.join(t.dir, "go"), "");
    const b = await t.daemon();
    await b.waitForMsg("build finished", { build: id }, 30_000);
    assert.equal(await waitForStatus(t.pool, id, ["passed"]), "passed");
    assert.equal((await t.build(id)).attempt, 2);
  });

  it("a second signal ends it at once", async () => {
    const { t, d, pid } = await running("60s");
    d.kill("SIGTERM");
    await d.waitForMsg("shutting down: no new builds");
    const sent = Date.now();
    d.kill("SIGTERM");
    const exit = await d.exit;
    const took = Date.now() - sent;
    assert.equal(exit.code, 1);
    assert.ok(took < FORCED_EXIT_MS + 3000, `ended ${took} ms after the second signal`);
    await until("the job killed", () => !isAlive(pid) || undefined, 5000);
    assert.deepEqual(await hostState(t.tmp), []);
  });
});
