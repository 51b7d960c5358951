// The os driver: jobs run straight on this host, in a fresh workspace per build in the host state
// root (../run.ts hostStateRoot), which only the worker's user may write to.
// For offline, trusted builds only: there is no isolation beyond the workspace directory.
import { spawn, type ChildProcess } from "node:child_process";
import { createReadStream, createWriteStream, rmdirSync, rmSync, writeFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { isInside, resolveInside } from "../../fs/confine.js";
import { GLOB_SCRIPT, parseGlobOutput } from "../artifacts.js";
import { buildBaseEnv } from "../env.js";
import { CollectError, DriverError, registerDriver, type Driver, type DriverOptions, type ExecResult, type JobRun, type PackedTar, type RunRef } from "../driver.js";
import { packWorkspace, unpackWorkspace } from "./archive.js";
import { PrivateDirError } from "../../fs/private.js";
import { freshRunToken, hostStateRoot, isRunToken, runName } from "../run.js";
import { ownerFile, sweepOrphans, WORKSPACE_PREFIX, writeOwner } from "./owner.js";
import { cgroupSupport, reapRun, RunProcesses } from "./processes.js";
import { stateFilesystem } from "./statefs.js";

const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export class OsDriver implements Driver {
  private dir?: string;
  private workspace?: string;
  private jobs = 0;
  private processes?: RunProcesses;
  private readonly running = new Set<ChildProcess>();
  /** The first job's shell, waiting for its script. */
  private ready?: WaitingShell;
  private readonly ref: RunRef;

  constructor(private readonly options: DriverOptions) {
    this.ref = { buildId: options.buildId, run: options.run ?? freshRunToken() };
  }

  async create(output: Writable, _signal: AbortSignal): Promise<void> {
    this.dir = await fs.mkdtemp(workspacePrefix(await stateRoot(), this.ref));
    writeOwner(this.dir, this.ref);
    this.workspace = path.join(this.dir, "workspace");
    // Job scripts go beside the workspace, in the run's directory (mkdtemp makes it 0700): no
    // directory of their own to make and remove for every build.
    const [, processes] = await Promise.all([fs.mkdir(this.workspace, { mode: 0o700 }), RunProcesses.open(runName(this.ref), this.ref.run, this.dir)]);
    this.processes = processes;
    // Joining a cgroup can take a while on a busy host: the first job's shell does it now, while
    // the build's records are written, and waits for its script.
    if (this.options.env) this.ready = this.startShell(this.options.env);
    output.write(`Running on the host (os driver), workspace ${this.workspace}\n`);
    if (this.processes.noCgroup) this.options.log.debug({ reason: this.processes.noCgroup }, "os driver: no cgroup for the build; its processes are tracked by environment and directory");
  }

  private requireWorkspace(): string {
    if (!this.workspace) throw new DriverError("the os driver's workspace was not created");
    return this.workspace;
  }

  /** The minimal environment every job starts from; the build's variables go on top. */
  private baseEnv(): Record<string, string> {
    const workspace = this.requireWorkspace();
    return {
      PATH: process.env.PATH || DEFAULT_PATH,
      HOME: workspace,
      USER: userName(),
      LANG: "C.UTF-8",
      TMPDIR: os.tmpdir(),
      ...buildBaseEnv(this.options.buildId),
    };
  }

  /**
   * A job's shell that joins the run's cgroup and then waits for the path of its script on stdin
   * (started before the job: see create). Its own process group, so a kill reaches everything
   * the job starts; a failure to start is the job's, when it runs.
   */
  private startShell(env: Record<string, string>): WaitingShell {
    const script = this.scriptPath(this.jobs + 1);
    const [shell, ...args] = this.processes!.waitingCommand(script);
    const child = spawn(shell, args, {
      cwd: this.requireWorkspace(),
      env: { ...this.baseEnv(), ...env, ...this.processes!.env() },
      stdio: ["pipe", "pipe", "ignore"],
      detached: true,
    });
    const waiting: WaitingShell = { child, env, script };
    child.once("error", (err) => (waiting.failed = err));
    child.stdin!.on("error", () => undefined);
    this.running.add(child);
    return waiting;
  }

  private scriptPath(job: number): string {
    return jobScriptPath(this.dir!, job);
  }

  /** The shell started for this job, when it is still waiting and has the job's environment. */
  private takeReady(env: Record<string, string>, script: string): ChildProcess | undefined {
    const ready = this.ready;
    this.ready = undefined;
    if (!ready) return undefined;
    const { child } = ready;
    if (ready.env === env && ready.script === script && !ready.failed && child.exitCode === null && child.signalCode === null) return child;
    killGroup(child);
    this.running.delete(child);
    return undefined;
  }

  async execute(job: JobRun): Promise<ExecResult> {
    const workspace = this.requireWorkspace();
    const script = this.scriptPath(++this.jobs);
    // Synchronously, as the owner record: a script is small, and its directory the run's own.
    writeFileSync(script, job.script, { mode: 0o600 });
    if (job.signal.aborted) return { exitCode: 137 };
    let child = this.takeReady(job.env, script);
    if (child) child.stdin!.end("\n");
    else {
      // One pipe for both streams (2>&1), so output keeps the order it was written in.
      const [shell, ...args] = this.processes!.command(script);
      child = spawn(shell, args, {
        cwd: workspace,
        env: { ...this.baseEnv(), ...job.env, ...this.processes!.env() },
        stdio: ["ignore", "pipe", "ignore"],
        // Its own process group, so a kill reaches everything the job started.
        detached: true,
      });
      this.running.add(child);
    }
    const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
    const kill = () => killGroup(child);
    job.signal.addEventListener("abort", kill, { once: true });
    child.stdout!.pipe(job.output, { end: false });
    try {
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
        child.once("error", reject);
        child.once("exit", (c, s) => resolve([c, s]));
      });
      // Background processes a job left behind die with it, also those that left its process
      // group (setsid); then its pipes drain and close.
      killGroup(child);
      await this.processes!.killAll();
      await drained(child, closed, 2000);
      return { exitCode: code ?? 128 + (os.constants.signals[signal ?? "SIGKILL"] ?? 9) };
    } catch (err) {
      throw new DriverError(`cannot start /bin/sh: ${(err as Error).message}`);
    } finally {
      job.signal.removeEventListener("abort", kill);
      child.stdout!.unpipe(job.output);
      this.running.delete(child);
    }
  }

  async place(dest: string, source: Readable, _size: number, mode = 0o644): Promise<void> {
    const workspace = this.requireWorkspace();
    // Jobs run with HOME set to the workspace.
    const target = resolveInside(workspace, dest.startsWith("~/") ? dest.slice(2) : dest);
    if (!target) {
      source.destroy();
      throw new DriverError(`the os driver places objects inside the workspace only, not at ${dest}`);
    }
    await fs.mkdir(path.dirname(target), { recursive: true });
    const realParent = await fs.realpath(path.dirname(target));
    if (!isInside(await fs.realpath(workspace), realParent)) {
      source.destroy();
      throw new DriverError(`${dest} leads outside the workspace`);
    }
    await pipeline(source, createWriteStream(target, { mode }));
    // The mode of a file that already existed is not changed by opening it.
    await fs.chmod(target, mode);
  }

  /**
   * The paths a shell pattern matches, relative to the workspace. The host is not throwaway:
   * patterns stay inside the workspace (`~/` is the workspace, jobs' HOME), and collect refuses
   * any match that leads out of it.
   */
  async glob(pattern: string): Promise<string[]> {
    const workspace = this.requireWorkspace();
    const rel = pattern === "~" ? "." : pattern.startsWith("~/") ? pattern.slice(2) : pattern;
    if (path.isAbsolute(rel) || rel.split("/").includes("..")) throw new CollectError("outside", `${pattern} is outside the workspace`);
    const out = await new Promise<{ code: number | null; text: string }>((resolve, reject) => {
      const child = spawn("/bin/sh", ["-c", GLOB_SCRIPT, "sh", workspace, rel], { cwd: workspace, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: workspace }, stdio: ["ignore", "pipe", "ignore"] });
      const chunks: Buffer[] = [];
      child.stdout.on("data", (d: Buffer) => chunks.push(d));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, text: Buffer.concat(chunks).toString("utf8") }));
    }).catch((err: Error) => {
      throw new CollectError("failed", `cannot expand ${pattern}: ${err.message}`);
    });
    if (out.code !== 0) throw new CollectError("failed", `cannot expand ${pattern} (exit status ${out.code})`);
    return parseGlobOutput(out.text).map((p) => path.relative(workspace, p));
  }

  async collect(file: string): Promise<Readable> {
    const workspace = this.requireWorkspace();
    // ~/ is the workspace: jobs' HOME.
    if (file.startsWith("~/")) file = file.slice(2);
    const target = resolveInside(workspace, file);
    if (path.isAbsolute(file) || !target) throw new CollectError("outside", `${file} is outside the workspace`);
    let real: string;
    try {
      real = await fs.realpath(target);
    } catch {
      throw new CollectError("missing", `${file} does not exist`);
    }
    if (!isInside(await fs.realpath(workspace), real)) throw new CollectError("outside", `${file} links outside the workspace`);
    const stat = await fs.stat(real);
    if (!stat.isFile()) throw new CollectError("not-a-file", `${file} is not a regular file`);
    return createReadStream(real);
  }

  /** The job user's home is the workspace (HOME): both bases are the workspace. */
  packTar(_base: "workspace" | "home", paths: string[], signal: AbortSignal): Promise<PackedTar> {
    return packWorkspace(this.requireWorkspace(), paths, signal);
  }

  unpackTar(_base: "workspace" | "home", archive: Readable, signal: AbortSignal): Promise<void> {
    return unpackWorkspace(this.requireWorkspace(), archive, signal);
  }

  async destroy(): Promise<void> {
    for (const child of this.running) killGroup(child);
    await this.processes?.close();
    this.processes = undefined;
    if (this.dir) {
      await removeRun(this.dir, this.jobs);
      this.dir = undefined;
      this.workspace = undefined;
    }
  }
}

/** The script of the run's `job`th job, beside its workspace. */
function jobScriptPath(dir: string, job: number): string {
  return path.join(dir, `job-${job}.sh`);
}

/**
 * Removes a finished run's directory: the workspace (whatever the jobs left), then the scripts,
 * the owner record last. What the driver wrote itself is removed by name, synchronously; a
 * recursive removal walks a tree with several thread-pool rounds per entry. Anything else there
 * (a job can write beside its script) falls back to removing the whole directory.
 */
async function removeRun(dir: string, jobs: number): Promise<void> {
  const workspace = path.join(dir, "workspace");
  const removeAll = (target: string) => fs.rm(target, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
  try {
    rmdirSync(workspace);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") await removeAll(workspace);
  }
  try {
    for (let n = 1; n <= jobs; n++) rmSync(jobScriptPath(dir, n), { force: true });
    rmSync(ownerFile(dir), { force: true });
    rmdirSync(dir);
  } catch {
    await removeAll(dir);
  }
}

let ownUserName: string | undefined;

/** This process's user name: looked up once (the user database is read on every call), it never changes under a running worker. */
function userName(): string {
  return (ownUserName ??= os.userInfo().username);
}

interface WaitingShell {
  child: ChildProcess;
  /** The environment it was started with: the build's, which every job gets. */
  env: Record<string, string>;
  /** The script it will run: the first job's. */
  script: string;
  failed?: Error;
}

/** Waits for the job's pipes to close; a process that escaped its group and holds them open is cut off after `ms`. */
async function drained(child: ChildProcess, closed: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    closed,
    new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        child.stdout!.destroy();
        resolve();
      }, ms);
    }),
  ]);
  clearTimeout(timer);
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/** Every workspace of a run starts with this, so a recovering worker can find exactly that run's. */
function workspacePrefix(root: string, ref: RunRef): string {
  return path.join(root, `${WORKSPACE_PREFIX}${runName(ref)}-`);
}

/** The host state root, checked; a root that is not this user's alone is a DriverError saying why. */
async function stateRoot(): Promise<string> {
  try {
    return await hostStateRoot();
  } catch (err) {
    if (err instanceof PrivateDirError) throw new DriverError(`the os driver keeps its workspaces in a directory only its user may write to: ${err.message}`);
    throw err;
  }
}

/**
 * After a worker died: kills the processes of the dead run still alive (they outlived the worker
 * in their own process groups or sessions) and removes its workspaces. Another run's or another
 * installation's, with the same build id or not, are never touched: the run token names them.
 */
async function reap(dead: RunRef, log: DriverOptions["log"]): Promise<void> {
  if (!isRunToken(dead.run)) return;
  const prefix = workspacePrefix(await stateRoot(), dead);
  const parent = path.dirname(prefix);
  const dirs = (await fs.readdir(parent).catch(() => [] as string[])).map((f) => path.join(parent, f)).filter((f) => f.startsWith(prefix));
  const killed = await reapRun(runName(dead), dead.run, dirs);
  for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true, maxRetries: 3 });
  if (killed || dirs.length) log.info({ build: dead.buildId, run: dead.run, killed, workspaces: dirs.length }, "reaped what a dead worker's run left on the host");
}

registerDriver({
  name: "os",
  create: (options) => new OsDriver(options),
  reap: (dead, _config, log) => reap(dead, log),
  sweep: async (_config, log) => void (await sweepOrphans(await stateRoot(), log)),
  check: async () => [`os: jobs run on this host with /bin/sh, in a workspace under ${await stateRoot()}`, `os: ${stateFilesystem(await stateRoot())}`, `os: ${await cgroupSupport()}`],
});
