// The qemu driver against doing the same by hand, on the test fixture image:
//  1. build start to the first line of the first job vs booting the image with qemu and polling
//     `ssh true` until it answers (ratio; goal ≤ 1.1);
//  2. per-job overhead of the SSH layer (a job running `true`) vs a plain OpenSSH `ssh ... true`.
//  3. one job printing --output-mb MiB into a slow sink: throughput and the worker's RSS growth.
// Usage: node build/bench/qemu.js [--rounds N] [--jobs N] [--output-mb N]
import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { hostQemuArch } from "../internal/config/config.js";
import { getDriver } from "../internal/driver/driver.js";
import "../internal/driver/all.js";
import { chooseAccel } from "../internal/driver/qemu/qemu.js";
import { ArtifactStore } from "../internal/fs/store.js";
import { parseManifest } from "../internal/manifest/manifest.js";
import { planBuild } from "../internal/runner/plan.js";
import { runBuild, type BuildReporter } from "../internal/runner/runner.js";
import { bootByHand, ensureFixtureImage, qemuConfig, SSH_OPTIONS } from "../test/helpers/qemu.js";
import { numberArg } from "./lib/args.js";

const rounds = numberArg("rounds", 2);
const jobs = numberArg("jobs", 20);
const outputMb = numberArg("output-mb", 64);
const log = pino({ level: "silent" });

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const sink = () => new Writable({ write: (_c, _e, done) => done() });

/** ms from runBuild's start until the first job's first line of output. */
async function driverFirstLine(n: number, artifacts: string): Promise<number> {
  const { manifest } = parseManifest("driver: {type: qemu, image: tiny}\nstages: [s]\njobs:\n  - {stage: s, name: first, commands: [echo first-line]}\n");
  let firstLine = 0;
  const started = performance.now();
  const reporter: BuildReporter = {
    jobStarted: (job) =>
      job.name !== "first"
        ? sink()
        : new Writable({
            write(chunk: Buffer, _e, done) {
              if (!firstLine && chunk.toString().includes("\n")) firstLine = performance.now();
              done();
            },
          }),
    jobFinished: () => undefined,
  };
  const status = await runBuild({
    plan: planBuild(manifest, "bench"),
    driver: (await getDriver("qemu")).create({ buildId: `bench-${process.pid}-${n}`, manifest: manifest.driver, config: qemuConfig({ accel: "tcg" }), log }),
    env: {},
    masks: [],
    artifacts: new ArtifactStore(artifacts),
    reporter,
  });
  if (status !== "passed" || !firstLine) throw new Error(`bench build ${status}`);
  return firstLine - started;
}

async function perJob(): Promise<{ driverMs: number; sshMs: number; mbPerSec: number; rssGrowthMb: number }> {
  const driver = (await getDriver("qemu")).create({ buildId: `bench-${process.pid}-jobs`, manifest: { type: "qemu", image: "tiny" }, config: qemuConfig({ accel: "tcg" }), log });
  const signal = new AbortController().signal;
  try {
    let port = 0;
    // The plain ssh side needs the machine's forwarded port, which the driver reports as it boots.
    const boot = new Writable({
      write(chunk: Buffer, _e, done) {
        const m = /\(port (\d+)\)/.exec(chunk.toString());
        if (m) port = Number(m[1]);
        done();
      },
    });
    await driver.create(boot, signal);
    const times: number[] = [];
    for (let i = 0; i < jobs; i++) {
      const t = performance.now();
      const { exitCode: code } = await driver.execute({ name: "bench/true", script: "set -ex\ntrue\n", env: { A: "1" }, output: sink(), signal });
      if (code !== 0) throw new Error(`job exited ${code}`);
      times.push(performance.now() - t);
    }
    const plain: number[] = [];
    for (let i = 0; i < jobs; i++) {
      const t = performance.now();
      const r = spawnSync("ssh", [...SSH_OPTIONS, "-p", String(port), "root@127.0.0.1", "true"], { stdio: "ignore" });
      if (r.status !== 0) throw new Error(`ssh exited ${r.status}`);
      plain.push(performance.now() - t);
    }
    // A job printing a lot into a slow sink: the worker's memory must stay flat (backpressure).
    const bytes = outputMb * 1024 * 1024;
    let received = 0;
    let peakRss = process.memoryUsage().rss;
    const baseRss = peakRss;
    const slow = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _e, done) {
        received += chunk.length;
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
        setImmediate(done);
      },
    });
    const t = performance.now();
    const { exitCode: code } = await driver.execute({ name: "bench/loud", script: `set -e\nyes 0123456789abcdef0123456789abcdef | head -c ${bytes}\n`, env: {}, output: slow, signal });
    const secs = (performance.now() - t) / 1000;
    if (code !== 0 || received !== bytes) throw new Error(`loud job: exit ${code}, ${received} of ${bytes} bytes`);
    return { driverMs: median(times), sshMs: median(plain), mbPerSec: outputMb / secs, rssGrowthMb: (peakRss - baseRss) / 1024 / 1024 };
  } finally {
    await driver.destroy();
  }
}

async function main() {
  await ensureFixtureImage();
  const artifacts = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-bench-qemu-"));
  // Both sides boot under TCG, so the figures compare the same work on any host.
  await chooseAccel({ accel: "auto" }, `qemu-system-${hostQemuArch()}`, hostQemuArch());
  try {
    const hand: number[] = [];
    const driver: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const vm = await bootByHand({ accel: "tcg" });
      hand.push(vm.bootMs);
      await vm.stop();
      driver.push(await driverFirstLine(i, artifacts));
    }
    const h = median(hand);
    const d = median(driver);
    console.log(`qemu boot (fixture image, TCG, ${os.availableParallelism()} cores, median of ${rounds}):`);
    console.log(`  by hand, qemu start to \`ssh true\` answering: ${(h / 1000).toFixed(2)} s  [${hand.map((x) => (x / 1000).toFixed(2)).join(", ")}]`);
    console.log(`  driver, build start to first job line:       ${(d / 1000).toFixed(2)} s  [${driver.map((x) => (x / 1000).toFixed(2)).join(", ")}]`);
    console.log(`  ratio driver / by hand:                       ${(d / h).toFixed(2)}  (goal ≤ 1.1)`);
    const { driverMs, sshMs, mbPerSec, rssGrowthMb } = await perJob();
    console.log(`per job (median of ${jobs}, \`true\`, one booted machine):`);
    console.log(`  driver execute over its open connection:      ${driverMs.toFixed(0)} ms`);
    console.log(`  plain OpenSSH \`ssh root@... true\`:            ${sshMs.toFixed(0)} ms`);
    console.log(`  ratio driver / ssh:                           ${(driverMs / sshMs).toFixed(2)}`);
    console.log(`output of one job (${outputMb} MiB into a slow sink):`);
    console.log(`  throughput:                                   ${mbPerSec.toFixed(1)} MiB/s (the guest runs under TCG)`);
    console.log(`  worker RSS growth while it streamed:          ${rssGrowthMb.toFixed(1)} MiB`);
  } finally {
    await fs.rm(artifacts, { recursive: true, force: true });
  }
}

await main();
