// Build caches per driver: a cache of --files small files (--kib KiB each; 20,000 × 10 KiB ≈ 200
// MiB by default) saved and restored through the driver, against `tar | gzip -1` doing the same
// copy by hand on the same machine; the worker's RSS growth meanwhile; and a job that makes the
// files only when they are missing, cold (make, save) against warm (restore, skip). On the os
// driver, gzip level 1 against the default (6).
// Usage: node build/bench/cache.js [--files N] [--kib N] [--drivers os,docker,ssh,qemu]
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { getDriver, type Driver } from "../internal/driver/driver.js";
import "../internal/driver/all.js";
import { LABEL_BUILD } from "../internal/driver/docker/docker.js";
import { CacheStore } from "../internal/cache/store.js";
import { driverFixtures, type DriverFixture } from "../test/helpers/driver-fixtures.js";
import { SSH_OPTIONS } from "../test/helpers/qemu.js";
import { numberArg } from "./lib/args.js";

const files = numberArg("files", 20_000);
const kib = numberArg("kib", 10);
const wanted = (process.argv[process.argv.indexOf("--drivers") + 1] ?? "").split(",").filter((d) => process.argv.includes("--drivers") && d);
const drivers = wanted.length ? wanted : ["os", "docker", "ssh"];
const log = pino({ level: "silent" });
const sink = () => new Writable({ write: (_c, _e, done) => done() });
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** Source-like files: text lines, different in each file, about `kib` KiB each; made only when deps/ is missing. */
const MAKE = `[ -d deps ] || { mkdir -p deps && cd deps && awk -v n=${files} -v kib=${kib} 'BEGIN { for (i = 0; i < n; i++) { f = sprintf("d%03d/f%05d.go", i % 200, i); if (i < 200) system("mkdir -p " sprintf("d%03d", i)); s = ""; while (length(s) < kib * 1024) s = s sprintf("func f%d_%d(x int) int { return x * %d + %d } // line %d\\n", i, length(s), i, length(s), length(s)); printf "%s", substr(s, 1, kib * 1024) > f; close(f) } }'; }`;

async function job(driver: Driver, script: string): Promise<number> {
  const t0 = performance.now();
  const r = await driver.execute({ name: "bench", script: `set -e\n${script}\n`, env: {}, output: sink(), signal: new AbortController().signal });
  if (r.exitCode !== 0) throw new Error(`job exited ${r.exitCode}: ${script.slice(0, 60)}`);
  return performance.now() - t0;
}

/** Runs `fn`, measuring its time and the worker's RSS growth (sampled). */
async function measured(fn: () => Promise<unknown>): Promise<{ ms: number; rssMiB: number }> {
  // What the step before left to write back is not this step's cost.
  await sh("sync");
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
  const t0 = performance.now();
  await fn();
  const ms = performance.now() - t0;
  clearInterval(timer);
  return { ms, rssMiB: (Math.max(peak, process.memoryUsage().rss) - before) / 1048576 };
}

function sh(command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", command], { stdio: ["ignore", "ignore", "inherit"] });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`exit ${code}: ${command}`))));
  });
}

/** The same copy by hand: `tar | gzip -1` out of the environment into `file`, and back. */
function byHand(fixture: DriverFixture, buildId: string, workspace: () => Promise<string>): { save(file: string): Promise<void>; restore(file: string): Promise<void> } {
  const into = async (): Promise<[string, string]> => {
    if (fixture.name === "os") {
      const ws = await workspace();
      return [`tar -cf - -C ${ws} deps`, `tar -xf - -C ${ws}`];
    }
    if (fixture.name === "docker") {
      const id = `$(docker ps -q --filter label=${LABEL_BUILD}=${buildId})`;
      return [`docker exec -w /workspace ${id} tar -cf - deps`, `docker exec -i -w /workspace ${id} tar -xf -`];
    }
    const [, port] = fixture.manifest().address?.split(":") ?? ["", String((fixture.manifest() as Record<string, string>).port)];
    const ssh = `ssh ${SSH_OPTIONS.join(" ")} -p ${port} root@127.0.0.1`;
    return [`${ssh} tar -cf - deps`, `${ssh} tar -xf -`];
  };
  return {
    save: async (file) => sh(`${(await into())[0]} | gzip -1 > ${file}`),
    restore: async (file) => sh(`gzip -dc < ${file} | ${(await into())[1]}`),
  };
}

async function bench(fixture: DriverFixture, dir: string): Promise<void> {
  await fixture.setup();
  const buildId = `bench-cache-${fixture.name}-${process.pid}`;
  const driver = (await getDriver(fixture.manifest().type)).create({ buildId, manifest: fixture.manifest(), config: fixture.config(), log });
  try {
    await driver.create(sink(), new AbortController().signal);
    await job(driver, "rm -rf deps");
    const workspace = async () => {
      let ws = "";
      await driver.execute({ name: "pwd", script: "pwd", env: {}, output: new Writable({ write: (c, _e, done) => ((ws += c), done()) }), signal: new AbortController().signal });
      return ws.trim();
    };
    const store = new CacheStore({ root: path.join(dir, fixture.name) });
    const section = { base: "workspace" as const, paths: ["deps"], tar: async () => (await driver.packTar!("workspace", ["deps"], new AbortController().signal)).archive };
    const cold = await job(driver, MAKE);
    const save = await measured(() => store.save(undefined, "k", [section]));
    const hand = byHand(fixture, buildId, workspace);
    const handFile = path.join(dir, `${fixture.name}-hand.tar.gz`);
    const handSave = await measured(() => hand.save(handFile));
    await job(driver, "rm -rf deps");
    const restore = await measured(async () => {
      const entry = await store.open(undefined, "k");
      try {
        for (const s of entry!.sections) await driver.unpackTar!(s.base, s.tar(), new AbortController().signal);
      } finally {
        await entry!.close();
      }
    });
    const warm = await job(driver, `${MAKE}\n[ $(find deps -type f | wc -l) -eq ${files} ]`);
    await job(driver, "rm -rf deps");
    const handRestore = await measured(() => hand.restore(handFile));
    await job(driver, `[ $(find deps -type f | wc -l) -eq ${files} ]`);
    const stored = (await fs.stat(store.entryPath(undefined, "k"))).size;
    const handBytes = (await fs.stat(handFile)).size;
    const row = (what: string, ours: { ms: number; rssMiB: number }, tar: { ms: number }) =>
      `  ${what.padEnd(8)} ${secs(ours.ms).padStart(8)} vs tar by hand ${secs(tar.ms).padStart(8)}  (${(ours.ms / tar.ms).toFixed(2)}×)  RSS +${ours.rssMiB.toFixed(1)} MiB`;
    console.log(`${fixture.name}: ${files} files of ${kib} KiB; stored ${(stored / 1048576).toFixed(1)} MiB (by hand ${(handBytes / 1048576).toFixed(1)} MiB)`);
    console.log(row("save", save, handSave));
    console.log(row("restore", restore, handRestore));
    console.log(`  two builds: cold (make the files ${secs(cold)} + save ${secs(save.ms)}) = ${secs(cold + save.ms)}; warm (restore ${secs(restore.ms)} + job ${secs(warm)}) = ${secs(restore.ms + warm)}`);
    if (fixture.name === "os") {
      const six = new CacheStore({ root: path.join(dir, "level6"), level: 6 });
      const level6 = await measured(() => six.save(undefined, "k", [section]));
      const bytes6 = (await fs.stat(six.entryPath(undefined, "k"))).size;
      console.log(`  gzip level 1: save ${secs(save.ms)}, ${(stored / 1048576).toFixed(1)} MiB; level 6 (the default): save ${secs(level6.ms)}, ${(bytes6 / 1048576).toFixed(1)} MiB`);
    }
  } finally {
    await driver.destroy();
    await fixture.teardown();
  }
}

const dir = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-bench-cache-"));
try {
  for (const name of drivers) {
    const fixture = driverFixtures.find((f) => f.name === name);
    if (!fixture) throw new Error(`no driver ${name}: os, docker, ssh or qemu`);
    const missing = await fixture.missing();
    if (missing) {
      console.log(`${name}: skipped: ${missing}`);
      continue;
    }
    await bench(fixture, dir);
  }
} finally {
  await fs.rm(dir, { recursive: true, force: true });
}
