// `djinn-worker run` against the raw tools doing the same work:
//  1. a one-job os build vs `sh` running the same commands (overhead ratio);
//  2. a job printing 1 GiB: the worker's peak RSS and throughput vs `yes | head -c 1G >/dev/null`.
// With --binary PATH (a release's bin/djinn-worker) or --sea (the bundle and single executable
// built here as `npm run release` builds them), the executable's one-job build too, against the
// start-up of a single executable that runs an empty script (built here) and of `node -e 0`.
// Usage: node build/bench/run.js [--gib N] [--repeat N] [--binary PATH | --sea]
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { flagArg, numberArg, stringArg } from "./lib/args.js";
import { goal } from "./lib/goal.js";
import { bundle, singleExecutable } from "../internal/release/bundle.js";
import { jobScript } from "../internal/runner/plan.js";

const cli = fileURLToPath(new URL("../cmd/djinn-worker.js", import.meta.url));
const gib = numberArg("gib", 1);
const repeat = numberArg("repeat", 10);
const binaryArg = stringArg("binary");
const buildSea = flagArg("sea");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-bench-run-"));

function manifest(commands: string[]): string {
  const file = path.join(dir, `m-${Math.random().toString(36).slice(2)}.yml`);
  fs.writeFileSync(file, `driver: {type: os}\nstages: [a]\njobs:\n- stage: a\n  commands:\n${commands.map((c) => `  - ${JSON.stringify(c)}`).join("\n")}\n`);
  return file;
}

function timed(cmd: string, args: string[]): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: "ignore", cwd: dir });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}`);
  return Number(process.hrtime.bigint() - t) / 1e6;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * Median time of each command over `repeat` rounds, after one warm-up round. The commands take
 * turns within each round, so a busy moment of a shared machine falls on all of them alike.
 */
function medians(commands: [string, string[]][]): number[] {
  for (const [cmd, args] of commands) timed(cmd, args);
  const times = commands.map(() => [] as number[]);
  for (let i = 0; i < repeat; i++) commands.forEach(([cmd, args], j) => times[j].push(timed(cmd, args)));
  return times.map(median);
}

/** The executables to time: the one given, or the release's built here, and an empty single executable to compare its start with. */
async function executables(): Promise<{ binary: string; empty?: string } | undefined> {
  if (!binaryArg && !buildSea) return undefined;
  const work = path.join(dir, "sea");
  fs.mkdirSync(work);
  let binary = binaryArg ? path.resolve(binaryArg) : "";
  if (!binary) {
    const script = path.join(work, "djinn-worker.cjs");
    await bundle(fileURLToPath(new URL("../cmd/main.js", import.meta.url)), script, "bench");
    binary = path.join(work, "djinn-worker");
    singleExecutable(script, binary, work);
  }
  // The same node binary with an empty script: what any single executable costs to start.
  const empty = path.join(dir, "empty");
  fs.mkdirSync(empty);
  fs.writeFileSync(path.join(empty, "empty.cjs"), "\n");
  try {
    singleExecutable(path.join(empty, "empty.cjs"), path.join(empty, "empty"), empty);
    return { binary, empty: path.join(empty, "empty") };
  } catch (err) {
    process.stderr.write(`bench: cannot build an empty single executable (${(err as Error).message}); comparing with node -e 0 only\n`);
    return { binary };
  }
}

/** Runs a command and samples its peak RSS (VmHWM) until it exits. */
async function peakRss(cmd: string, args: string[]): Promise<{ ms: number; peakMb: number }> {
  const t = process.hrtime.bigint();
  const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "inherit"], cwd: dir });
  let peak = 0;
  const sample = () => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${child.pid}/status`, "utf8"));
      if (m) peak = Math.max(peak, Number(m[1]));
    } catch {
      // Exited between samples.
    }
  };
  const timer = setInterval(sample, 50);
  const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => (sample(), resolve(c))));
  clearInterval(timer);
  if (code !== 0) throw new Error(`${cmd} exited ${code}`);
  return { ms: Number(process.hrtime.bigint() - t) / 1e6, peakMb: peak / 1024 };
}

async function main() {
  const jobCommands = ["echo hello", "ls -la >/dev/null", "true"];
  const m = manifest(jobCommands);
  const script = path.join(dir, "same.sh");
  fs.writeFileSync(script, jobScript(jobCommands));
  const runArgs = ["run", m, "--artifacts", path.join(dir, "a")];
  // Built before anything is timed, so that every command is timed in the same rounds.
  const exe = await executables();
  const timedCommands: [string, string[]][] = [
    [process.execPath, [cli, ...runArgs]],
    ["sh", [script]],
    [process.execPath, ["-e", "0"]],
  ];
  if (exe) timedCommands.push([exe.binary, runArgs]);
  if (exe?.empty) timedCommands.push([exe.empty, []]);
  const [worker, sh, node, binary, empty] = medians(timedCommands);
  console.log(`one-job os build (median of ${repeat}): djinn-worker run ${worker.toFixed(1)} ms, sh ${sh.toFixed(1)} ms, bare node start ${node.toFixed(1)} ms`);
  console.log(`  overhead: ${(worker - sh).toFixed(1)} ms per build; ratio ${(worker / sh).toFixed(1)}x sh (of which node start-up ${node.toFixed(1)} ms)`);
  console.log(`  ${goal("within bare node start-up + 60 ms", worker <= node + 60)}: +${(worker - node).toFixed(1)} ms`);
  if (exe) {
    const base = empty ?? node;
    const baseName = empty === undefined ? "node -e 0" : "an empty single executable";
    console.log(`single executable ${binaryArg ?? "(bundle and SEA built here)"} (same rounds): run ${binary.toFixed(1)} ms; start of ${empty === undefined ? "" : `an empty single executable ${empty.toFixed(1)} ms, `}node -e 0 ${node.toFixed(1)} ms`);
    console.log(`  ${goal(`within the start-up of ${baseName} + 60 ms`, binary <= base + 60)}: +${(binary - base).toFixed(1)} ms (+${(binary - node).toFixed(1)} ms over node -e 0)`);
  }

  const bytes = Math.round(gib * 1024 ** 3);
  const big = manifest([`yes | head -c ${bytes}`]);
  const raw = timed("sh", ["-c", `yes | head -c ${bytes} >/dev/null`]);
  const run = await peakRss(process.execPath, [cli, "run", big, "--artifacts", path.join(dir, "a")]);
  const masked = await peakRss(process.execPath, [cli, "run", big, "--artifacts", path.join(dir, "a"), "--secret", "S=y\ny\ny\nnot-there"]);
  const mb = bytes / 1024 ** 2;
  console.log(`job printing ${gib} GiB: raw ${raw.toFixed(0)} ms (${(mb / (raw / 1000)).toFixed(0)} MiB/s)`);
  console.log(`  djinn-worker run: ${run.ms.toFixed(0)} ms (${(mb / (run.ms / 1000)).toFixed(0)} MiB/s, ${(run.ms / raw).toFixed(2)}x raw), peak RSS ${run.peakMb.toFixed(0)} MB (goal < 150 MB)`);
  console.log(`  with a masked value: ${masked.ms.toFixed(0)} ms (${(mb / (masked.ms / 1000)).toFixed(0)} MiB/s), peak RSS ${masked.peakMb.toFixed(0)} MB`);
  fs.rmSync(dir, { recursive: true, force: true });
}

await main();
