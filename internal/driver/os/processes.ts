// Every process of one os-driver run, found again however it left the job's process group: a
// cgroup (v2) per run where this host lets the worker make one, and always the run's marker in
// the environment and its working directory under the run's directory. docs/drivers.md says
// what escapes both.
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { ConfineError, confinedPath } from "../../fs/confine.js";
import { sleep } from "../../timers/timers.js";
import { singleQuote } from "../../shell/quote.js";
import { isRunToken, parseRunName } from "../run.js";
import { cgroup2Mount, type Cgroup2Mount } from "./mounts.js";
import { pidMark, pidWindow, type PidMark } from "./pids.js";

/** The variable every job process starts with; its value is the run token. */
export const RUN_MARKER = "DJINN_RUN";

/** Where the run cgroups go: a test sets `root` to undefined to exercise the fallback. */
export const cgroupSource = { root: detectCgroupRoot };

/**
 * The cgroup v2 directory of this worker process (pure v2 at /sys/fs/cgroup, or the hybrid
 * layout's /sys/fs/cgroup/unified), when one is mounted; run cgroups are made inside it.
 */
export function detectCgroupRoot(): string | undefined {
  // Mounts and this process's cgroup do not change under a running worker: read once, not per build.
  if (!detected) detected = { root: readCgroupRoot() };
  return detected.root;
}
let detected: { root: string | undefined } | undefined;

function readCgroupRoot(): string | undefined {
  let mount: Cgroup2Mount | undefined;
  let own: string | undefined;
  try {
    mount = cgroup2Mount(readFileSync("/proc/self/mountinfo", "utf8"));
    own = /^0::(\/.*)$/m.exec(readFileSync("/proc/self/cgroup", "utf8"))?.[1];
  } catch {
    return undefined;
  }
  if (!mount || own === undefined) return undefined;
  return path.join(mount.mountPoint, own);
}

/** The processes of one run: `name` is the run's name (build and run token), `dir` its directory. */
export class RunProcesses {
  private constructor(
    readonly token: string,
    private readonly dir: string,
    /** The run's cgroup, when one could be made. */
    readonly cgroup: string | undefined,
    /** Why there is no cgroup, for the build's output. */
    readonly noCgroup: string | undefined,
    /** Where pid allocation stood before the run's first process: the sweep looks only at processes made since. */
    private readonly since: PidMark | undefined,
  ) {}

  /** Makes the run's cgroup when possible; never fails (tracking falls back to the marker). */
  static async open(name: string, token: string, dir: string): Promise<RunProcesses> {
    // Before any process of the run exists (callers start none before open resolves).
    const since = pidMark();
    const root = cgroupSource.root();
    if (!root) return new RunProcesses(token, dir, undefined, "no cgroup v2 hierarchy is mounted", since);
    try {
      const cgroup = cgroupOf(root, name);
      await fs.mkdir(cgroup);
      return new RunProcesses(token, dir, cgroup, undefined, since);
    } catch (err) {
      if (err instanceof ConfineError) return new RunProcesses(token, dir, undefined, err.message, since);
      return new RunProcesses(token, dir, undefined, `cannot make a cgroup in ${root}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, since);
    }
  }

  /**
   * The shell command line that runs `script` as a member of the run: it moves itself into the
   * cgroup (its children inherit it) and then reads the script itself (`.`), stderr merged into
   * stdout. One shell, not a shell that execs another: a second exec of /bin/sh cost a build
   * about a twentieth of its CPU in a drain (bench/queue.ts). `$0` is the script's path, as it
   * is when a shell runs a file; the shell's messages name it once more (`job-1.sh: 3: job-1.sh:
   * foo: not found`).
   */
  command(script: string): string[] {
    return ["/bin/sh", "-c", `${this.join()}exec 2>&1; . "$0"`, script];
  }

  /**
   * As command, for a shell started before its job: it joins the cgroup, then waits for one line
   * on stdin (its script is written) and runs it, with stdin from /dev/null as any job's.
   */
  waitingCommand(script: string): string[] {
    return ["/bin/sh", "-c", `${this.join()}IFS= read -r DJINN_GO || exit 126; unset DJINN_GO; exec 2>&1 </dev/null; . "$0"`, script];
  }

  private join(): string {
    return this.cgroup ? `{ echo $$ > ${singleQuote(`${this.cgroup}/cgroup.procs`)}; } 2>/dev/null; ` : "";
  }

  /** What every job process gets in its environment, over the build's own variables. */
  env(): Record<string, string> {
    return { [RUN_MARKER]: this.token };
  }

  /**
   * Kills every process of the run, including those that left the job's process group; called
   * when a job ends. With a cgroup, that is enough (and cheap); without one, every process on
   * the host is looked at.
   */
  async killAll(): Promise<number> {
    if (this.cgroup) return killCgroup(this.cgroup);
    return killRun(undefined, this.token, this.dir, this.since);
  }

  /** At the end of the build: kills what is left by every net (a root job can leave a cgroup) and removes the cgroup. */
  async close(): Promise<void> {
    await killRun(this.cgroup, this.token, this.dir, this.since);
    if (this.cgroup) await removeCgroup(this.cgroup);
  }
}

/** For `check`: whether builds get a cgroup here, and where, or why not. */
export async function cgroupSupport(): Promise<string> {
  const probe = await RunProcesses.open(`check-${process.pid}`, "check", "/nonexistent");
  if (!probe.cgroup) return `no cgroup per build (${probe.noCgroup}): a build's processes are found by its DJINN_RUN marker and directory`;
  await removeCgroup(probe.cgroup);
  const where = `a cgroup per build under ${path.dirname(probe.cgroup)}`;
  let mount: Cgroup2Mount | undefined;
  try {
    mount = cgroup2Mount(readFileSync("/proc/self/mountinfo", "utf8"));
  } catch {
    return where;
  }
  if (!mount || mount.favorsDynamicChanges) return where;
  return `${where} (mounted without favordynmods: each build's first command waits some 10 ms for the kernel, see docs/os.md)`;
}

/** A run's cgroup: a child of `root` (the worker's own cgroup) and nothing else; throws ConfineError otherwise. */
export function cgroupOf(root: string, name: string): string {
  const cgroup = confinedPath(root, `djinn-${name}`, "the worker's cgroup");
  if (path.dirname(cgroup) !== path.resolve(root)) throw new ConfineError(`cgroup name ${JSON.stringify(name)} is not one directory of ${root}`);
  return cgroup;
}

/**
 * After its worker died: kills what a run left (its cgroup, its marker, its directories) and
 * removes the cgroup. A name or token read back from the host that this code cannot have made
 * (runName, run tokens) names nothing: nothing is killed.
 */
export async function reapRun(name: string, token: string, dirs: string[]): Promise<number> {
  if (!isRunToken(token) || parseRunName(name)?.run !== token) return 0;
  const root = cgroupSource.root();
  const cgroup = root ? cgroupOf(root, name) : undefined;
  let killed = 0;
  for (const dir of dirs.length ? dirs : [undefined]) killed += await killRun(cgroup, token, dir);
  if (cgroup) await removeCgroup(cgroup);
  return killed;
}

/** `since`: where pid allocation stood before the run's first process, when this worker started it (not for a dead worker's run). */
async function killRun(cgroup: string | undefined, token: string, dir: string | undefined, since?: PidMark): Promise<number> {
  let killed = 0;
  if (cgroup) killed += await killCgroup(cgroup);
  killed += await killMarked(token, dir, since);
  return killed;
}

/** Kills every process in the cgroup (cgroup.kill, or one by one on kernels before 5.14) and waits until it is empty. */
async function killCgroup(cgroup: string): Promise<number> {
  const members = await cgroupProcs(cgroup);
  if (members === undefined || members.length === 0) return 0;
  const viaKill = await fs.writeFile(path.join(cgroup, "cgroup.kill"), "1").then(
    () => true,
    () => false,
  );
  for (let i = 0; i < 100; i++) {
    const left = await cgroupProcs(cgroup);
    if (!left?.length) break;
    if (!viaKill) for (const pid of left) kill(pid);
    await sleep(20);
  }
  return members.length;
}

/**
 * The cgroup's members. A synchronous read: the kernel makes cgroup.procs from memory, without
 * the cgroup mutex a migration holds, and one read costs less than the thread-pool rounds of an
 * asynchronous readFile (open, stat, read, close); it is read at the end of every job.
 */
async function cgroupProcs(cgroup: string): Promise<number[] | undefined> {
  try {
    return readFileSync(path.join(cgroup, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number);
  } catch {
    return undefined;
  }
}

async function removeCgroup(cgroup: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    try {
      await fs.rmdir(cgroup);
      return;
    } catch (err) {
      // EBUSY: a killed process has not quite left yet.
      if ((err as NodeJS.ErrnoException).code !== "EBUSY") return;
      await sleep(20);
    }
  }
}

interface MarkedRun {
  marker: string;
  dir: string | undefined;
  since: PidMark | undefined;
  rounds: number;
  killed: number;
  done: (killed: number) => void;
}

/** Runs waiting for the next look at /proc; one pass serves every run waiting when it starts. */
const waitingRuns: MarkedRun[] = [];
let scanning = false;

/**
 * Kills the processes (other than this one) that carry the run's marker in their environment or
 * work under the run's directory; repeated until none is found (up to 5 passes), as a dying
 * shell may fork. Runs that ask at once (builds of this worker ending together) share one pass.
 */
function killMarked(token: string, dir: string | undefined, since: PidMark | undefined): Promise<number> {
  return new Promise((done) => {
    waitingRuns.push({ marker: `${RUN_MARKER}=${token}`, dir, since, rounds: 0, killed: 0, done });
    if (!scanning) void scanLoop();
  });
}

async function scanLoop(): Promise<void> {
  scanning = true;
  try {
    // Runs asking in this turn of the event loop join the first pass.
    await new Promise((resolve) => setImmediate(resolve));
    while (waitingRuns.length) {
      const runs = waitingRuns.splice(0);
      const found = scanProc(runs);
      const again = runs.filter((r, i) => {
        r.killed += found[i];
        r.rounds++;
        if (found[i] > 0 && r.rounds < 5) return true;
        r.done(r.killed);
        return false;
      });
      if (again.length) {
        await sleep(20);
        waitingRuns.push(...again);
      }
    }
  } finally {
    scanning = false;
  }
}

/**
 * One pass over /proc: kills each process marked for one of `runs`; how many each run had.
 * A run this worker started looks only at the processes made since it began (./pids.ts): every
 * process of the run is one of those, and on a busy host they are few of all.
 * Synchronous reads into one buffer: a few hundred small reads cost less so than the promise
 * and thread-pool round of each asynchronous one.
 */
function scanProc(runs: MarkedRun[]): number[] {
  const found = runs.map(() => 0);
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return found;
  }
  // Read after the listing: every pid in it was given out by now.
  const now = pidMark();
  const windows = runs.map((run) => pidWindow(run.since, now));
  for (const pid of entries) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const mine = runs.map((_run, i) => windows[i]?.(Number(pid)) ?? true);
    if (!mine.includes(true)) continue;
    const environ = readEnviron(pid);
    let r = environ === undefined ? -1 : runs.findIndex((run, i) => mine[i] && environ.includes(`\0${run.marker}\0`));
    if (r < 0 && runs.some((run, i) => mine[i] && run.dir)) {
      const cwd = readCwd(pid);
      if (cwd) r = runs.findIndex((run, i) => mine[i] && run.dir !== undefined && (cwd === run.dir || cwd.startsWith(`${run.dir}/`)));
    }
    if (r < 0) continue;
    kill(Number(pid));
    found[r]++;
  }
  return found;
}

let environBuffer = Buffer.alloc(64 * 1024);

/** A process's environment as "\0ENTRY\0ENTRY\0...\0" (latin1), so that whole entries match; undefined when unreadable. */
function readEnviron(pid: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/environ`, "r");
  } catch {
    return undefined;
  }
  try {
    let length = 0;
    for (;;) {
      if (length === environBuffer.length) {
        const bigger = Buffer.alloc(environBuffer.length * 2);
        environBuffer.copy(bigger);
        environBuffer = bigger;
      }
      const want = environBuffer.length - length;
      const n = readSync(fd, environBuffer, length, want, null);
      length += n;
      // procfs gives the whole environment up to the size asked for: a short read is its end.
      if (n < want) break;
    }
    return `\0${environBuffer.toString("latin1", 0, length)}\0`;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

function readCwd(pid: string): string {
  try {
    return readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return "";
  }
}

function kill(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Gone already.
  }
}
