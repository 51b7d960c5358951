// Build caches without a driver: keys and names, the manifest's `cache:`, the plan's jobs, the
// entry format, the file store (whole entries under concurrent saves, limits, quota, damage),
// [cache] in worker.toml, the metrics and the `cache` command.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, describe, test } from "node:test";
import { cacheSections, defaultKey, encodeName, entryName, expandKey } from "../internal/cache/key.js";
import { HEADER_BYTES, TarCounter } from "../internal/cache/format.js";
import { CacheDamagedError, CacheLimitError } from "../internal/cache/errors.js";
import { CacheStore, type SectionSource } from "../internal/cache/store.js";
import { ConfigError, loadWorkerConfig } from "../internal/config/config.js";
import { parseManifest } from "../internal/manifest/manifest.js";
import { Metrics } from "../internal/metrics/metrics.js";
import { planBuild } from "../internal/runner/plan.js";
import { specifyBuild } from "../internal/assembly/assembly.js";
import { cliPath } from "./helpers/env.js";
import { tarOf } from "./helpers/one-file-tar.js";

const dir = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-cache-unit-"));
after(() => fs.rm(dir, { recursive: true, force: true }));
let n = 0;
const freshRoot = () => path.join(dir, `store-${++n}`);

const section = (bytes: Buffer): SectionSource => ({ base: "workspace", paths: ["deps"], tar: async () => tarOf(bytes) });

async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe("cache keys and names", () => {
  test("a key is one file name in its namespace's folder, whatever it holds", () => {
    for (const key of ["../other", "../../etc/passwd", "/abs", ".", "..", ".hidden", "a/b", "x\0y", "ns-alpha/../k"]) {
      const name = entryName("beta", key);
      const [folder, file, ...rest] = name.split("/");
      assert.equal(folder, "ns-beta", key);
      assert.equal(rest.length, 0, `${key} → ${name}`);
      assert.ok(!file.startsWith("."), `${key} → ${name}`);
    }
    assert.equal(entryName(undefined, "deps-1.22"), "none/deps-1.22.cache");
    assert.equal(entryName("acme", "../other"), "ns-acme/%2E.%2Fother.cache");
    // A namespace is encoded too: no namespace reaches another's folder or "none".
    assert.equal(entryName("../none", "k").split("/").length, 2);
    assert.notEqual(entryName("none", "k"), entryName(undefined, "k"));
  });

  test("a very long key is cut and told apart by a digest of the whole", () => {
    const a = encodeName("k".repeat(500) + "a");
    const b = encodeName("k".repeat(500) + "b");
    assert.ok(a.length <= 160 && b.length <= 160);
    assert.notEqual(a, b);
  });

  test("variables expand as a shell would: ${V}, $V, $$; an unset one is empty", () => {
    assert.equal(expandKey("deps-${GOVERSION}-$OS-$$-${NOPE}x", { GOVERSION: "1.22", OS: "linux" }), "deps-1.22-linux-$-x");
    assert.equal(defaultKey({ type: "docker", image: "golang:1.22" }), "default-docker-golang:1.22");
    assert.equal(defaultKey({ type: "os" }), "default-os");
    assert.deepEqual(cacheSections(["vendor/", "~/.cache/pip", "./node_modules", "vendor"]), [
      { base: "workspace", paths: ["vendor", "node_modules"] },
      { base: "home", paths: [".cache/pip"] },
    ]);
  });
});

describe("the manifest's cache and the plan", () => {
  const base = "driver: {type: os}\nstages: [build]\njobs: [{stage: build, commands: [make]}]\n";
  test("cache: is read with its defaults, and the plan gets restore-cache after the sources and a save-cache stage last", () => {
    const { manifest } = parseManifest(`${base}sources: [https://example.com/a.git]\ncache:\n  paths: [vendor, ~/.cache/pip]\n`);
    assert.deepEqual(manifest.cache, { paths: ["vendor", "~/.cache/pip"], policy: "pull-push" });
    const plan = planBuild(manifest, "7");
    assert.deepEqual(plan.stages[0].jobs.map((j) => j.name), ["create-driver", "clone.1", "restore-cache"]);
    assert.deepEqual(plan.stages.map((s) => s.name), ["setup - #7", "build", "cache - #7"]);
    assert.deepEqual(plan.stages[2].jobs.map((j) => [j.name, j.cache]), [["save-cache", "save"]]);
  });

  test("a key holding a masked value is not used (it would be a file name, listed as it is)", () => {
    const { manifest } = parseManifest(`${base}cache: {key: "k-\${TOKEN}", paths: [v]}\n`);
    const masked = specifyBuild(manifest, "1", [{ key: "TOKEN", value: "hunter2-s3cret", masked: true }]);
    assert.match(masked.cache?.refused ?? "", /its key holds a masked value/);
    const plain = specifyBuild(manifest, "1", [{ key: "TOKEN", value: "hunter2-s3cret" }]);
    assert.equal(plain.cache?.key, "k-hunter2-s3cret");
    assert.equal(plain.cache?.refused, undefined);
  });

  test("policy pull only restores, push only saves; no cache: no cache jobs", () => {
    const names = (text: string) => planBuild(parseManifest(text).manifest, "1").stages.flatMap((s) => s.jobs.map((j) => j.name));
    assert.deepEqual(names(`${base}cache: {paths: [v], policy: pull}\n`), ["create-driver", "restore-cache", "build.1"]);
    assert.deepEqual(names(`${base}cache: {paths: [v], policy: push}\n`), ["create-driver", "build.1", "save-cache"]);
    assert.deepEqual(names(base), ["create-driver", "build.1"]);
  });

  test("a path outside the workspace or home, a bad policy, no paths: the field and the line", () => {
    const refused = (cache: string) => {
      try {
        parseManifest(`${base}cache:\n${cache}`);
      } catch (err) {
        return (err as Error).message;
      }
      assert.fail(`accepted ${cache}`);
    };
    assert.match(refused("  paths: [/etc]\n"), /^line 5: cache\.paths\[0\]: "\/etc" is absolute/);
    assert.match(refused("  paths: [a, ../up]\n"), /^line 5: cache\.paths\[1\]: "\.\.\/up" reaches outside the workspace or home/);
    assert.match(refused("  paths: [\"~/\"]\n"), /cache\.paths\[0\]: "~\/" names the whole workspace or home/);
    assert.match(refused("  paths: [a]\n  policy: sometimes\n"), /^line 6: cache\.policy: must be one of pull-push, pull, push, got "sometimes"/);
    assert.match(refused("  key: deps\n"), /cache\.paths: required/);
    assert.match(refused("  paths: [a]\n  key: ''\n"), /cache\.key: must not be empty/);
    assert.throws(() => parseManifest("driver: {type: os}\nstages: [a, 'cache - #1']\njobs: [{stage: a, commands: [true]}]\n"), /stages\[1\]: stage names starting "cache - #" are reserved for the cache stage/);
  });
});

describe("the entry format", () => {
  test("the tar counter counts regular files from their headers, however the stream is cut", async () => {
    const work = path.join(dir, "tarwork");
    await fs.mkdir(path.join(work, "d", "e"), { recursive: true });
    await fs.writeFile(path.join(work, "d", "a"), randomBytes(1000));
    await fs.writeFile(path.join(work, "d", "e", "x".repeat(150)), "long name");
    await fs.writeFile(path.join(work, "d", "empty"), "");
    await fs.symlink("a", path.join(work, "d", "link"));
    const r = spawnSync("tar", ["-c", "-f", "-", "-C", work, "d"]);
    for (const piece of [1, 7, 512, 100_000]) {
      const counter = new TarCounter();
      const chunks: Buffer[] = [];
      for (let at = 0; at < r.stdout.length; at += piece) chunks.push(r.stdout.subarray(at, at + piece));
      const passed = await readAll(Readable.from(chunks).pipe(counter));
      assert.equal(counter.files, 3, `pieces of ${piece}`);
      assert.equal(counter.bytes, r.stdout.length);
      assert.ok(passed.equals(r.stdout), "passed on unchanged");
    }
  });
});

describe("the file store", () => {
  test("saves of one key at once, from stores sharing the folder, leave one whole entry; a reader never sees half of one", async () => {
    const root = freshRoot();
    const contents = Array.from({ length: 6 }, () => randomBytes(3 << 20));
    const digests = new Set(contents.map((c) => createHash("sha256").update(c).digest("hex")));
    let reading = true;
    let reads = 0;
    const reader = (async () => {
      const store = new CacheStore({ root });
      while (reading) {
        const entry = await store.open("ns", "k"); // a damaged entry would throw
        if (entry) {
          reads++;
          const tar = await readAll(entry.sections[0].tar());
          await entry.close();
          const size = parseInt(tar.subarray(124, 136).toString().replace(/\0.*$/s, ""), 8);
          assert.ok(digests.has(createHash("sha256").update(tar.subarray(512, 512 + size)).digest("hex")), "a whole save");
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    await Promise.all(contents.map((c) => new CacheStore({ root }).save("ns", "k", [section(c)])));
    reading = false;
    await reader;
    assert.deepEqual(await fs.readdir(path.join(root, "ns-ns")), ["k.cache"], "one entry, nothing left aside");
    const entry = await new CacheStore({ root }).open("ns", "k");
    const tar = await readAll(entry!.sections[0].tar());
    await entry!.close();
    assert.ok(digests.has(createHash("sha256").update(tar.subarray(512, 512 + (3 << 20))).digest("hex")));
    assert.ok(reads >= 0);
  });

  test("an entry over the limit is not saved, and the one before it stays", async () => {
    const store = new CacheStore({ root: freshRoot(), limit: 64 * 1024 });
    await store.save(undefined, "k", [section(Buffer.from("small"))]);
    await assert.rejects(store.save(undefined, "k", [section(randomBytes(1 << 20))]), CacheLimitError);
    assert.deepEqual(await fs.readdir(path.join(store.root, "none")), ["k.cache"]);
    const entry = await store.open(undefined, "k");
    assert.match((await readAll(entry!.sections[0].tar())).toString("latin1"), /small/);
    await entry!.close();
  });

  test("paths too many for the entry's header are refused before anything is packed", async () => {
    const store = new CacheStore({ root: freshRoot() });
    let packed = false;
    const paths = Array.from({ length: 200 }, (_, i) => `vendor/${"p".repeat(60)}${i}`);
    await assert.rejects(store.save(undefined, "k", [{ base: "workspace", paths, tar: async () => ((packed = true), tarOf(Buffer.from("x"))) }]), /the entry's header needs \d+ bytes, more than the 8192 it has \(too many or too long paths\)/);
    assert.equal(packed, false);
    assert.deepEqual(await fs.readdir(store.root).catch(() => []), []);
  });

  test("a cut, damaged or foreign entry is a CacheDamagedError saying which", async () => {
    const store = new CacheStore({ root: freshRoot() });
    await store.save(undefined, "k", [section(randomBytes(10_000))]);
    const file = store.entryPath(undefined, "k");
    const whole = await fs.readFile(file);
    const cases: [Buffer, RegExp][] = [
      [whole.subarray(0, whole.length - 1), /cut short: \d+ bytes where its header says \d+/],
      [whole.subarray(0, 100), /cut short \(100 bytes, less than its header\)/],
      [Buffer.concat([whole, Buffer.from("x")]), /damaged: \d+ bytes where its header says/],
      [Buffer.from(whole).fill(0x41, 0, 20), /not a cache entry/],
      [(() => { const b = Buffer.from(whole); b[HEADER_BYTES + 50] ^= 1; return b; })(), /its workspace section does not match its digest/],
    ];
    for (const [bytes, why] of cases) {
      await fs.writeFile(file, bytes);
      await assert.rejects(store.open(undefined, "k"), (err: Error) => err instanceof CacheDamagedError && why.test(err.message));
    }
  });

  test("over the quota, the least recently used entries go first; namespaces are listed apart", async () => {
    const store = new CacheStore({ root: freshRoot(), quota: 3 * (HEADER_BYTES + 40_000) });
    const save = (ns: string, key: string) => store.save(ns, key, [section(randomBytes(30_000))]);
    await save("a", "one");
    await save("b", "one");
    await save("a", "two");
    // Saved in this order (told apart here: file times may be coarser than the saves are apart)...
    const ago = (s: number) => new Date(Date.now() - s * 1000);
    for (const [ns, key, s] of [["a", "one", 300], ["b", "one", 200], ["a", "two", 100]] as const) await fs.utimes(store.entryPath(ns, key), ago(s), ago(s));
    // ...and a/one used since: b/one is now the least recently used.
    const used = await store.open("a", "one");
    await used!.close();
    const saved = await save("a", "three");
    assert.deepEqual(saved.evicted, [path.join("ns-b", "one.cache")]);
    assert.deepEqual((await store.list("a")).map((e) => e.key).sort(), ["one", "three", "two"]);
    assert.deepEqual(await store.list("b"), []);
  });

  test("a leftover of a save that never finished is removed once a day old", async () => {
    const store = new CacheStore({ root: freshRoot() });
    await store.save(undefined, "k", [section(Buffer.from("x"))]);
    const stale = path.join(store.root, "none", ".tmp-0123456789abcdef");
    const fresh = path.join(store.root, "none", ".tmp-fedcba9876543210");
    await fs.writeFile(stale, "half");
    await fs.writeFile(fresh, "being written");
    const old = new Date(Date.now() - 25 * 3600_000);
    await fs.utimes(stale, old, old);
    assert.equal((await store.list()).length, 1);
    assert.deepEqual((await fs.readdir(path.join(store.root, "none"))).sort(), [".tmp-fedcba9876543210", "k.cache"]);
  });
});

describe("[cache] in worker.toml, metrics and the cache command", () => {
  const toml = async (text: string) => {
    const file = path.join(dir, `worker-${++n}.toml`);
    await fs.writeFile(file, text);
    return file;
  };

  test("[cache] is read with its defaults; a limit over the quota names file, key and line", async () => {
    const ok = loadWorkerConfig(await toml('[cache]\npath = "/var/cache/djinn"\n'));
    assert.deepEqual(ok.cache, { type: "file", path: "/var/cache/djinn", limit: 0, quota: 0 });
    const file = await toml('[cache]\npath = "/c"\nquota = 1000\nlimit = 5000\n');
    assert.throws(() => loadWorkerConfig(file), (err: Error) => err instanceof ConfigError && err.message === `${file}:4: cache.limit: 5000 is more than cache.quota (1000): no entry that large could be kept`);
    const neg = await toml('[cache]\npath = "/c"\nquota = -1\n');
    assert.throws(() => loadWorkerConfig(neg), (err: Error) => err.message === `${neg}:3: cache.quota: must be 0 or more, got -1`);
    const noPath = await toml("[cache]\nquota = 1\n");
    assert.throws(() => loadWorkerConfig(noPath), (err: Error) => err.message === `${noPath}:1: cache.path: required in [cache] but missing`);
  });

  test("/metrics counts cache hits, misses and bytes restored and saved", async () => {
    const m = new Metrics();
    m.cache.hit(1000);
    m.cache.hit(24);
    m.cache.miss();
    m.cache.saved(4096);
    const text = await m.registry.metrics();
    assert.match(text, /^djinn_cache_hits_total 2$/m);
    assert.match(text, /^djinn_cache_misses_total 1$/m);
    assert.match(text, /^djinn_cache_restored_bytes_total 1024$/m);
    assert.match(text, /^djinn_cache_saved_bytes_total 4096$/m);
  });

  test("cache list shows the entries, cache rm removes one or those unused for a while", async () => {
    const root = freshRoot();
    const store = new CacheStore({ root });
    await store.save("acme", "deps-1", [section(randomBytes(100))]);
    await store.save("acme", "old", [section(randomBytes(100))]);
    await store.save(undefined, "top", [section(randomBytes(100))]);
    const long = new Date(Date.now() - 48 * 3600_000);
    await fs.utimes(store.entryPath("acme", "old"), long, long);
    const file = await toml(`[cache]\npath = ${JSON.stringify(root)}\n`);
    const cli = (...args: string[]) => spawnSync(process.execPath, [cliPath, "cache", ...args, "-config", file], { encoding: "utf8", timeout: 60_000 });
    const listed = cli("list");
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, /^NAMESPACE +KEY +SIZE +FILES +LAST USED\n/);
    assert.match(listed.stdout, /^acme +deps-1 +[\d.]+ KiB +1 +\d{4}-/m);
    assert.match(listed.stdout, /^- +top /m);
    assert.match(listed.stdout, /3 entries, /);
    assert.doesNotMatch(cli("list", "--namespace", "acme").stdout, /top/);
    const older = cli("rm", "--older-than", "24h");
    assert.match(older.stdout, /removed ns-acme\/old\.cache\n1 entry not used for 24h removed/);
    assert.equal(cli("rm", "deps-1", "--namespace", "acme").stdout, 'removed cache "deps-1" of namespace acme\n');
    const missing = cli("rm", "deps-1", "--namespace", "acme");
    assert.equal(missing.status, 2);
    assert.equal(missing.stderr, 'djinn-worker: no cache entry "deps-1" of namespace acme\n');
    assert.equal(cli("rm").status, 2);
    const none = spawnSync(process.execPath, [cliPath, "cache", "list", "-config", await toml("")], { encoding: "utf8" });
    assert.equal(none.status, 1);
    assert.match(none.stderr, /\[cache\] section is required/);
  });
});

describe("a build stopped during a cache job", () => {
  test("killed while saving or restoring: the transfer stops, the build is killed, nothing is left half written", async () => {
    const { assembleBuild } = await import("../internal/assembly/assembly.js");
    const { runBuild } = await import("../internal/runner/runner.js");
    const { defaultDriverConfig } = await import("../internal/config/config.js");
    const { collectingReporter } = await import("./helpers/qemu.js");
    const pino = (await import("pino")).default;
    const store = new CacheStore({ root: freshRoot() });
    const yaml = "driver: {type: os}\ncache: {key: k, paths: [deps]}\nstages: [s]\njobs: [{stage: s, commands: ['mkdir -p deps && head -c 20000000 /dev/urandom > deps/big']}]\n";
    const run = async (killAt?: string) => {
      const kill = new AbortController();
      const spec = specifyBuild(parseManifest(yaml).manifest, `kill-${++n}`, []);
      const b = await assembleBuild(spec, { buildId: `cache-kill-${n}`, drivers: defaultDriverConfig(), cache: { store }, log: pino({ level: "silent" }) });
      const reporter = collectingReporter();
      const started = reporter.jobStarted.bind(reporter);
      reporter.jobStarted = (job) => {
        if (job.name === killAt) kill.abort();
        return started(job);
      };
      const status = await runBuild({ plan: b.plan, driver: b.driver, env: b.env, masks: b.masks, objects: b.objects, cache: b.cache, reporter, signal: kill.signal });
      return { status, out: (job: string) => reporter.jobs.get(job)?.output ?? "" };
    };
    const killedSaving = await run("save-cache");
    assert.equal(killedSaving.status, "killed");
    assert.equal(killedSaving.out("save-cache"), "build killed\n");
    assert.deepEqual(await fs.readdir(path.join(store.root, "none")).catch(() => []), [], "no entry, nothing aside");
    assert.equal((await run()).status, "passed");
    const killedRestoring = await run("restore-cache");
    assert.equal(killedRestoring.status, "killed");
    assert.equal(killedRestoring.out("restore-cache"), "build killed\n");
    assert.deepEqual(await fs.readdir(path.join(store.root, "none")), ["k.cache"], "the entry stays whole");
    assert.ok(await store.open(undefined, "k").then((e) => e?.close().then(() => true)));
  });
});
