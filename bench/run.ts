// `djinn-worker run` against the raw tools doing the same work:
//  1. a one-job os build vs `sh` running the same commands (overhead ratio);
//  2. a job printing 1 GiB: the worker's peak RSS and throughput vs `yes | head -c 1G >/dev/null`.
// Usage: node build/bench/run.js [--gib N] [--repeat N]
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { numberArg } from "./lib/args.js";
import { goal } from "./lib/goal.js";
import { jobScript } from "../internal/runner/plan.js";

const cli = fileURLToPath(new URL("../cmd/djinn-worker.js", import.meta.url));
const gib = numberArg("gib", 1);
const repeat = numberArg("repeat", 10);
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
  const commands = ["echo hello", "ls -la >/dev/null", "true"];
  const m = manifest(commands);
  const script = path.join(dir, "same.sh");
  fs.writeFileSync(script, jobScript(commands));
  timed(process.execPath, [cli, "run", m, "--artifacts", path.join(dir, "a")]);
  const worker = median(Array.from({ length: repeat }, () => timed(process.execPath, [cli, "run", m, "--artifacts", path.join(dir, "a")])));
  const sh = median(Array.from({ length: repeat }, () => timed("sh", [script])));
  const node = median(Array.from({ length: repeat }, () => timed(process.execPath, ["-e", "0"])));
  console.log(`one-job os build (median of ${repeat}): djinn-worker run ${worker.toFixed(1)} ms, sh ${sh.toFixed(1)} ms, bare node start ${node.toFixed(1)} ms`);
  console.log(`  overhead: ${(worker - sh).toFixed(1)} ms per build; ratio ${(worker / sh).toFixed(1)}x sh (of which node start-up ${node.toFixed(1)} ms)`);
  console.log(`  ${goal("within bare node start-up + 60 ms", worker <= node + 60)}: +${(worker - node).toFixed(1)} ms`);

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
