// What the daemon loads before its first build: an idle worker holds only what waiting for builds
// needs (configuration, logging, PostgreSQL, Redis); the rest comes with the first build.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

const daemonModule = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), "../internal/worker/daemon.js")).href;

/** The CommonJS files and the built-in modules a fresh process holds once it has imported the daemon's module. */
function loadedByDaemon(): { files: string[]; builtins: string[] } {
  const script = `import { createRequire } from "node:module";
await import(${JSON.stringify(daemonModule)});
process.stdout.write(JSON.stringify({ files: Object.keys(createRequire(import.meta.url).cache), builtins: process.moduleLoadList }));`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

describe("an idle worker's modules", () => {
  test("the daemon loads pg and ioredis, but not the YAML parser, nor fetch's undici, http, http2 or zlib", () => {
    const { files, builtins } = loadedByDaemon();
    const packages = new Set(files.map((f) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(f)?.[1]).filter(Boolean));
    assert.ok(packages.has("pg") && packages.has("ioredis"), `pg and ioredis loaded: ${[...packages].join(", ")}`);
    // The manifest's parser comes with the first build (internal/worker/prepare.ts).
    assert.ok(!packages.has("yaml"), `yaml loaded by the idle daemon`);
    // pg looks for Cloudflare Workers when it loads: see internal/store/pg-navigator.ts.
    const unwanted = ["internal/deps/undici/undici", "http", "http2", "zlib"].filter((m) => builtins.includes(`NativeModule ${m}`));
    assert.deepEqual(unwanted, []);
  });
});
