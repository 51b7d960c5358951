// Build caches through the daemon: [cache] in worker.toml, the cache jobs recorded as rows, a
// second build warm, a failed build's save skipped, /metrics counting, `check` on [cache].
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { daemonSuite, servicesSkip } from "./helpers/daemon-suite.js";
import { runCli, until, waitForStatus } from "./helpers/services.js";

const manifest = (commands: string[]) =>
  [
    "namespace: acme",
    "driver: {type: os}",
    'cache: {key: "deps-${V}", paths: [deps]}',
    "stages: [test]",
    "jobs:",
    "  - stage: test",
    "    name: work",
    `    commands: ${JSON.stringify(commands)}`,
  ].join("\n") + "\n";

const WORK = ['if [ -f deps/made ]; then echo "WARM $(cat deps/made)"; else echo COLD; mkdir -p deps && echo "$V" > deps/made; fi'];

describe("build caches in the daemon", { skip: servicesSkip(), timeout: 5 * 60_000 }, () => {
  const suite = daemonSuite();

  it("restores in setup and saves after the last stage, records both jobs, skips the save of a failed build, and counts in /metrics", async () => {
    const t0 = await suite.env();
    const cacheDir = path.join(t0.dir, "cache");
    const t = await suite.env({ metrics: "127.0.0.1:0", extra: `[cache]\npath = ${JSON.stringify(cacheDir)}\n` });
    const d = await t.daemon();
    const port = (await d.waitForMsg("metrics listening")).port as number;

    const first = await t.submit(manifest(WORK), ["--env", "V=7"]);
    assert.equal(await waitForStatus(t.pool, first, ["passed", "failed"]), "passed", await t.output(first));
    assert.deepEqual((await t.jobs(first)).map((j) => [j.name, j.status]), [["create-driver", "passed"], ["restore-cache", "passed"], ["work", "passed"], ["save-cache", "passed"]]);
    assert.match(await t.output(first), /cache "deps-7" of namespace acme: none saved yet[^]*COLD[^]*Saved cache "deps-7" of namespace acme: 1 files/);

    const second = await t.submit(manifest(WORK), ["--env", "V=7"]);
    assert.equal(await waitForStatus(t.pool, second, ["passed", "failed"]), "passed");
    assert.match(await t.output(second), /Restored cache "deps-7" of namespace acme: 1 files[^]*WARM 7/);

    const failed = await t.submit(manifest([...WORK, "false"]), ["--env", "V=8"]);
    assert.equal(await waitForStatus(t.pool, failed, ["passed", "failed"]), "failed");
    assert.equal((await t.jobs(failed)).find((j) => j.name === "save-cache")?.status, "skipped");
    assert.deepEqual(await fs.readdir(path.join(cacheDir, "ns-acme")), ["deps-7.cache"], "the failed build saved nothing");

    const text = await until("the cache jobs counted", async () => {
      const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return /^djinn_cache_misses_total 2$/m.test(body) ? body : undefined;
    });
    assert.match(text, /^djinn_cache_hits_total 1$/m);
    const saved = Number(/^djinn_cache_saved_bytes_total (\d+)$/m.exec(text)?.[1]);
    const restored = Number(/^djinn_cache_restored_bytes_total (\d+)$/m.exec(text)?.[1]);
    const entry = (await fs.stat(path.join(cacheDir, "ns-acme", "deps-7.cache"))).size;
    assert.equal(restored, entry);
    assert.equal(saved, 2 * entry);

    const check = await runCli(["check", "-config", t.cfg.worker, "-driver", t.cfg.driver]);
    assert.match(check.stdout, new RegExp(`^ok   cache: ${cacheDir} is writable, 1 entry \\(`, "m"));
    assert.match(check.stdout, /^  cache\.path = /m);
  });
});
