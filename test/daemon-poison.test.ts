// Builds that cannot be prepared or recorded end (failed with the reason in their setup output,
// or on the dead list) instead of going round the queue forever; rows a producer left out are
// written by the worker from the manifest.
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { Redis } from "ioredis";
import type pg from "pg";
import { MAX_DELIVERIES } from "../internal/worker/prepare.js";
import { osManifest, servicesSkip, daemonSuite, type TestEnv } from "./helpers/daemon-suite.js";
import { until, waitForStatus } from "./helpers/services.js";

const skip = servicesSkip();

/** What a producer of its own might write: the builds row only (plus what `extra` adds), then the payload. */
async function produce(t: TestEnv, redis: Redis, manifest: string, extra?: (db: pg.PoolClient, id: number) => Promise<void>): Promise<number> {
  const client = await t.pool.connect();
  let id: number;
  try {
    await client.query("BEGIN");
    const r = await client.query(`INSERT INTO builds (secret, driver, manifest) VALUES ('s3cret', '{"type":"os"}', $1) RETURNING id`, [manifest]);
    id = Number(r.rows[0].id);
    await extra?.(client, id);
    await client.query("COMMIT");
  } finally {
    client.release();
  }
  await redis.lpush(`${t.queue}_os`, JSON.stringify({ id }));
  return id;
}

describe("worker daemon: poison builds", { skip }, () => {
  const suite = daemonSuite();
  let redis: Redis;
  before(() => {
    redis = suite.redisClient();
  });

  it("a build with no stage or job rows runs: the worker writes them from the manifest", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const id = await produce(t, redis, osManifest([["echo from the manifest"], ["echo second"]]));
    await d.waitForMsg("build finished", { build: id });
    assert.equal((await t.build(id)).status, "passed");
    const jobs = await t.pool.query(
      `SELECT s.position AS sp, s.name AS stage, s.can_fail, j.position AS jp, j.name, j.commands, j.status FROM jobs j JOIN stages s ON s.id = j.stage_id WHERE j.build_id = $1 ORDER BY s.position, j.position`,
      [id],
    );
    assert.deepEqual(
      jobs.rows.map((j) => [j.sp, j.stage, j.can_fail, j.jp, j.name, j.commands, j.status]),
      [
        [0, `setup - #${id}`, false, 0, "create-driver", "", "passed"],
        [1, "test", false, 0, "job1", "echo from the manifest", "passed"],
        [1, "test", false, 1, "job2", "echo second", "passed"],
      ],
    );
    assert.match(await t.output(id), /from the manifest/);
  });

  it("rows that disagree with the manifest fail the build in setup with the difference", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const id = await produce(t, redis, osManifest([["echo must not run"]]), async (db, id) => {
      const s = await db.query(`INSERT INTO stages (build_id, position, name) VALUES ($1, 0, $2) RETURNING id`, [id, `setup - #${id}`]);
      await db.query(`INSERT INTO jobs (build_id, stage_id, position, name) VALUES ($1, $2, 0, 'create-driver')`, [id, s.rows[0].id]);
      const u = await db.query(`INSERT INTO stages (build_id, position, name) VALUES ($1, 1, 'test') RETURNING id`, [id]);
      await db.query(`INSERT INTO jobs (build_id, stage_id, position, name) VALUES ($1, $2, 0, 'renamed')`, [id, u.rows[0].id]);
    });
    await d.waitForMsg("build finished", { build: id });
    const b = await t.build(id);
    assert.equal(b.status, "failed");
    assert.equal(b.attempt, 1);
    const out = await t.output(id);
    assert.match(out, /job 2 of the build's stage\/job rows does not match its manifest: a row for "test \/ renamed" where the manifest plans "test \/ job1"/);
    assert.doesNotMatch(out, /must not run/);
    assert.deepEqual((await t.jobs(id)).map((j) => [j.name, j.status]), [["create-driver", "failed"], ["job1", "skipped"]]);
  });

  it("an unparseable manifest without rows fails in setup with the parser's reason", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const id = await produce(t, redis, "driver: {type: os}\nstages: [a]\njobs: nope\n");
    await d.waitForMsg("build finished", { build: id });
    assert.equal((await t.build(id)).status, "failed");
    const r = await t.pool.query(`SELECT s.name AS stage, j.name FROM jobs j JOIN stages s ON s.id = j.stage_id WHERE j.build_id = $1`, [id]);
    assert.deepEqual(r.rows, [{ stage: `setup - #${id}`, name: "create-driver" }]);
    assert.match(await t.output(id), /^cannot prepare the build: manifest: .*jobs/);
  });

  it("a masked variable that does not decrypt fails the build in setup, naming the variable", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const id = await produce(t, redis, osManifest([["echo must not run"]]), async (db, id) => {
      await db.query(`INSERT INTO variables (build_id, position, key, masked, value_encrypted) VALUES ($1, 0, 'TOKEN', true, $2)`, [id, Buffer.alloc(40, 7)]);
    });
    await d.waitForMsg("build finished", { build: id });
    assert.equal((await t.build(id)).status, "failed");
    assert.match(await t.output(id), /^cannot decrypt masked variable TOKEN: cannot decrypt: wrong crypto.block or corrupted value/);
  });

  it(`a build taken ${MAX_DELIVERIES} times before is failed in setup, not run again`, async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const id = await produce(t, redis, osManifest([["echo must not run"]]), async (db, id) => {
      await db.query(`UPDATE builds SET attempt = $2 WHERE id = $1`, [id, MAX_DELIVERIES]);
    });
    await d.waitForMsg("build finished", { build: id });
    assert.equal((await t.build(id)).status, "failed");
    assert.match(await t.output(id), new RegExp(`build taken ${MAX_DELIVERIES} times without finishing`));
    assert.doesNotMatch(await t.output(id), /must not run/);
  });

  it("a manifest row over manifest_limit fails the build in setup, neither loaded nor parsed", async () => {
    const t = await suite.env({ extra: "manifest_limit = 4096" });
    const d = await t.daemon();
    const manifest = osManifest([["echo must not run"]]) + `# ${"x".repeat(8000)}\n`;
    const id = await produce(t, redis, manifest);
    await d.waitForMsg("build finished", { build: id });
    assert.equal((await t.build(id)).status, "failed");
    const out = await t.output(id);
    assert.equal(out, `cannot prepare the build: the manifest is ${Buffer.byteLength(manifest)} bytes, over the limit of 4096 bytes (manifest_limit in worker.toml)\n`);
    // Acknowledged (just after the status is written).
    await until("the processing list emptied", async () => (await redis.keys(`${t.queue}_os:processing:*`)).length === 0);
  });

  it("payloads that are not valid UTF-8 go to the dead list once, exactly as they were, and leave no processing list behind", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const garbage = Buffer.from("garbage-\xff", "latin1");
    const build = await produce(t, redis, osManifest([["echo must not run"]]), async () => undefined);
    // The build's own payload is on the queue; this one names it too, with a byte that is not UTF-8.
    const named = Buffer.concat([Buffer.from(`{"id": ${build}, "note": "`), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
    await redis.lpush(`${t.queue}_os`, garbage, named);
    const dead = await until("both payloads on the dead list", async () => {
      const items = (await redis.lrangeBuffer(`${t.queue}_dead`, 0, -1)).map((i) => JSON.parse(i.toString("utf8")));
      return items.length === 2 ? items : undefined;
    });
    for (const [entry, raw] of [[dead.find((e) => e.payload.startsWith("garbage")), garbage], [dead.find((e) => e.payload.startsWith("{")), named]] as const) {
      assert.ok(entry, JSON.stringify(dead));
      assert.equal(entry.reason, "payload is not valid UTF-8");
      assert.equal(entry.queue, `${t.queue}_os`);
      assert.deepEqual(Buffer.from(entry.payload_base64, "base64"), raw, "the dead list keeps the bytes exactly");
    }
    // The worker goes on, and logged each once: no loop over a payload it cannot remove.
    const next = await produce(t, redis, osManifest([["echo next"]]));
    await d.waitForMsg("build finished", { build: next });
    await d.waitForMsg("build finished", { build });
    await until("the processing list emptied", async () => (await redis.keys(`${t.queue}_os:processing:*`)).length === 0);
    assert.equal(d.lines.filter((l) => l.msg === "unusable payload moved to the dead list").length, 2);
  });

  it("a build whose output PostgreSQL refuses to store ends failed on the dead list with the reason", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    await t.pool.query(`CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'output refused for this build'; END $$ LANGUAGE plpgsql`);
    const id = await produce(t, redis, osManifest([["echo hi"]]));
    await t.pool.query(`CREATE TRIGGER refuse BEFORE INSERT ON job_output FOR EACH ROW WHEN (NEW.build_id = ${id}) EXECUTE FUNCTION refuse()`);
    const dead = await until("the build on the dead list", async () => {
      const items = (await redis.lrange(`${t.queue}_dead`, 0, -1)).map((i) => JSON.parse(i));
      return items.find((e) => e.payload === JSON.stringify({ id }));
    });
    assert.match(dead.reason, /cannot record the build: output refused for this build/);
    assert.equal(await waitForStatus(t.pool, id, ["failed"], 5000), "failed");
    assert.ok((await t.build(id)).attempt <= 2, "given up at once, not after a loop");
    // The worker goes on.
    await t.pool.query(`DROP TRIGGER refuse ON job_output`);
    const next = await produce(t, redis, osManifest([["echo next"]]));
    await d.waitForMsg("build finished", { build: next });
    assert.equal((await t.build(next)).status, "passed");
  });
});
