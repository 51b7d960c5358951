// The release: start time of `djinn-worker -version` from the single executable against
// `node build/cmd/djinn-worker.js -version`, a one-job os build the same way, and the size of
// what an operator downloads. Builds the release first (npm run release's script).
// Usage: node build/bench/release.js [--repeat N]
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { numberArg } from "./lib/args.js";

const repo = fileURLToPath(new URL("../../", import.meta.url));
const cli = path.join(repo, "build/cmd/djinn-worker.js");
const repeat = numberArg("repeat", 20);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-bench-release-"));

function timed(cmd: string, args: string[]): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: "ignore", cwd: dir });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}`);
  return Number(process.hrtime.bigint() - t) / 1e6;
}

/** Median and 90th percentile of `repeat` runs, after one warm-up run. */
function sample(cmd: string, args: string[]): { p50: number; p90: number } {
  timed(cmd, args);
  const xs = Array.from({ length: repeat }, () => timed(cmd, args)).sort((a, b) => a - b);
  return { p50: xs[Math.floor(xs.length / 2)], p90: xs[Math.min(xs.length - 1, Math.floor(xs.length * 0.9))] };
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

function main(): void {
  const built = spawnSync(process.execPath, [path.join(repo, "build/internal/release/release.js")], { cwd: repo, encoding: "utf8" });
  if (built.status !== 0) throw new Error(`release failed: ${built.stderr}`);
  const version = (JSON.parse(fs.readFileSync(path.join(repo, "package.json"), "utf8")) as { version: string }).version;
  const arch = execFileSync("dpkg", ["--print-architecture"], { encoding: "utf8" }).trim();
  const name = `djinn-worker-${version}-linux-${arch}`;
  const tarball = path.join(repo, "release", `${name}.tar.gz`);
  const deb = path.join(repo, "release", `djinn-worker_${version}_${arch}.deb`);
  execFileSync("tar", ["-xzf", tarball, "-C", dir]);
  const bin = path.join(dir, name, "bin", "djinn-worker");

  console.log(`sizes: tarball ${mib(fs.statSync(tarball).size)}, .deb ${mib(fs.statSync(deb).size)}, bin/djinn-worker ${mib(fs.statSync(bin).size)} unpacked`);

  const release = sample(bin, ["-version"]);
  const node = sample(process.execPath, [cli, "-version"]);
  console.log(`-version (${repeat} runs): release binary p50 ${release.p50.toFixed(0)} ms, p90 ${release.p90.toFixed(0)} ms; node build p50 ${node.p50.toFixed(0)} ms, p90 ${node.p90.toFixed(0)} ms; ratio ${(release.p50 / node.p50).toFixed(2)}`);

  const manifest = path.join(dir, "m.yml");
  fs.writeFileSync(manifest, "driver: {type: os}\nstages: [a]\njobs:\n- stage: a\n  commands: [true]\n");
  const runArgs = ["run", manifest, "--artifacts", path.join(dir, "a")];
  const releaseRun = sample(bin, runArgs);
  const nodeRun = sample(process.execPath, [cli, ...runArgs]);
  console.log(`run, one-job os build (${repeat} runs): release binary p50 ${releaseRun.p50.toFixed(0)} ms; node build p50 ${nodeRun.p50.toFixed(0)} ms; ratio ${(releaseRun.p50 / nodeRun.p50).toFixed(2)}`);
}

try {
  main();
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
