// The qemu driver: every build gets a fresh virtual machine booted from a base image in snapshot
// mode (the image is never written), reached over SSH on a forwarded localhost port, and thrown
// away afterwards. A worker that crashed leaves a state directory behind; `reap` cleans it up.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import type { Writable } from "node:stream";
import { settingsIn, type DriverSettings } from "../section.js";
import { hostQemuArch, qemuSection, type QemuConfig } from "./section.js";
import { formatDuration } from "../../timers/duration.js";
import { confinedPath } from "../../fs/confine.js";
import { PrivateDirError, readOwnFile } from "../../fs/private.js";
import { DriverError, registerDriver, type Driver, type DriverOptions, type RunRef } from "../driver.js";
import { buildBaseEnv } from "../env.js";
import { freshRunToken, hostStatePath, hostStateRoot, isRunToken, runName } from "../run.js";
import { SessionDriver, SshSession } from "../ssh/session.js";
import { kvmUsable } from "./accel.js";
import { freeLocalPort } from "../../net/port.js";
import { sleep } from "../../timers/timers.js";

/**
 * Where each build's qemu keeps its pidfile and serial log, one directory per run of a build:
 * `qemu/` in the host state root (../run.ts), which only the worker's user may write to.
 */
export function stateRoot(): string {
  return path.join(hostStatePath(), "qemu");
}

/** The run's state directory: named by the run token too, as build ids repeat across installations. */
export function stateDirOf(ref: RunRef): string {
  return path.join(stateRoot(), runName(ref));
}

/** Checks the host state root (this user's alone) and makes the qemu directory in it. */
async function openStateRoot(): Promise<string> {
  try {
    await hostStateRoot();
  } catch (err) {
    if (err instanceof PrivateDirError) throw new DriverError(`the qemu driver keeps its machines' state in a directory only its user may write to: ${err.message}`);
    throw err;
  }
  await fs.mkdir(stateRoot(), { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EEXIST") throw new DriverError(`cannot make ${stateRoot()}: ${err.message}`);
  });
  return stateRoot();
}

const PORT_ATTEMPTS = 5;
const STDERR_KEEP = 8192;

/** Ports this process has handed to a machine that is still alive: never handed out twice. */
const portsInUse = new Set<number>();
/** Machines this process started; killed on the way out should a build never get to destroy its own. */
const liveMachines = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of liveMachines) child.kill("SIGKILL");
});

export function archOf(manifest: Record<string, string>): string {
  const arch = manifest.arch || hostQemuArch();
  if (!/^[a-z0-9_]+$/.test(arch)) throw new DriverError(`driver.arch ${JSON.stringify(arch)}: expected a qemu arch such as ${hostQemuArch()}`);
  return arch;
}

/** The directory qemu images are under: `[qemu] disks`, else `<[images] path>/qemu` (the daemon). */
export function imagesRoot(options: Pick<DriverOptions, "config" | "imagesPath">): string {
  const disks = settingsIn(qemuSection, options.config)?.disks;
  if (disks) return path.resolve(disks);
  if (options.imagesPath) return path.resolve(options.imagesPath, "qemu");
  throw new DriverError(`no directory of images: set [qemu] disks in ${options.config.file ?? "the driver file"}`);
}

/**
 * Where an image may be under `root`, in order: Djinn's layout `<root>/_base/<arch>/<image>`, the
 * layout of Djinn's offline runner `<root>/<arch>/<image>`, and `<root>/<image>`; each with and
 * without `.qcow2`.
 */
export function imageCandidates(root: string, arch: string, image: string): string[] {
  const names = image.endsWith(".qcow2") ? [image] : [image, `${image}.qcow2`];
  const dirs = [path.join(root, "_base", arch), path.join(root, arch), root];
  const out: string[] = [];
  for (const dir of dirs) {
    for (const name of names) {
      try {
        out.push(confinedPath(dir, name));
      } catch (err) {
        throw new DriverError(`driver.image ${JSON.stringify(image)}: ${(err as Error).message}`);
      }
    }
  }
  return out;
}

/** The base image file a manifest names; "not found" lists every path tried. */
export async function resolveImage(options: Pick<DriverOptions, "manifest" | "config" | "imagesPath">): Promise<string> {
  const image = options.manifest.image;
  if (!image) throw new DriverError("driver.image is required by the qemu driver");
  const arch = archOf(options.manifest);
  const looked = imageCandidates(imagesRoot(options), arch, image);
  for (const candidate of looked) {
    const stat = await fs.stat(candidate).catch(() => undefined);
    if (stat?.isFile()) return candidate;
  }
  throw new DriverError(`image ${JSON.stringify(image)} not found for ${arch}: looked for ${looked.join(", ")}`);
}

/** The accelerator a machine boots with, and why. */
export async function chooseAccel(cfg: Pick<QemuConfig, "accel">, binary: string, arch: string): Promise<{ accel: "kvm" | "tcg"; why?: string }> {
  if (cfg.accel === "tcg") return { accel: "tcg" };
  if (arch !== hostQemuArch()) {
    if (cfg.accel === "kvm") throw new DriverError(`accel = "kvm" cannot run ${arch} machines on this ${hostQemuArch()} host; set accel = "auto" or "tcg" in [qemu]`);
    return { accel: "tcg", why: `emulating ${arch}` };
  }
  const verdict = await kvmUsable(binary, arch);
  if (verdict.usable) return { accel: "kvm" };
  if (cfg.accel === "kvm") throw new DriverError(`accel = "kvm" but KVM is not usable here: ${verdict.reason}; set accel = "auto" or "tcg" in [qemu]`);
  return { accel: "tcg", why: `KVM not usable: ${verdict.reason}` };
}


/** Where machines' ports come from; a test swaps `next` to hand out a port that is already taken. */
export const portSource = { next: freeLocalPort };

async function allocatePort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await portSource.next();
    if (!portsInUse.has(port)) {
      portsInUse.add(port);
      return port;
    }
  }
  throw new DriverError("cannot find a free localhost port for SSH forwarding");
}

/** The inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp. */
function listeningInode(port: number): string | undefined {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[3] === "0A") return f[9];
  }
  return undefined;
}

function holdsSocket(pid: number, inode: string): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`;
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/**
 * Waits until this build's qemu itself listens on its forwarded port, so that SSH can never reach
 * another build's machine that took the port first (that qemu then fails with a host-forwarding
 * error and is retried on a new port). Gives up waiting after `ms` or when qemu exits; on systems
 * without /proc it returns at once.
 */
async function untilListening(machine: Machine, ms: number): Promise<void> {
  if (!existsSync("/proc/net/tcp") || machine.child.pid === undefined) return;
  const deadline = Date.now() + ms;
  while (!machine.exited.signal.aborted && Date.now() < deadline) {
    const inode = listeningInode(machine.port);
    if (inode && holdsSocket(machine.child.pid, inode)) return;
    await sleep(20);
  }
}

/** The last lines of a file, control sequences removed: what a console said before things went wrong. */
async function tailOf(file: string, lines = 12): Promise<string> {
  const text = await fs.readFile(file, "latin1").catch(() => "");
  return cleanTail(text, lines);
}

function cleanTail(text: string, lines: number): string {
  return text
    .slice(-8192)
    .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "")
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "")
    .split("\n")
    .map((l) => l.trimEnd())
    .filter((l) => l)
    .slice(-lines)
    .join("\n");
}

/** Waits for a child to exit, sending SIGTERM and then SIGKILL after `graceMs`. */
async function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), graceMs);
  });
  if ((await Promise.race([exited, late])) === "late") {
    child.kill("SIGKILL");
    await exited;
  }
  clearTimeout(timer);
}

interface Machine {
  child: ChildProcess;
  port: number;
  exited: AbortController;
  stderr: () => string;
  exitStatus: () => string;
}

export class QemuDriver extends SessionDriver implements Driver {
  protected readonly notOpen = "the machine is not running";
  private machine?: Machine;
  private stateDir?: string;
  private readonly ref: RunRef;

  constructor(private readonly options: DriverOptions) {
    super();
    this.ref = { buildId: options.buildId, run: options.run ?? freshRunToken() };
  }

  private config(): QemuConfig {
    const cfg = settingsIn(qemuSection, this.options.config);
    if (!cfg) throw new DriverError(`the qemu driver is not configured: add a [qemu] section to ${this.options.config.file ?? "the driver file"}`);
    return cfg;
  }

  async create(output: Writable, signal: AbortSignal): Promise<void> {
    const cfg = this.config();
    const arch = archOf(this.options.manifest);
    const binary = `qemu-system-${arch}`;
    const image = await resolveImage(this.options);
    const { accel, why } = await chooseAccel(cfg, binary, arch);
    await openStateRoot();
    const stateDir = stateDirOf(this.ref);
    // A directory left for this same run (it cannot be another's): its machine must go first.
    if (existsSync(stateDir)) await reapStateDir(stateDir);
    await fs.mkdir(stateDir, { mode: 0o700 });
    this.stateDir = stateDir;
    const name = this.options.manifest.image;
    output.write(`Booting ${name} with ${binary} (${accel.toUpperCase()}${why ? `; ${why}` : ""})…\n`);
    const started = Date.now();
    for (let tries = 1; ; tries++) {
      if (signal.aborted) throw new DriverError("aborted while booting");
      const machine = await this.start(binary, image, accel, cfg, stateDir);
      this.machine = machine;
      const left = cfg.bootTimeoutMs - (Date.now() - started);
      // Waiting for SSH stops when the build is aborted or the machine dies (a plain controller:
      // it stays reachable for as long as this frame waits, unlike a composed AbortSignal.any).
      const giveUp = new AbortController();
      const stopWaiting = () => giveUp.abort();
      signal.addEventListener("abort", stopWaiting, { once: true });
      machine.exited.signal.addEventListener("abort", stopWaiting, { once: true });
      if (signal.aborted || machine.exited.signal.aborted) giveUp.abort();
      try {
        await untilListening(machine, 10_000);
        this.session = await SshSession.open(
          { host: "127.0.0.1", port: machine.port, user: "root", keyFile: cfg.key },
          { timeoutMs: Math.max(left, 1), signal: giveUp.signal, buildSignal: signal, baseEnv: buildBaseEnv(this.options.buildId) },
        );
        output.write(`SSH up after ${((Date.now() - started) / 1000).toFixed(1)}s (port ${machine.port})${this.session.transferNote}\n`);
        return;
      } catch (err) {
        if (signal.aborted) throw new DriverError("aborted while booting");
        if (machine.exited.signal.aborted) {
          const stderr = machine.stderr();
          this.machine = undefined;
          portsInUse.delete(machine.port);
          // Another process took the port between our check and qemu's bind: try a new one.
          if (/host forwarding|hostfwd|Could not set up host/i.test(stderr) && tries < PORT_ATTEMPTS) continue;
          const serial = await tailOf(path.join(stateDir, "serial.log"));
          throw new DriverError(
            `${binary} ${machine.exitStatus()} before SSH answered` +
              (stderr.trim() ? `:\n${cleanTail(stderr, 12)}` : "") +
              (serial ? `\nlast console output:\n${serial}` : ""),
          );
        }
        if (err instanceof DriverError && /could not connect/.test(err.message)) {
          const serial = await tailOf(path.join(stateDir, "serial.log"), 5);
          throw new DriverError(`machine did not answer on SSH within ${formatDuration(cfg.bootTimeoutMs)}${serial ? `; last console output:\n${serial}` : ""}`);
        }
        throw err;
      } finally {
        signal.removeEventListener("abort", stopWaiting);
        machine.exited.signal.removeEventListener("abort", stopWaiting);
      }
    }
  }

  private async start(binary: string, image: string, accel: "kvm" | "tcg", cfg: QemuConfig, stateDir: string): Promise<Machine> {
    const port = await allocatePort();
    const args = [
      "-name", `djinn-${path.basename(stateDir)}`,
      "-accel", accel,
      ...(accel === "kvm" ? ["-cpu", "host"] : []),
      "-smp", String(cfg.cpus),
      "-m", String(cfg.memory),
      "-drive", `file=${image.replace(/,/g, ",,")},if=${cfg.disk_interface},snapshot=on`,
      "-netdev", `user,id=net0,hostfwd=tcp:127.0.0.1:${port}-:22`,
      "-device", `${cfg.net_device},netdev=net0`,
      "-nographic", "-display", "none",
      "-serial", `file:${path.join(stateDir, "serial.log")}`,
      "-monitor", "none",
      "-pidfile", path.join(stateDir, "qemu.pid"),
    ];
    this.options.log.debug({ build: this.options.buildId, binary, args }, "starting qemu");
    // Its own process group: a Ctrl-C meant for the worker reaches the worker, which stops the machine itself.
    const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"], detached: true });
    liveMachines.add(child);
    let stderr = "";
    let status = "exited";
    const exited = new AbortController();
    child.stderr!.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString("utf8")).slice(-STDERR_KEEP);
    });
    child.once("error", (err) => {
      stderr += `cannot start ${binary}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "not installed (no such file on PATH)" : err.message}\n`;
      status = "could not start";
      liveMachines.delete(child);
      exited.abort();
    });
    child.once("exit", (code, sig) => {
      status = sig ? `was killed by ${sig}` : `exited with status ${code}`;
      liveMachines.delete(child);
      exited.abort();
    });
    return { child, port, exited, stderr: () => stderr, exitStatus: () => status };
  }

  async destroy(): Promise<void> {
    // The machine is thrown away: no need to tidy up inside it first.
    this.session?.abandon();
    this.session = undefined;
    const machine = this.machine;
    this.machine = undefined;
    if (machine) {
      await stopChild(machine.child).catch(() => undefined);
      liveMachines.delete(machine.child);
      portsInUse.delete(machine.port);
    }
    if (this.stateDir) {
      await fs.rm(this.stateDir, { recursive: true, force: true }).catch(() => undefined);
      this.stateDir = undefined;
    }
  }
}

/**
 * The pid in a state dir's pidfile (a file of this user's, digits only) when that process is
 * still this run's qemu: its command line has exactly this pidfile as an argument.
 */
export async function machinePid(stateDir: string): Promise<number | undefined> {
  const pidfile = path.join(stateDir, "qemu.pid");
  const text = (await readOwnFile(pidfile))?.trim();
  if (!text || !/^\d{1,10}$/.test(text)) return undefined;
  const pid = Number(text);
  if (pid <= 1) return undefined;
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return args.includes(pidfile) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Kills a machine left by a dead worker and removes its state directory. */
async function reapStateDir(stateDir: string): Promise<boolean> {
  const pid = await machinePid(stateDir);
  if (pid !== undefined) {
    for (const [sig, waitMs] of [["SIGTERM", 3000], ["SIGKILL", 5000]] as const) {
      try {
        process.kill(pid, sig);
      } catch {
        break;
      }
      // Not our child, so there is no exit event: poll /proc until it is gone.
      const deadline = Date.now() + waitMs;
      while (Date.now() < deadline && (await machinePid(stateDir)) === pid) await sleep(50);
      if ((await machinePid(stateDir)) !== pid) break;
    }
  }
  await fs.rm(stateDir, { recursive: true, force: true });
  return pid !== undefined;
}

export function qemuVersion(binary: string): string {
  const r = spawnSync(binary, ["--version"], { encoding: "utf8", timeout: 10_000 });
  if (r.error) throw new Error(`${binary}: ${(r.error as NodeJS.ErrnoException).code === "ENOENT" ? "not installed (no such file on PATH)" : r.error.message}`);
  const m = /version\s+(\S+)/i.exec(r.stdout);
  if (r.status !== 0 || !m) throw new Error(`${binary} --version failed: ${(r.stderr || r.stdout).trim()}`);
  return m[1];
}

registerDriver({
  name: "qemu",
  create: (options) => new QemuDriver(options),
  reap: async (dead, _config: DriverSettings, log) => {
    // A token of another shape names nothing; the root is checked before anything in it is believed.
    if (!isRunToken(dead.run)) return;
    await openStateRoot();
    const stateDir = stateDirOf(dead);
    if (!existsSync(stateDir)) return;
    const killed = await reapStateDir(stateDir);
    log.info({ build: dead.buildId, run: dead.run, stateDir, killed }, "reaped the machine of a dead worker");
  },
  check: async (config) => {
    const cfg = settingsIn(qemuSection, config);
    if (!cfg) throw new Error("no [qemu] section");
    const arch = hostQemuArch();
    const binary = `qemu-system-${arch}`;
    const version = qemuVersion(binary);
    let accel: string;
    if (cfg.accel === "tcg") accel = "accel tcg";
    else {
      const verdict = await kvmUsable(binary, arch);
      if (cfg.accel === "kvm" && !verdict.usable) throw new Error(`accel = "kvm" but KVM is not usable: ${verdict.reason}`);
      accel = cfg.accel === "kvm" ? "accel kvm" : verdict.usable ? "accel auto → kvm" : `accel auto → tcg (KVM not usable: ${verdict.reason})`;
    }
    const lines = [`qemu: ${binary} ${version}, ${accel}`];
    if (cfg.disks) {
      const stat = await fs.stat(cfg.disks).catch(() => undefined);
      if (!stat?.isDirectory()) throw new Error(`[qemu] disks ${cfg.disks}: no such directory`);
      lines.push(`qemu: images in ${cfg.disks} (<disks>/_base/<arch>/<image>, <disks>/<arch>/<image> or <disks>/<image>)`);
    }
    if (cfg.key) {
      await fs.access(cfg.key).catch(() => {
        throw new Error(`[qemu] key ${cfg.key}: no such file`);
      });
    }
    lines.push(`qemu: log in as root with ${cfg.key ? `key ${cfg.key}` : "an empty password"}, boot timeout ${formatDuration(cfg.bootTimeoutMs)}`);
    return lines;
  },
});
