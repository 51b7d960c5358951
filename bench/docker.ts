// The docker driver against doing the same work by hand, on the offline busybox test image:
//  1. a build of --jobs jobs (each `true`) through the runner and the driver, vs the docker CLI
//     (volume create, `docker run -d` of the image, N × `docker exec … true`, rm -f, volume rm):
//     ratio, goal ≤ 1.2;
//  2. the same jobs the way Djinn's driver runs them (two containers per job: one to copy the
//     script into the volume, one to run it, logs read after it ends), and one container per job
//     sharing the volume, both through the API;
//  3. time from build start to the first job's first line of output, for each.
// Usage: node build/bench/docker.js [--rounds N] [--jobs N]
import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import pino from "pino";
import { singleFileTar } from "../internal/driver/docker/tar.js";
import { LABEL_BUILD, LABEL_WORKER } from "../internal/driver/docker/docker.js";
import { getDriver } from "../internal/driver/driver.js";
import "../internal/driver/all.js";
import { ArtifactStore } from "../internal/fs/store.js";
import { parseManifest } from "../internal/manifest/manifest.js";
import { planBuild } from "../internal/runner/plan.js";
import { runBuild, type BuildReporter } from "../internal/runner/runner.js";
import { busyboxImage, docker, dockerTestConfig } from "../test/helpers/docker.js";
import { numberArg } from "./lib/args.js";

const rounds = numberArg("rounds", 5);
const jobs = numberArg("jobs", 5);
const log = pino({ level: "silent" });

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface Timing {
  totalMs: number;
  firstLineMs: number;
}

let counter = 0;
const labels = () => ({ [LABEL_BUILD]: `bench-${process.pid}-${++counter}`, [LABEL_WORKER]: "1" });

async function viaDriver(image: string, artifacts: string): Promise<Timing> {
  const yaml = `driver: {type: docker, image: "${image}"}\nstages: [s]\njobs:\n${Array.from({ length: jobs }, () => "- {stage: s, commands: [true]}").join("\n")}\n`;
  const { manifest } = parseManifest(yaml);
  const started = performance.now();
  let firstLine = 0;
  const reporter: BuildReporter = {
    jobStarted(job) {
      return new Writable({
        write(_c, _e, done) {
          if (!firstLine && !job.createsDriver) firstLine = performance.now() - started;
          done();
        },
      });
    },
    jobFinished() {},
  };
  const driver = (await getDriver("docker")).create({ buildId: labels()[LABEL_BUILD], manifest: manifest.driver, config: { docker: dockerTestConfig(), warnings: [] }, log });
  const status = await runBuild({ plan: planBuild(manifest, "bench"), driver, env: {}, masks: [], artifacts: new ArtifactStore(artifacts), reporter });
  if (status !== "passed") throw new Error(`bench build ${status}`);
  return { totalMs: performance.now() - started, firstLineMs: firstLine };
}

function cli(args: string[]): string {
  const r = spawnSync("docker", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`docker ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

async function viaCli(image: string): Promise<Timing> {
  const started = performance.now();
  const volume = cli(["volume", "create"]);
  const id = cli(["run", "-d", "-i", "-v", `${volume}:/workspace`, "-w", "/workspace", image, "/bin/sh", "-c", "read _"]);
  let firstLine = 0;
  for (let i = 0; i < jobs; i++) {
    // `set -x` so each job prints a line, as the driver's jobs do.
    cli(["exec", id, "/bin/sh", "-c", "set -ex\ntrue"]);
    if (!firstLine) firstLine = performance.now() - started;
  }
  cli(["rm", "-f", id]);
  cli(["volume", "rm", volume]);
  return { totalMs: performance.now() - started, firstLineMs: firstLine };
}

async function drain(stream: NodeJS.ReadableStream): Promise<void> {
  for await (const _ of stream as AsyncIterable<unknown>) void _;
}

/** Djinn's pattern: per job a container to copy the script in, then one to run it; logs after it ends. */
async function viaTwoContainersPerJob(image: string): Promise<Timing> {
  const started = performance.now();
  const Labels = labels();
  const volume = await docker.createVolume({ Labels });
  const name = (volume as unknown as { name: string }).name;
  const HostConfig = { Mounts: [{ Type: "volume" as const, Source: name, Target: "/workspace" }] };
  const made: string[] = [];
  let firstLine = 0;
  for (let i = 0; i < jobs; i++) {
    const copier = await docker.createContainer({ Image: image, Cmd: ["true"], Labels, HostConfig });
    made.push(copier.id);
    const script = Buffer.from("set -ex\ntrue\n");
    await copier.putArchive(singleFileTar({ dirs: [], name: `job-${i}.sh`, mode: 0o755, size: script.length, source: Readable.from([script]) }), { path: "/workspace" });
    const runner = await docker.createContainer({ Image: image, Entrypoint: ["/bin/sh", `/workspace/job-${i}.sh`], WorkingDir: "/workspace", Labels, HostConfig });
    made.push(runner.id);
    await runner.start();
    await runner.wait();
    await drain((await runner.logs({ follow: true, stdout: true, stderr: true })) as unknown as NodeJS.ReadableStream);
    if (!firstLine) firstLine = performance.now() - started;
  }
  for (const id of made) await docker.getContainer(id).remove({ force: true });
  await docker.getVolume(name).remove();
  return { totalMs: performance.now() - started, firstLineMs: firstLine };
}

/** A fresh container per job, all sharing the workspace volume, output attached live. */
async function viaContainerPerJob(image: string): Promise<Timing> {
  const started = performance.now();
  const Labels = labels();
  const volume = await docker.createVolume({ Labels });
  const name = (volume as unknown as { name: string }).name;
  let firstLine = 0;
  for (let i = 0; i < jobs; i++) {
    const c = await docker.createContainer({ Image: image, Entrypoint: ["/bin/sh", "-c", "exec 2>&1\nset -ex\ntrue\n"], WorkingDir: "/workspace", Labels, HostConfig: { Mounts: [{ Type: "volume", Source: name, Target: "/workspace" }] } });
    const stream = await c.attach({ stream: true, stdout: true, stderr: true });
    await c.start();
    await drain(stream as unknown as NodeJS.ReadableStream);
    await c.wait();
    if (!firstLine) firstLine = performance.now() - started;
    await c.remove({ force: true });
  }
  await docker.getVolume(name).remove();
  return { totalMs: performance.now() - started, firstLineMs: firstLine };
}

async function main(): Promise<void> {
  const image = await busyboxImage();
  const artifacts = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-bench-docker-"));
  const results: Record<string, Timing[]> = { driver: [], cli: [], djinn: [], perJob: [] };
  try {
    // One warm-up of each, so the first round does not pay for cold caches.
    await viaDriver(image, artifacts);
    await viaCli(image);
    for (let r = 0; r < rounds; r++) {
      results.driver!.push(await viaDriver(image, artifacts));
      results.cli!.push(await viaCli(image));
      results.djinn!.push(await viaTwoContainersPerJob(image));
      results.perJob!.push(await viaContainerPerJob(image));
    }
  } finally {
    await fs.rm(artifacts, { recursive: true, force: true });
  }
  const total = (k: string) => median(results[k]!.map((t) => t.totalMs));
  const first = (k: string) => median(results[k]!.map((t) => t.firstLineMs));
  const row = (label: string, k: string) => `${label.padEnd(44)} ${total(k).toFixed(0).padStart(6)} ms  ${first(k).toFixed(0).padStart(6)} ms  ${(total(k) / total("cli")).toFixed(2).padStart(5)}`;
  console.log(`docker: ${jobs} jobs of \`true\`, median of ${rounds} rounds (engine ${(await docker.version()).Version})`);
  console.log(`${"".padEnd(44)} ${"total".padStart(9)}  ${"1st line".padStart(9)}  ratio vs CLI`);
  console.log(row("driver (one container, exec per job)", "driver"));
  console.log(row("docker CLI by hand (run -d, exec ×N, rm)", "cli"));
  console.log(row("Djinn's pattern (two containers per job)", "djinn"));
  console.log(row("a container per job sharing the volume", "perJob"));
  console.log(`driver / CLI: ${(total("driver") / total("cli")).toFixed(2)} (goal ≤ 1.2)`);
}

await main();
