// The heartbeat and a build's last write racing, against real redis-server and PostgreSQL: a lease
// renewal that lands just after the build's final status is written must not be taken for a lost
// lease (it used to log "lease on build lost" in the same millisecond as the build's "passed").
import assert from "node:assert/strict";
import path from "node:path";
import fs from "node:fs/promises";
import { describe, it } from "node:test";
import { Redis } from "ioredis";
import { heartbeatKey } from "../internal/queue/names.js";
import { osManifest, servicesSkip, daemonSuite } from "./helpers/daemon-suite.js";
import { until, waitForStatus } from "./helpers/services.js";

const skip = servicesSkip();
const GATE = 4711;

describe("lease renewal racing a build's final status", { skip }, () => {
  const suite = daemonSuite();

  it("a renewal queued behind the final status write is no lost lease", async () => {
    const t = await suite.env({ lease: "1s" });
    // Holds the build's final status write (with its row lock) until the test lets it go, so the
    // next heartbeat's renewal queues behind it and finds the build no longer running.
    await t.pool.query(`
      CREATE FUNCTION hold_final_status() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF OLD.status = 'running' AND NEW.status <> 'running' THEN PERFORM pg_advisory_xact_lock(${GATE}); END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER hold_final_status BEFORE UPDATE ON builds FOR EACH ROW EXECUTE FUNCTION hold_final_status();`);
    const gate = await t.pool.connect();
    try {
      await gate.query(`SELECT pg_advisory_lock(${GATE})`);
      const d = await t.daemon();
      const go = path.join(t.dir, "go");
      const id = await t.submit(osManifest([[`while [ ! -e ${go} ]; do sleep 0.05; done`]]));
      await until("the build running", async () => ((await t.build(id)).status === "running" ? true : undefined));
      await fs.writeFile(go, "");
      await until("a lease renewal waiting behind the final status", async () => {
        const r = await t.pool.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'UPDATE builds SET lease_expires_at%'`,
        );
        return r.rows[0].n > 0 ? true : undefined;
      });
      await gate.query(`SELECT pg_advisory_unlock(${GATE})`);
      assert.equal(await waitForStatus(t.pool, id, ["passed", "failed", "killed"]), "passed");
      await d.waitForMsg("build finished", { build: id });
      // Heartbeats never overlap: one that writes its Redis key after now began after the held one
      // ended, and the held one decided about this build's lease before it ended.
      const now = Date.now();
      const worker = d.lines.find((l) => l.msg === "worker started")!.worker as string;
      const redis = new Redis(suite.redis.port, "127.0.0.1");
      try {
        await until("a heartbeat after the held one", async () => {
          const beat = await redis.get(heartbeatKey(t.queue, worker));
          return beat && JSON.parse(beat).at > now ? true : undefined;
        });
      } finally {
        redis.disconnect();
      }
      assert.deepEqual(d.lines.filter((l) => l.msg === "lease on build lost: stopping it"), []);
    } finally {
      gate.release();
    }
  });
});
