// The daemon's contract with operators: schema migrations, start-up failures, bad input, check,
// secrets kept out of every record, failure mail, metrics, and PostgreSQL going away.
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { Redis } from "ioredis";
import { enqueue } from "../internal/queue/queue.js";
import { MIGRATIONS, SCHEMA_VERSION } from "../internal/store/migrations/index.js";
import { osManifest, servicesSkip, daemonSuite } from "./helpers/daemon-suite.js";
import { startSmtp } from "./helpers/smtp.js";
import { freePort, runCli, until, waitForStatus, insertManifestBuild, hostState } from "./helpers/services.js";

const skip = servicesSkip();

describe("worker daemon: operations", { skip }, () => {
  const suite = daemonSuite();

  it("migrate is idempotent and safe when several run at once", async () => {
    const t = await suite.env({ migrate: false });
    const runs = await Promise.all([1, 2, 3, 4].map(() => t.cli(["migrate"])));
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    assert.equal(runs.filter((r) => /^applied migration/.test(r.stdout)).length, 1, runs.map((r) => r.stdout).join(""));
    const rows = await t.pool.query(`SELECT version FROM schema_migrations ORDER BY version`);
    assert.deepEqual(rows.rows.map((r) => r.version), MIGRATIONS.map((m) => m.version));
    const again = await t.cli(["migrate"]);
    assert.equal(again.code, 0);
    assert.equal(again.stdout, `schema already at version ${SCHEMA_VERSION}\n`);
  });

  it("status columns take only known statuses; an unknown word read back is an error naming its row", async () => {
    const t = await suite.env();
    const id = await insertManifestBuild(t.pool, osManifest([["true"]]));
    const refused = await t.pool.query(`UPDATE builds SET status = 'frobbed' WHERE id = $1`, [id]).then(() => undefined, (err: { code?: string; constraint?: string }) => err);
    assert.deepEqual({ code: refused?.code, constraint: refused?.constraint }, { code: "23514", constraint: "builds_status_known" });
    const job = await t.pool.query(`UPDATE jobs SET status = 'succeeded' WHERE build_id = $1`, [id]).then(() => undefined, (err: { constraint?: string }) => err);
    assert.equal(job?.constraint, "jobs_status_known");
    // A database whose constraint was dropped by hand: the word is still refused, where it is read.
    await t.pool.query(`ALTER TABLE builds DROP CONSTRAINT builds_status_known; UPDATE builds SET status = 'frobbed' WHERE id = ${id}`);
    const status = await t.cli(["status", String(id)]);
    assert.equal(status.code, 1, status.stderr);
    assert.match(status.stderr, new RegExp(`^djinn-worker: builds row ${id}: unknown status "frobbed" \\(this worker knows queued, running, passed, passed_with_failures, failed, killed, timed_out, skipped\\)`));
  });

  it("the daemon refuses an outdated schema and says to run migrate", async () => {
    const t = await suite.env({ migrate: false });
    const d = await t.daemon({ ready: false });
    assert.equal((await d.exit).code, 1);
    assert.equal(d.stderr, `djinn-worker: database schema is at version 0, this worker needs version ${SCHEMA_VERSION}: run \`djinn-worker migrate -config ${t.cfg.worker}\`\n`);
  });

  it("bad input to the operator commands is one clear line and exit 2", async () => {
    const t = await suite.env();
    const bad = path.join(t.dir, "bad.yml");
    await fs.writeFile(bad, "driver:\n  type: os\nstages: [a]\njobs:\n  - stage: nowhere\n    commands: [true]\n");
    const good = path.join(t.dir, "good.yml");
    await fs.writeFile(good, osManifest([["true"]]));
    const cases: [string[], RegExp][] = [
      [["submit", bad], new RegExp(`^djinn-worker: ${bad.replace(/[.]/g, "\\.")}: line 5: jobs: .*\\n$`)],
      [["submit", path.join(t.dir, "missing.yml")], /^djinn-worker: .*missing\.yml: cannot read manifest: no such file\n$/],
      [["submit", good, "--secret", "DJINN_TEST_UNSET_VARIABLE"], /^djinn-worker: --secret "DJINN_TEST_UNSET_VARIABLE": expected KEY=value, or KEY naming a variable set in this environment\n$/],
      // A --secret argument may be the value: the error shows the key at most.
      [["submit", good, "--secret", "no key"], /^djinn-worker: --secret: expected KEY=value, or KEY naming a variable set in this environment \(the argument is not shown: it may be a value\)\n$/],
      [["submit", good, "--secret", "API-TOKEN=val-Pb74-secret"], /^djinn-worker: --secret "API-TOKEN"=\.\.\.: expected KEY=value with KEY a shell variable name \(letters, digits and _, not starting with a digit\)\n$/],
      [["submit", good, "--notify", "not-an-address"], /^djinn-worker: --notify "not-an-address": not an email address\n$/],
      [["status", "424242"], /^djinn-worker: build 424242 not found\n$/],
      [["logs", "424242"], /^djinn-worker: build 424242 not found\n$/],
      [["kill", "424242"], /^djinn-worker: build 424242 not found\n$/],
      [["status", "abc"], /^djinn-worker: "abc" is not a build id \(a positive integer\)\n$/],
    ];
    for (const [args, stderr] of cases) {
      const r = await t.cli(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, stderr, args.join(" "));
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
    const count = await t.pool.query(`SELECT count(*)::int AS n FROM builds`);
    assert.equal(count.rows[0].n, 0, "nothing was stored");
  });

  it("check reports PostgreSQL with its schema version, Redis and SMTP", async () => {
    const smtp = await startSmtp();
    try {
      const t = await suite.env({ smtp: smtp.addr });
      const r = await runCli(["check", "-config", t.cfg.worker, "-driver", t.cfg.driver]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`^ok   postgresql: ${suite.postgres.addr}/\\w+, schema version ${SCHEMA_VERSION} \\(current\\)$`, "m"));
      assert.match(r.stdout, new RegExp(`^ok   redis: ${suite.redis.addr}, Redis \\d`, "m"));
      assert.match(r.stdout, new RegExp(`^ok   smtp: ${smtp.addr} ok`, "m"));
      assert.match(r.stdout, /^ok   os: workspaces under \/\S+, on \w+ \(\/\S*\)( without a journal: each file a build makes there gets slower while many are removed \(see docs\/os\.md\))?$/m);
      assert.match(r.stdout, /^ok   os: (a cgroup per build under \/\S+( \(mounted without favordynmods: .+\))?|no cgroup per build \(.+\): a build's processes are found by its DJINN_RUN marker and directory)$/m);
      const old = await suite.env({ migrate: false, smtp: `127.0.0.1:${await freePort()}` });
      const r2 = await runCli(["check", "-config", old.cfg.worker, "-driver", old.cfg.driver]);
      assert.equal(r2.code, 1);
      assert.match(r2.stdout, /^FAIL postgresql: .*schema version 0, expected \d+: run `djinn-worker migrate/m);
      assert.match(r2.stdout, /^FAIL smtp: /m);
    } finally {
      await smtp.stop();
    }
  });

  it("a masked secret never reaches the database, the log or the failure mail, which carries the output's tail", async () => {
    const smtp = await startSmtp();
    const secret = "s3cr3t-Value-4711";
    try {
      const t = await suite.env({ smtp: smtp.addr, logFile: true });
      const d = await t.daemon({ ready: false });
      const lines = Array.from({ length: 20 }, (_, i) => `echo line-${i + 1}`);
      const id = await t.submit(osManifest([[`echo "token is $API_TOKEN"`, ...lines, "echo \"$API_TOKEN\" >&2", "exit 1"]]), ["--secret", `API_TOKEN=${secret}`, "--notify", "dev@example.test", "--notify", "ops@example.test"]);
      assert.equal(await waitForStatus(t.pool, id, ["failed"]), "failed");
      const mail = await smtp.next();
      assert.match(mail, new RegExp(`Subject: Djinn CI - Build #${id} failed`));
      assert.match(mail, /dev@example\.test/);
      assert.match(mail, /line-20/);
      assert.match(mail, /\+ exit 1/);
      assert.ok(!mail.includes("line-5\n"), "only the tail");
      assert.ok(!mail.includes(secret));
      const out = await t.output(id);
      assert.match(out, /token is xxxxxx/);
      // Every row of every table, as text.
      const tables = await t.pool.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public'`);
      let everything = "";
      for (const { tablename } of tables.rows) {
        const r = await t.pool.query(`SELECT coalesce(string_agg(t::text, E'\\n'), '') AS rows FROM "${tablename}" t`);
        everything += r.rows[0].rows;
      }
      assert.ok(everything.includes("token is xxxxxx"));
      assert.ok(!everything.includes(secret), "the secret is in a row");
      assert.ok(!everything.includes(Buffer.from(secret).toString("hex")), "the secret is in a row as bytes");
      const v = await t.pool.query(`SELECT value, masked, octet_length(value_encrypted) AS n FROM variables WHERE build_id = $1 AND key = 'API_TOKEN'`, [id]);
      assert.deepEqual({ ...v.rows[0], n: v.rows[0].n > 0 }, { value: null, masked: true, n: true });
      await until("the log recorded the mail", () => readFileSync(t.cfg.logFile!, "utf8").includes("failure mail sent") || undefined);
      d.kill("SIGTERM");
      await d.exit;
      const log = readFileSync(t.cfg.logFile!, "utf8");
      const mailLines = log.split("\n").filter((l) => l.includes("failure mail"));
      assert.equal(mailLines.length, 1, `one log line per mail:\n${mailLines.join("\n")}`);
      assert.equal(JSON.parse(mailLines[0]).build, id, "the mail's line names the build as every other line does");
      assert.ok(log.includes(`"build":${id}`));
      assert.ok(!log.includes(secret), "the secret is in the log");
    } finally {
      await smtp.stop();
    }
  });

  it("a key given to submit is stored encrypted, placed at ~/.ssh/NAME with mode 0600, and masked in output", async () => {
    const t = await suite.env();
    await t.daemon();
    const material = ["b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB", "QyNTUxOQAAACBmYWtlLWtleS1tYXRlcmlhbC1mb3ItdGVzdHMtb25seQAAAJj"];
    const keyFile = path.join(t.dir, "deploy.key");
    writeFileSync(keyFile, `-----BEGIN OPENSSH PRIVATE KEY-----\n${material.join("\n")}\n-----END OPENSSH PRIVATE KEY-----\n`);
    const id = await t.submit(osManifest([["stat -c %a .ssh/deploy", "head -2 .ssh/deploy", "sed -n 3p .ssh/deploy"]]), ["--key", `deploy=${keyFile}`]);
    assert.equal(await waitForStatus(t.pool, id, ["passed", "failed"]), "passed", await t.output(id));
    const out = await t.output(id);
    assert.match(out, /\n600\n/);
    assert.match(out, /-----BEGIN OPENSSH PRIVATE KEY-----\nxxxxxx\n/);
    assert.match(out, /\+ sed -n 3p \.ssh\/deploy\nxxxxxx\n/);
    for (const line of material) assert.ok(!out.includes(line), "key material in the output");
    const rows = await t.pool.query(`SELECT name, octet_length(private_key_encrypted) AS n, private_key_encrypted::text AS raw FROM keys WHERE build_id = $1`, [id]);
    assert.equal(rows.rows[0].name, "deploy");
    assert.ok(!rows.rows[0].raw.includes(Buffer.from(material[0]).toString("hex")), "the key is stored in plain");
    const manifest = path.join(t.dir, "m.yml");
    writeFileSync(manifest, osManifest([["true"]]));
    const bad = await t.cli(["submit", manifest, "--key", "../x=" + keyFile]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--key "\.\.\/x=.*": expected NAME=FILE/);
  });

  it("with SMTP down the failed build is still recorded", async () => {
    const t = await suite.env({ smtp: `127.0.0.1:${await freePort()}` });
    const d = await t.daemon();
    const id = await t.submit(osManifest([["exit 1"]]), ["--notify", "dev@example.test"]);
    await d.waitForMsg("build finished", { build: id });
    assert.equal((await t.build(id)).status, "failed");
    await d.waitForMsg("failure mail not sent", { build: id }, 30_000);
    assert.equal((await t.build(id)).status, "failed");
  });

  it("serves metrics: builds by status, queue depth, health", async () => {
    const t = await suite.env({ metrics: "127.0.0.1:0" });
    const d = await t.daemon();
    const port = (await d.waitForMsg("metrics listening")).port as number;
    const id = await t.submit(osManifest([["echo ok"]]));
    await d.waitForMsg("build finished", { build: id });
    const body = await until("the finished build counted", async () => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return /djinn_builds_total\{status="passed"\} 1/.test(text) ? text : undefined;
    });
    assert.match(body, /djinn_build_duration_seconds_count\{status="passed"\} 1/);
    assert.match(body, /djinn_queue_wait_seconds_count 1/);
    await until("queue depth polled", async () => /djinn_queue_depth\{queue="q\d+_os"\} 0/.test(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()) || undefined, 10_000);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200);
  });

  it("rides out PostgreSQL going away mid-build: the build completes and is recorded", async () => {
    const t = await suite.env({ lease: "3s" });
    const d = await t.daemon();
    const go = path.join(t.dir, "go");
    const runs = path.join(t.dir, "runs");
    const id = await t.submit(osManifest([[`echo run >> ${runs}`, `while [ ! -e ${go} ]; do sleep 0.05; done`, "echo finished"]]));
    await until("the job started", () => existsSync(runs) || undefined);
    await suite.postgres.halt();
    try {
      await fs.writeFile(go, "");
      await d.waitForMsg("write failed; retrying", {}, 20_000);
    } finally {
      await suite.postgres.start();
    }
    assert.equal(await waitForStatus(t.pool, id, ["passed", "failed"], 60_000), "passed");
    assert.match(await t.output(id), /finished\n/);
    const next = await t.submit(osManifest([["echo again"]]));
    assert.equal(await waitForStatus(t.pool, next, ["passed", "failed"], 30_000), "passed");
    assert.equal(d.child.exitCode, null, "the daemon is still running");
  });

  it("a build whose result cannot be written is not acknowledged: after its worker dies it is recovered and run again", async () => {
    const t = await suite.env({ lease: "2s" });
    const a = await t.daemon();
    const go = path.join(t.dir, "go");
    const runs = path.join(t.dir, "runs");
    const id = await t.submit(osManifest([[`echo run >> ${runs}`, `while [ ! -e ${go} ]; do sleep 0.05; done`]]));
    await until("the job started", () => existsSync(runs) || undefined);
    await suite.postgres.halt();
    try {
      await fs.writeFile(go, "");
      await a.waitForMsg("write failed; retrying", {}, 20_000);
      a.kill("SIGKILL");
      await a.exit;
    } finally {
      await suite.postgres.start();
    }
    await fs.rm(go);
    const b = await t.daemon();
    await until("the build run again", () => readFileSync(runs, "utf8").split("\n").length > 2 || undefined, 20_000);
    await fs.writeFile(go, "");
    await b.waitForMsg("build finished", { build: id }, 30_000);
    const build = await t.build(id);
    assert.equal(build.status, "passed");
    assert.equal(build.attempt, 2);
    assert.match(await t.output(id), /^--- attempt 2: an earlier run/);
    assert.deepEqual(await hostState(t.tmp), [], "the dead worker's workspace was reaped, the new run's removed");
  });

  it("a build taken while PostgreSQL is away is put back and runs once it returns", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const text = osManifest([["echo ran"]]);
    const id = await insertManifestBuild(t.pool, text);
    await suite.postgres.halt();
    const redis = new Redis(suite.redis.port, "127.0.0.1");
    try {
      // Stored before the database went away, queued while it is away.
      await enqueue(redis, t.queue, "os", id);
      await d.waitForMsg("cannot claim build (database unavailable?); putting it back", { build: id }, 20_000);
    } finally {
      redis.disconnect();
      await suite.postgres.start();
    }
    assert.equal(await waitForStatus(t.pool, id, ["passed", "failed"], 30_000), "passed");
    assert.equal((await t.build(id)).attempt, 1);
  });
});
