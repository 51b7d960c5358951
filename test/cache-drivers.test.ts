// Build caches through every driver (./helpers/driver-fixtures.ts, the docker driver on Podman's
// Docker-compatible API too): a first build fills the cache
// and a second restores it, a failed build saves nothing, two builds saving one key at once leave
// one whole entry, a namespace never reaches another's entry, a damaged entry is a line and a cold
// build, an entry never writes outside the workspace, and the quota evicts the least recently used entry.
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import { assembleBuild, specifyBuild } from "../internal/assembly/assembly.js";
import { CacheStore } from "../internal/cache/store.js";
import { HEADER_BYTES } from "../internal/cache/format.js";
import { parseManifest } from "../internal/manifest/manifest.js";
import { runBuild } from "../internal/runner/runner.js";
import type { Status } from "../internal/runner/status.js";
import { collectingReporter } from "./helpers/qemu.js";
import { driverFixtures, type DriverFixture } from "./helpers/driver-fixtures.js";
import { requireService } from "./helpers/env.js";
import { hostileTar } from "./helpers/hostile-tar.js";

const log = pino({ level: "silent" });

interface Built {
  status: Status;
  /** Output of each job, by name. */
  out: (job: string) => string;
  jobStatus: (job: string) => Status | undefined;
}

/** The job every cache build runs: it says whether it found the cache, makes it when it did not, and checks what it found is whole. */
const FILL = [
  `if [ -f deps/sub/marker ]; then echo "WARM $(cat deps/sub/marker) $(cat ~/.pkgcache/home-file) $(cat nested/dir/n)"; [ "$(md5sum < deps/data)" = "$(cat deps/sum)" ] && echo WHOLE; else echo COLD; fi`,
  `if [ ! -f deps/sub/marker ]; then mkdir -p deps/sub ~/.pkgcache nested/dir && echo "$MARK" > deps/sub/marker && echo in-home > ~/.pkgcache/home-file && echo nested > nested/dir/n && dd if=/dev/urandom of=deps/data bs=1024 count=\${KB:-64} 2>/dev/null && md5sum < deps/data > deps/sum; fi`,
];

const CLEAN = "rm -rf deps nested .pkgcache";

for (const fixture of driverFixtures) {
  const skip = requireService(fixture.service, await fixture.missing());

  describe(`build caches: ${fixture.name}`, { skip, timeout: 20 * 60_000 }, () => {
    let root: string;
    let n = 0;

    before(async () => {
      await fixture.setup();
      root = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-cache-test-"));
    });
    after(async () => {
      await fixture.teardown();
      if (root) await fs.rm(root, { recursive: true, force: true });
    });

    /** One build of a manifest with `cache:` (`cacheYaml`) and one job running `commands`. */
    async function build(opts: { store: CacheStore; cache?: string; commands: string[]; namespace?: string; env?: Record<string, string> }): Promise<Built> {
      const text = [
        ...(opts.namespace ? [`namespace: ${opts.namespace}`] : []),
        `driver: ${JSON.stringify(fixture.manifest())}`,
        ...(opts.cache ? [`cache: ${opts.cache}`] : []),
        "stages: [work]",
        `jobs: [{stage: work, name: job, commands: ${JSON.stringify(opts.commands)}}]`,
      ].join("\n");
      const { manifest } = parseManifest(text);
      const label = `${fixture.name}-${process.pid}-${++n}`;
      const spec = specifyBuild(manifest, label, Object.entries(opts.env ?? {}).map(([key, value]) => ({ key, value })));
      const assembled = await assembleBuild(spec, { buildId: `cache-${label}`, drivers: fixture.config(), cache: { store: opts.store }, log });
      const reporter = collectingReporter();
      const { plan, driver, env, masks, objects, cache } = assembled;
      const status = await runBuild({ plan, driver, env, masks, objects, cache, reporter });
      return { status, out: (job) => reporter.jobs.get(job)?.output ?? "", jobStatus: (job) => reporter.jobs.get(job)?.status };
    }

    /** Empties what the ssh machine keeps between builds (its home is the workspace); the others start fresh anyway. */
    const clean = async (store: CacheStore) => {
      if (fixture.name === "ssh") await build({ store, commands: [CLEAN] });
    };

    const cacheOf = (key: string, policy = "pull-push") => `{key: ${JSON.stringify(key)}, paths: [deps, nested/dir, "~/.pkgcache"], policy: ${policy}}`;

    test("a first build fills the cache; a second restores it, and its job sees the files", async () => {
      const store = new CacheStore({ root: path.join(root, "fill") });
      await clean(store);
      const first = await build({ store, cache: "{key: \"deps-${GOVERSION}\", paths: [deps, absent, nested/dir, \"~/.pkgcache\", \"~/gone\"]}", commands: FILL, env: { GOVERSION: "1.22", MARK: "first" } });
      assert.equal(first.status, "passed", first.out("job"));
      assert.match(first.out("restore-cache"), /cache "deps-1.22": none saved yet; the build goes on without it/);
      assert.match(first.out("job"), /COLD/);
      assert.match(first.out("save-cache"), /^cache: absent, ~\/gone do not exist: not in the cache$/m);
      assert.match(first.out("save-cache"), /Saved cache "deps-1.22": 5 files, [\d.]+ KiB \([\d.]+ KiB stored\) in /);
      await clean(store);
      const second = await build({ store, cache: "{key: \"deps-${GOVERSION}\", paths: [deps, nested/dir, \"~/.pkgcache\"]}", commands: FILL, env: { GOVERSION: "1.22", MARK: "second" } });
      assert.equal(second.status, "passed", second.out("job"));
      assert.match(second.out("restore-cache"), /Restored cache "deps-1.22": 5 files, /);
      assert.match(second.out("job"), /WARM first in-home nested\nWHOLE/);
    });

    test("a failed build does not save its cache", async () => {
      const store = new CacheStore({ root: path.join(root, "failed") });
      await clean(store);
      const failed = await build({ store, cache: cacheOf("broken"), commands: [...FILL, "false"], env: { MARK: "x" } });
      assert.equal(failed.status, "failed");
      assert.equal(failed.jobStatus("save-cache"), "skipped");
      assert.equal(await store.open(undefined, "broken"), undefined, "nothing saved");
      // passed_with_failures saves: the failure was allowed.
    });

    test("two builds saving one key at once leave one whole entry", async () => {
      const store = new CacheStore({ root: path.join(root, "race") });
      await clean(store);
      const [a, b] = await Promise.all(["A", "B"].map((MARK) => build({ store, cache: cacheOf("race"), commands: FILL, env: { MARK, KB: "2048" } })));
      assert.equal(a.status, "passed");
      assert.equal(b.status, "passed");
      const names = await fs.readdir(path.join(root, "race", "none"));
      assert.deepEqual(names, ["race.cache"], "one entry, no leftover");
      await clean(store);
      const third = await build({ store, cache: cacheOf("race", "pull"), commands: FILL, env: { MARK: "C" } });
      assert.match(third.out("job"), /WARM [AB] in-home nested\nWHOLE/);
    });

    test("a namespace never reads another's entry, whatever key it writes", async () => {
      const store = new CacheStore({ root: path.join(root, "ns") });
      await clean(store);
      const alpha = await build({ store, namespace: "alpha", cache: cacheOf("shared"), commands: FILL, env: { MARK: "alpha" } });
      assert.match(alpha.out("save-cache"), /Saved cache "shared" of namespace alpha/);
      const alphaFile = store.entryPath("alpha", "shared");
      const before = await fs.readFile(alphaFile);
      for (const key of ["shared", "../ns-alpha/shared", "../ns-alpha/shared.cache", "/../../ns-alpha/shared"]) {
        await clean(store);
        const beta = await build({ store, namespace: "beta", cache: cacheOf(key), commands: FILL, env: { MARK: "beta" } });
        assert.match(beta.out("restore-cache"), /none saved yet/, key);
        assert.match(beta.out("job"), /COLD/, key);
        assert.match(beta.out("save-cache"), /Saved cache/, `${key}: ${beta.out("save-cache")}`);
      }
      assert.deepEqual(await fs.readFile(alphaFile), before, "alpha's entry untouched");
      const betaEntries = await fs.readdir(path.join(root, "ns", "ns-beta"));
      assert.equal(betaEntries.length, 4, betaEntries.join(", "));
      assert.deepEqual(await fs.readdir(path.join(root, "ns")), ["ns-alpha", "ns-beta"]);
    });

    test("a truncated or damaged entry is a line in the output and a cold build", async () => {
      const store = new CacheStore({ root: path.join(root, "damaged") });
      await clean(store);
      await build({ store, cache: cacheOf("d"), commands: FILL, env: { MARK: "one" } });
      const file = store.entryPath(undefined, "d");
      const size = (await fs.stat(file)).size;
      const damage: [string, () => Promise<void>, RegExp][] = [
        ["truncated", () => fs.truncate(file, Math.floor(size / 2)), /cache "d" not restored: the entry is cut short: \d+ bytes where its header says \d+; the build goes on without it/],
        [
          "corrupt",
          async () => {
            const h = await fs.open(file, "r+");
            const at = HEADER_BYTES + 100;
            const b = Buffer.alloc(1);
            await h.read(b, 0, 1, at);
            b[0] ^= 0xff;
            await h.write(b, 0, 1, at);
            await h.close();
          },
          /cache "d" not restored: the entry is damaged: its workspace section does not match its digest; the build goes on without it/,
        ],
      ];
      for (const [what, spoil, line] of damage) {
        await spoil();
        await clean(store);
        const cold = await build({ store, cache: cacheOf("d"), commands: FILL, env: { MARK: what } });
        assert.equal(cold.status, "passed", what);
        assert.match(cold.out("restore-cache"), line, what);
        assert.match(cold.out("job"), /COLD/, what);
        // The build saved a whole entry again.
        assert.ok(await store.open(undefined, "d").then((e) => e?.close().then(() => true)), what);
      }
    });

    test("an entry that tries to write outside the workspace writes nothing there: its symlinks are restored as links, what leads out is left out and named", async () => {
      const store = new CacheStore({ root: path.join(root, "hostile") });
      await clean(store);
      // On the host for os; in the container or machine for the others.
      const outside = fixture.name === "os" ? await fs.mkdtemp(path.join(root, "outside-")) : "/tmp";
      const marker = `ESCAPED${process.pid}`;
      // The Docker Engine refuses a whole archive with a relative symlink leading out of where it unpacks (docs/cache.md).
      const climbing = fixture.name !== "docker" && fixture.name !== "podman";
      const hostile = await hostileTar(outside, marker, climbing);
      await store.save(undefined, "hostile", [{ base: "workspace", paths: ["deps"], tar: async () => Readable.from([hostile.bytes]) }]);
      const check = [
        `[ "$(cat deps/ok)" = ok ] && [ "$(readlink deps/abs)" = ${outside} ] && ${climbing ? '[ "$(readlink deps/up)" = ../.. ] && ' : ""}[ "$(cat deps/after)" = after ] && echo BELONGS`,
        `found=$( (ls -A .. ${outside}; find . -name '*${marker}*') 2>/dev/null | grep ${marker} || true); [ -z "$found" ] && echo CONFINED || echo "ESCAPED: $found"`,
      ];
      const restored = await build({ store, cache: "{key: hostile, paths: [deps], policy: pull}", commands: check });
      assert.equal(restored.status, "passed", restored.out("job"));
      assert.match(restored.out("restore-cache"), new RegExp(`cache: ${hostile.refused.length} entries not restored, as they would be written outside the workspace: deps/abs/${marker}-through-abs \\(it is under a symlink`));
      assert.match(restored.out("restore-cache"), /Restored cache "hostile"/);
      assert.match(restored.out("job"), /^BELONGS$/m);
      assert.match(restored.out("job"), /^CONFINED$/m);
      if (fixture.name === "os") assert.deepEqual(await fs.readdir(outside), []);
    });

    test("the quota evicts the least recently used entry", async () => {
      // Each entry is 64 KiB of random bytes and a header: two fit, three do not.
      const store = new CacheStore({ root: path.join(root, "quota"), quota: 200 * 1024 });
      for (const key of ["k1", "k2"]) {
        await clean(store);
        await build({ store, cache: cacheOf(key), commands: FILL, env: { MARK: key } });
      }
      // k1 is used after k2 was saved: k2 is now the least recently used.
      await clean(store);
      const used = await build({ store, cache: cacheOf("k1", "pull"), commands: FILL });
      assert.match(used.out("restore-cache"), /Restored cache "k1"/);
      await clean(store);
      const third = await build({ store, cache: cacheOf("k3"), commands: FILL, env: { MARK: "k3" } });
      assert.match(third.out("save-cache"), /cache store over its quota: removed 1 least recently used entry/);
      assert.deepEqual((await fs.readdir(path.join(root, "quota", "none"))).sort(), ["k1.cache", "k3.cache"]);
    });
  });
}
