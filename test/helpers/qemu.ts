// What the qemu and ssh suites (and bench/qemu.ts) share: the fixture image, a driver.toml-shaped
// config for it, a machine booted by hand, a reporter that keeps each job's output, and the
// check that no machine outlived a test.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { promisify } from "node:util";
import type { DriverConfig, QemuConfig, SshConfig } from "../../internal/config/config.js";
import type { BuildReporter, JobResult } from "../../internal/runner/runner.js";
import type { PlannedJob } from "../../internal/runner/plan.js";
import { fixtures, which } from "./env.js";
import { freeLocalPort } from "../../internal/net/port.js";

export const QEMU_CACHE = "/var/tmp/djinn-test-cache/qemu";
/** The fixture's images directory: `[qemu] disks` for `run`. */
export const FIXTURE_DISKS = path.join(QEMU_CACHE, "x86_64");
export const FIXTURE_IMAGE = path.join(FIXTURE_DISKS, "tiny.qcow2");
export const FIXTURE_KEY = path.join(QEMU_CACHE, "id_ed25519");

/** Why the qemu suites cannot run here, or undefined when they can. */
export function qemuMissing(): string | undefined {
  if (process.arch !== "x64") return "the fixture image is x86_64 only";
  if (!which("qemu-system-x86_64")) return "qemu-system-x86_64 not found (Debian package qemu-system-x86)";
  if (!which("qemu-img")) return "qemu-img not found (Debian package qemu-utils)";
  return undefined;
}

/** Builds (or finds cached) the fixture image and key; minutes the first time, instant after. */
export async function ensureFixtureImage(): Promise<void> {
  await promisify(execFile)("bash", [path.join(fixtures, "build-qemu-image.sh"), QEMU_CACHE], { timeout: 15 * 60_000, maxBuffer: 16 << 20 });
}

export function qemuConfig(over: Partial<QemuConfig> = {}): DriverConfig {
  return {
    qemu: { disks: FIXTURE_DISKS, cpus: 1, memory: 256, accel: "auto", bootTimeoutMs: 120_000, key: FIXTURE_KEY, disk_interface: "virtio", net_device: "virtio-net-pci", ...over },
    warnings: [],
  };
}

export function sshConfig(over: Partial<SshConfig> = {}): DriverConfig {
  return { ssh: { timeoutMs: 30_000, user: "root", key: FIXTURE_KEY, ...over }, warnings: [] };
}

/** pids of qemu processes whose command line mentions `needle` (a state dir, a port rule). */
export function qemuProcesses(needle: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (cmdline.startsWith("qemu-system") || cmdline.includes("/qemu-system")) {
      // Zombies have an empty cmdline and are skipped above; a live qemu names its files.
      if (cmdline.includes(needle)) found.push(Number(entry));
    }
  }
  return found;
}

export interface CollectedJob {
  name: string;
  status?: JobResult["status"];
  exitCode?: number;
  output: string;
}

/** A reporter keeping every job's output and result; `onOutput` sees output as it comes. */
export function collectingReporter(onOutput?: (job: string, text: string) => void): BuildReporter & { jobs: Map<string, CollectedJob>; all(): string } {
  const jobs = new Map<string, CollectedJob>();
  return {
    jobs,
    all: () => [...jobs.values()].map((j) => j.output).join(""),
    jobStarted(job: PlannedJob) {
      const entry: CollectedJob = { name: job.name, output: "" };
      jobs.set(job.name, entry);
      return new Writable({
        write(chunk: Buffer, _enc, done) {
          entry.output += chunk.toString("utf8");
          onOutput?.(job.name, entry.output);
          done();
        },
      });
    },
    jobFinished(job: PlannedJob, result: JobResult) {
      const entry = jobs.get(job.name) ?? { name: job.name, output: "" };
      entry.status = result.status;
      entry.exitCode = result.exitCode;
      jobs.set(job.name, entry);
    },
  };
}


export const SSH_OPTIONS = ["-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-i", FIXTURE_KEY];

/** Runs a command in the guest with the OpenSSH client. */
export function sshRun(port: number, command: string, timeoutMs = 20_000): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn("ssh", [...SSH_OPTIONS, "-o", "ConnectTimeout=3", "-p", String(port), "root@127.0.0.1", command], { stdio: ["ignore", "pipe", "ignore"] });
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout });
    });
  });
}

export interface HandBootedVm {
  port: number;
  /** Host port forwarded to the guest's port 2222, free for a second SSH server. */
  extraPort: number;
  stateDir: string;
  /** ms from starting qemu until `ssh true` first succeeded. */
  bootMs: number;
  stop(): Promise<void>;
}

/** Boots the fixture the plain way (qemu + polling `ssh true`), as an operator would by hand. */
export async function bootByHand(opts: { accel?: string; timeoutMs?: number; memoryMiB?: number } = {}): Promise<HandBootedVm> {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-qemu-hand-"));
  const port = await freeLocalPort();
  const extraPort = await freeLocalPort();
  const started = Date.now();
  const child: ChildProcess = spawn(
    "qemu-system-x86_64",
    [
      "-accel", opts.accel ?? "tcg", "-smp", "1", "-m", String(opts.memoryMiB ?? 256),
      "-drive", `file=${FIXTURE_IMAGE},if=virtio,snapshot=on`,
      "-netdev", `user,id=net0,hostfwd=tcp:127.0.0.1:${port}-:22,hostfwd=tcp:127.0.0.1:${extraPort}-:2222`, "-device", "virtio-net-pci,netdev=net0",
      "-nographic", "-display", "none", "-serial", `file:${path.join(stateDir, "serial.log")}`, "-monitor", "none",
      "-pidfile", path.join(stateDir, "qemu.pid"),
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let exited = false;
  // Should the suite die without reaching stop(), the machine still goes with it.
  const onProcessExit = () => child.kill("SIGKILL");
  process.once("exit", onProcessExit);
  const exit = new Promise<void>((resolve) => child.once("exit", () => ((exited = true), resolve())));
  const stop = async () => {
    process.removeListener("exit", onProcessExit);
    if (!exited) {
      child.kill("SIGKILL");
      await exit;
    }
    await fs.rm(stateDir, { recursive: true, force: true });
  };
  const deadline = started + (opts.timeoutMs ?? 120_000);
  try {
    for (;;) {
      if (exited) throw new Error("qemu exited while booting the fixture");
      if (Date.now() > deadline) throw new Error("the fixture did not answer on SSH in time");
      const r = await sshRun(port, "true", 10_000);
      if (r.code === 0) break;
      await new Promise((res) => setTimeout(res, 100));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, extraPort, stateDir, bootMs: Date.now() - started, stop };
}

export { freeLocalPort };
