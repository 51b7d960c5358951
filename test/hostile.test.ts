// Hostile input against real redis-server and PostgreSQL: manifests `submit` and `run` must refuse
// in one line, and names a build controls shown by `status` and `logs` without reaching the terminal raw.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { Redis } from "ioredis";
import { DEAD_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES, deadPayload } from "../internal/queue/queue.js";
import { osManifest, servicesSkip, daemonSuite } from "./helpers/daemon-suite.js";
import { cliPath } from "./helpers/env.js";
import { until, waitForStatus } from "./helpers/services.js";

const skip = servicesSkip();

describe("hostile input", { skip }, () => {
  const suite = daemonSuite();

  it("submit and run refuse hostile manifests in one line naming the field, exit 2, nothing stored", async () => {
    const t = await suite.env();
    const cases: [string, string | Buffer, RegExp][] = [
      ["nul-object", 'driver: {type: os}\nobjects: ["obj\\0name => /tmp/x"]\nstages: [a]\njobs: [{stage: a, commands: [true]}]\n', /: line 2: objects\[0\]: contains a NUL byte$/],
      ["nul-artifact", 'driver: {type: os}\nstages: [a]\njobs: [{stage: a, commands: [true], artifacts: ["out => na\\0me"]}]\n', /: line 3: jobs\[0\]\.artifacts\[0\]: contains a NUL byte$/],
      ["nul-raw", "driver: {type: os}\nstages: [a]\njobs: [{stage: a, commands: [echo \0]}]\n", /: line 3: jobs: contains a NUL byte \(column 35\)$/],
      ["reserved-stage", 'driver: {type: os}\nstages: [a, "setup - #1"]\njobs: [{stage: a, commands: [true]}]\n', /: line 2: stages\[1\]: stage names starting "setup - #" are reserved/],
      ["deep", `driver: {type: os}\nenv: ${"[".repeat(50_000)}${"]".repeat(50_000)}\nstages: [a]\njobs: [{stage: a, commands: [true]}]\n`, /: line 2: env: nested more than 32 levels deep$/],
      ["utf8", Buffer.concat([Buffer.from("driver: {type: os}\nstages: [a]\njobs: [{stage: a, commands: [echo "), Buffer.from([0xfe]), Buffer.from("]}]\n")]), /: line 3: jobs: not valid UTF-8: byte 0xfe at column 35/],
    ];
    for (const [name, text, reason] of cases) {
      const file = path.join(t.dir, `${name}.yml`);
      await fs.writeFile(file, text);
      const submit = await t.cli(["submit", file]);
      assert.equal(submit.code, 2, `${name}: ${submit.stderr}`);
      assert.match(submit.stderr.trimEnd(), reason, name);
      assert.equal(submit.stderr.trim().split("\n").length, 1, submit.stderr);
      const run = spawnSync(process.execPath, [cliPath, "run", file], { encoding: "utf8", cwd: t.dir });
      assert.equal(run.status, 2, `${name}: ${run.stderr}`);
      assert.match(run.stderr.trimEnd(), reason, name);
      assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
    }
    assert.equal((await t.pool.query(`SELECT count(*)::int AS n FROM builds`)).rows[0].n, 0, "nothing was stored");
  });

  it("status and logs escape control characters in names: one row per job, no escape sequence reaches the terminal", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const stage = "build\\e]0;pwned\\a";
    const job = "line\\nsplit \\e[31mred\\e[0m\\r\\u202e";
    const id = await t.submit(`namespace: "ns\\e[2J"\ndriver: {type: os}\nstages: ["${stage}"]\njobs:\n- stage: "${stage}"\n  name: "${job}"\n  commands: [echo ran]\n`);
    assert.equal(await waitForStatus(t.pool, id, ["passed", "failed"]), "passed");
    await d.waitForMsg("build finished", { build: id });
    const status = await t.cli(["status", String(id)]);
    assert.equal(status.code, 0, status.stderr);
    assert.doesNotMatch(status.stdout, /[\x00-\x08\x0b-\x1f\x7f\u202e]/, "no control character reaches the terminal");
    const lines = status.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 1 + 2 + 1, `a line per job:\n${status.stdout}`);
    assert.match(lines[2], /^  build\\e\]0;pwned\\x07 \/ line\\nsplit \\e\[31mred\\e\[0m\\r\\u\{202e\}  passed/);
    assert.match(lines[3], /namespace ns\\e\[2J/);
    const logs = await t.cli(["logs", String(id)]);
    assert.equal(logs.code, 0);
    assert.match(logs.stdout, /^==> build\\e\]0;pwned\\x07 \/ line\\nsplit \\e\[31mred\\e\[0m\\r\\u\{202e\}\n\+ echo ran\nran\n/m);
    assert.doesNotMatch(logs.stdout, /[\x1b\x07\r\u202e]/);
  });

  it("a daemon without [objects] and [artifacts] runs the build and says in its output what it did not place or collect", async () => {
    const t = await suite.env({ withoutStores: true });
    const d = await t.daemon();
    const id = await t.submit(`driver: {type: os}\nobjects: [greeting.txt]\nstages: [a]\njobs:\n- stage: a\n  commands: [echo made > out.txt]\n  artifacts: [out.txt]\n`);
    assert.equal(await waitForStatus(t.pool, id, ["passed", "failed"]), "passed");
    await d.waitForMsg("build finished", { build: id });
    const out = await t.output(id);
    assert.match(out, /object greeting\.txt not placed: no object store is configured here \(\[objects\] path\)/);
    assert.match(out, /artifacts not collected: no artifact store is configured here \(\[artifacts\] path\)/);
  });

  it("a huge unusable payload leaves only a bounded prefix and its size on the dead list", async () => {
    const t = await suite.env();
    const d = await t.daemon();
    const redis = new Redis(suite.redis.port, "127.0.0.1");
    try {
      const huge = "{" + "x".repeat(10 * 1024 * 1024);
      await redis.lpush(`${t.queue}_os`, huge);
      const [entry] = await until("the dead entry", async () => {
        const items = await redis.lrange(`${t.queue}_dead`, 0, -1);
        return items.length ? items : undefined;
      });
      assert.ok(entry.length < DEAD_PAYLOAD_BYTES + 1000, `dead entry of ${entry.length} bytes`);
      const dead = JSON.parse(entry);
      assert.equal(dead.payload, huge.slice(0, DEAD_PAYLOAD_BYTES));
      assert.equal(dead.payload_bytes, huge.length);
      assert.equal(dead.truncated, true);
      assert.equal(dead.reason, `payload is ${huge.length} bytes, more than the ${MAX_PAYLOAD_BYTES} a payload may have`);
      assert.equal(await redis.llen(`${t.queue}_os`), 0);
      // And the worker goes on.
      const id = await t.submit(osManifest([["echo fine"]]));
      await d.waitForMsg("build finished", { build: id });
    } finally {
      redis.disconnect();
    }
  });
});

describe("dead-list payloads", () => {
  it("are kept whole when small, cut at a character boundary when large", () => {
    assert.deepEqual(deadPayload("{not json"), { payload: "{not json" });
    const wide = "é".repeat(DEAD_PAYLOAD_BYTES); // 2 bytes each
    const cut = deadPayload("x" + wide);
    assert.equal(cut.payload, "x" + "é".repeat(DEAD_PAYLOAD_BYTES / 2 - 1), "no half character at the end");
    assert.equal(cut.payload_bytes, 1 + 2 * DEAD_PAYLOAD_BYTES);
    assert.equal(cut.truncated, true);
    assert.equal(cut.payload_base64, undefined, "valid UTF-8 needs no copy");
  });

  it("keep bytes that are not UTF-8 exactly, in base64, beside their U+FFFD rendering", () => {
    const raw = Buffer.from([0x7b, 0xff, 0x7d]);
    assert.deepEqual(deadPayload(raw), { payload: "{\ufffd}", payload_base64: raw.toString("base64") });
    const long = Buffer.concat([Buffer.from([0xff]), Buffer.alloc(DEAD_PAYLOAD_BYTES, 0x61)]);
    const cut = deadPayload(long);
    assert.deepEqual(Buffer.from(cut.payload_base64!, "base64"), long.subarray(0, DEAD_PAYLOAD_BYTES));
    assert.equal(cut.payload_bytes, long.length);
  });
});
