// A producer of its own, in Python, written from docs/queue.md alone (test/fixtures/producer.py):
// the worker runs what it submits, with the manifest's env under its variables, a masked
// variable kept out of the output, an object placed and a key installed.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { osManifest, servicesSkip, daemonSuite } from "./helpers/daemon-suite.js";
import { fixtures, requireService } from "./helpers/env.js";
import { CRYPTO_BLOCK, waitForStatus } from "./helpers/services.js";

// Debian's python3 with its packages (a python3 earlier on PATH may lack them).
const python = "/usr/bin/python3";
const modules = spawnSync(python, ["-c", "import psycopg2, redis, yaml, cryptography.hazmat.primitives.ciphers.aead"], { encoding: "utf8" });
const skip =
  servicesSkip() ||
  requireService("python3", modules.status === 0 ? undefined : `${python} cannot import its modules (apt-get install python3-psycopg2 python3-redis python3-yaml python3-cryptography): ${modules.stderr ?? modules.error}`);

const SECRET = "s3cret-value-123";

describe("a producer written from docs/queue.md", { skip }, () => {
  const suite = daemonSuite();

  it("submits a build with a masked variable, a key and an object, and the worker runs it", async () => {
    const t = await suite.env();
    await fs.writeFile(path.join(t.dir, "objects", "data.txt"), "object contents\n");
    const key = path.join(t.dir, "deploy.key");
    await fs.writeFile(key, "-----BEGIN KEY-----\nmaterial-line-one-abcdef\n-----END KEY-----\n");
    const manifest = path.join(t.dir, "build.yml");
    const text = osManifest([
      [
        'echo "greeting=$GREETING override=$OVERRIDE"',
        'echo "token=$API_TOKEN"',
        `test "$API_TOKEN" = "${SECRET}"`,
        "cat data.txt",
        "stat -c %a .ssh/deploy",
        "grep -c material-line-one .ssh/deploy",
      ],
    ]).replace("stages:", "env:\n  - GREETING=from-manifest\n  - OVERRIDE=manifest\nobjects:\n  - data.txt => data.txt\nstages:");
    await fs.writeFile(manifest, text);
    const d = await t.daemon();
    const r = spawnSync(
      python,
      [
        path.join(fixtures, "producer.py"),
        ...["--postgres", suite.postgres.addr, "--database", (await t.pool.query("SELECT current_database() AS db")).rows[0].db],
        ...["--redis", suite.redis.addr, "--queue", t.queue, "--block", CRYPTO_BLOCK, "--manifest", manifest],
        ...["--var", "OVERRIDE=row", "--secret", `API_TOKEN=${SECRET}`, "--key", `deploy=${key}`],
      ],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    const id = Number(r.stdout.trim());
    assert.ok(id > 0, r.stdout);
    assert.equal(await waitForStatus(t.pool, id, ["passed", "failed"]), "passed", await t.output(id));
    const out = await t.output(id);
    assert.match(out, /^greeting=from-manifest override=row$/m, "the manifest's env, a variable row over it");
    assert.match(out, /^token=xxxxxx$/m);
    assert.match(out, /^object contents$/m);
    assert.match(out, /^600$/m);
    assert.ok(!out.includes(SECRET) && !out.includes("material-line-one-abcdef"), out);
    assert.deepEqual((await t.jobs(id)).map((j) => [j.name, j.status]), [["create-driver", "passed"], ["job1", "passed"]]);
    const rows = await t.pool.query(`SELECT value, value_encrypted FROM variables WHERE build_id = $1 AND masked`, [id]);
    assert.equal(rows.rows[0].value, null);
    assert.ok(!Buffer.from(rows.rows[0].value_encrypted).includes(SECRET));
    const logged = d.raw.join("\n");
    assert.ok(!logged.includes(SECRET));
  });
});
