// Masked values against real redis-server and PostgreSQL: too short ones refused or failed in setup,
// multi-line ones masked line by line, and none stored in clear, not even where the manifest holds it.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { readFileSync } from "node:fs";
import { Redis } from "ioredis";
import { Crypto } from "../internal/crypto/crypto.js";
import { enqueue } from "../internal/queue/queue.js";
import { osManifest, servicesSkip, daemonSuite } from "./helpers/daemon-suite.js";
import { cliPath } from "./helpers/env.js";
import { startSmtp } from "./helpers/smtp.js";
import { CRYPTO_BLOCK, until, waitForStatus, insertManifestBuild } from "./helpers/services.js";

const skip = servicesSkip();

/** Every row of every table, as text. */
async function everyRow(pool: import("pg").Pool): Promise<string> {
  const tables = await pool.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public'`);
  let everything = "";
  for (const { tablename } of tables.rows) {
    const r = await pool.query(`SELECT coalesce(string_agg(t::text, E'\\n'), '') AS rows FROM "${tablename}" t`);
    everything += r.rows[0].rows;
  }
  return everything;
}

describe("masked values", { skip }, () => {
  const suite = daemonSuite();

  it("a value shorter than 6 characters is refused by submit and run, one line, exit 2, nothing stored", async () => {
    const t = await suite.env();
    const manifest = path.join(t.dir, "m.yml");
    await fs.writeFile(manifest, osManifest([["true"]]));
    const expected = "djinn-worker: --secret PIN: masked variable PIN is 4 characters long: a masked value needs at least 6 (a shorter one cannot be masked usefully)\n";
    const submit = await t.cli(["submit", manifest, "--secret", "PIN=4711"]);
    assert.equal(submit.code, 2);
    assert.equal(submit.stderr, expected);
    const run = spawnSync(process.execPath, [cliPath, "run", manifest, "--secret", "PIN"], { encoding: "utf8", env: { ...process.env, PIN: "4711" }, cwd: t.dir });
    assert.equal(run.status, 2);
    assert.equal(run.stderr, expected);
    assert.equal(run.stdout, "");
    assert.equal((await t.pool.query(`SELECT count(*)::int AS n FROM builds`)).rows[0].n, 0);
    assert.equal((await t.cli(["submit", manifest, "--secret", "PIN=471147"])).code, 0, "6 characters are enough");
  });

  it("the worker fails a build whose stored masked value is too short, in setup, with the reason and nothing unmasked", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const text = osManifest([["echo ran-the-job", 'echo "pin=$PIN"']]);
    // A producer other than submit wrote it: the worker is the last line of defence.
    const id = await insertManifestBuild(t.pool, text, { secrets: [["PIN", "q7"]] });
    const redis = new Redis(suite.redis.port, "127.0.0.1");
    try {
      await enqueue(redis, t.queue, "os", id);
    } finally {
      redis.disconnect();
    }
    assert.equal(await waitForStatus(t.pool, id, ["failed", "passed"]), "failed");
    await d.waitForMsg("build finished", { build: id });
    const out = await t.output(id);
    assert.match(out, /masked variable PIN is 2 characters long: a masked value needs at least 6/);
    assert.ok(!out.includes("q7"), out);
    assert.ok(!out.includes("ran-the-job"), "no job ran");
    const jobs = await t.jobs(id);
    assert.deepEqual(jobs.map((j) => j.status), ["failed", "skipped"]);
  });

  it("masks each line of a multi-line value, and stores no masked value in clear, the manifest and commands included", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const multi = "first-line-Qz81\nsecond-line-Wy42\nok";
    const literal = "literal-Tk93-in-manifest";
    const text = [
      `namespace: ns-${literal}`,
      "driver:",
      "  type: os",
      `  note: ${literal}`,
      "objects:",
      `  - ${literal}.txt => placed.txt`,
      "env:",
      `  - ALSO=prefix-${literal}`,
      "stages: [test]",
      "jobs:",
      "  - stage: test",
      "    commands:",
      '      - printf "%s\\n" "$MULTI" | sed -n 2p',
      '      - printf "%s\\n" "$MULTI" | head -n 1',
      `      - '[ "$TOKEN" = "${literal}" ] && echo token-matches-the-manifest'`,
      `      - '[ "$ALSO" = "prefix-${literal}" ] && echo also-matches'`,
      `      - echo ${literal}`,
      `      - '[ "$WITH" = "with-${literal}" ] && echo with-matches'`,
      "",
    ].join("\n");
    // The object is there: one that is not fails the build in setup.
    await fs.writeFile(path.join(t.dir, "objects", `${literal}.txt`), "object");
    const id = await t.submit(text, ["--secret", `MULTI=${multi}`, "--secret", `TOKEN=${literal}`, "--env", `WITH=with-${literal}`]);
    assert.equal(await waitForStatus(t.pool, id, ["passed", "failed"]), "passed", await t.output(id));
    await d.waitForMsg("build finished", { build: id });
    const out = await t.output(id);
    assert.match(out, /token-matches-the-manifest\n/, "the job ran the manifest as submitted");
    assert.match(out, /also-matches\n/);
    assert.match(out, /with-matches\n/);
    for (const secret of ["first-line-Qz81", "second-line-Wy42", literal]) assert.ok(!out.includes(secret), `${secret} in output:\n${out}`);
    assert.match(out, /^xxxxxx$/m, "a line printed alone is masked");
    const rows = await everyRow(t.pool);
    for (const secret of ["first-line-Qz81", "second-line-Wy42", literal]) {
      assert.ok(!rows.includes(secret), `${secret} is stored in clear`);
      assert.ok(!rows.includes(Buffer.from(secret).toString("hex")), `${secret} is stored in clear as bytes`);
    }
    const b = await t.pool.query(`SELECT manifest, manifest_encrypted IS NOT NULL AS encrypted FROM builds WHERE id = $1`, [id]);
    assert.match(b.rows[0].manifest, /echo xxxxxx/);
    assert.equal(b.rows[0].encrypted, true);
    const cmds = await t.pool.query(`SELECT commands FROM jobs WHERE build_id = $1 AND commands <> ''`, [id]);
    assert.match(cmds.rows.map((r) => r.commands).join("\n"), /echo xxxxxx/);
    const withRow = await t.pool.query(`SELECT value, masked FROM variables WHERE build_id = $1 AND key = 'WITH'`, [id]);
    assert.deepEqual(withRow.rows[0], { value: null, masked: true }, "a variable holding a masked value is stored as a masked one");
    const logs = await t.cli(["logs", String(id)]);
    assert.ok(![multi, literal].some((s) => logs.stdout.includes(s)));
  });

  it("a manifest without masked values is stored as written", async () => {
    const t = await suite.env();
    const text = osManifest([["echo plain"]]);
    const id = await t.submit(text, ["--secret", "TOKEN=not-in-the-manifest"]);
    const b = await t.pool.query(`SELECT manifest, manifest_encrypted FROM builds WHERE id = $1`, [id]);
    assert.deepEqual(b.rows[0], { manifest: text, manifest_encrypted: null });
  });

  it("a setup error quoting a masked value (a manifest error) is masked in job_output, logs, the failure mail and the log", async () => {
    const smtp = await startSmtp();
    const secret = "setup-Rk27-secret";
    try {
      const t = await suite.env({ smtp: smtp.addr, logFile: true });
      await t.daemon({ ready: false }); // it logs to the file, not to its stdout
      // Stored as a producer would: the manifest holds the value, so it is kept encrypted as written.
      const id = await insertManifestBuild(t.pool, `driver: {type: os}\nenv: ["COPY=${secret}"]\nstages: [test]\njobs:\n- {stage: test, commands: [echo ran-the-job]}\n`, { secrets: [["API_TOKEN", secret]], notify: ["dev@example.test"] });
      // ... and written wrong: the manifest's parser quotes the entry that holds the value.
      const broken = `driver: {type: os}\nenv: ["${secret}"]\nstages: [test]\njobs:\n- {stage: test, commands: [echo ran-the-job]}\n`;
      await t.pool.query(`UPDATE builds SET manifest_encrypted = $2 WHERE id = $1`, [id, new Crypto(CRYPTO_BLOCK).encrypt(Buffer.from(broken))]);
      await enqueue(suite.redisClient(), t.queue, "os", id);
      assert.equal(await waitForStatus(t.pool, id, ["failed", "passed"]), "failed");
      const out = await t.output(id);
      assert.match(out, /manifest: .*env\[0\]: expected KEY=value with KEY a shell variable name, got "xxxxxx"/);
      assert.ok(!(await everyRow(t.pool)).includes(secret), `the value is in a row:\n${out}`);
      const logs = await t.cli(["logs", String(id)]);
      assert.match(logs.stdout, /got "xxxxxx"/);
      assert.ok(!logs.stdout.includes(secret));
      const mail = await smtp.next();
      assert.match(mail, /got "xxxxxx"/);
      assert.ok(!mail.includes(secret), mail);
      await until("the log says the mail went", () => readFileSync(t.cfg.logFile!, "utf8").includes("failure mail sent") || undefined);
      const log = readFileSync(t.cfg.logFile!, "utf8");
      assert.match(log, /failed in setup/);
      assert.match(log, /got \\"xxxxxx\\"/);
      assert.ok(!log.includes(secret), "the value is in the log");
    } finally {
      await smtp.stop();
    }
  });

  it("a file collected by a pattern whose name holds a masked value is refused: no row, no file, the job fails", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const secret = "file-Hn52-secret";
    const id = await t.submit(osManifest([['mkdir out && echo hi > "out/$TOKEN.txt" && echo ok > out/plain.txt']]).replace("    commands:", "    artifacts: ['out/* => out/*']\n    commands:"), ["--secret", `TOKEN=${secret}`]);
    assert.equal(await waitForStatus(t.pool, id, ["failed", "passed"]), "failed", await t.output(id));
    await d.waitForMsg("build finished", { build: id });
    assert.match(await t.output(id), /artifact out\/\*: a matching file's name holds a masked value: not collected/);
    assert.ok(!(await everyRow(t.pool)).includes(secret), "the value is in a row");
    const names = await t.pool.query(`SELECT name FROM artifacts WHERE build_id = $1`, [id]);
    assert.deepEqual(names.rows.map((r) => r.name), ["out/plain.txt"]);
    const files = await fs.readdir(path.join(t.dir, "artifacts"), { recursive: true });
    assert.ok(!files.some((f) => String(f).includes(secret)), files.join(", "));
  });

  it("a name holding a masked value is refused: by submit (nothing stored), and by the worker before it runs anything", async () => {
    const t = await suite.env();
    const secret = "name-Wd63-secret";
    const manifest = path.join(t.dir, "named.yml");
    await fs.writeFile(manifest, `driver: {type: os}\nstages: [test]\njobs:\n- {stage: test, name: "deploy ${secret}", commands: [echo ran-the-job]}\n`);
    const r = await t.cli(["submit", manifest, "--secret", `TOKEN=${secret}`]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `djinn-worker: ${manifest}: job "deploy xxxxxx" holds a masked value: names are stored and shown as they are, so none may hold one\n`);
    assert.equal((await t.pool.query(`SELECT count(*)::int AS n FROM builds`)).rows[0].n, 0);
    // A producer other than submit stored one (its rows are its own): the worker runs none of it.
    await t.daemon();
    const id = await insertManifestBuild(t.pool, `driver: {type: os}\nstages: ["s ${secret}"]\njobs:\n- {stage: "s ${secret}", commands: [echo ran-the-job]}\n`, { secrets: [["TOKEN", secret]] });
    await enqueue(suite.redisClient(), t.queue, "os", id);
    assert.equal(await waitForStatus(t.pool, id, ["failed", "passed"]), "failed");
    const out = await t.output(id);
    assert.match(out, /cannot prepare the build: stage "s xxxxxx" holds a masked value/);
    assert.ok(!out.includes("ran-the-job") && !out.includes(secret), out);
  });
});
