// Which process a run's workspace belongs to, so that what a killed worker left on this host is
// found even when its builds were run again on another machine (whose reap cannot see this one).
// Everything read back is checked: the directory and record are this user's (in the host state
// root only this user may write to), and every name has the exact shape this code gives it.
import { readFileSync, writeFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { RunRef } from "../driver.js";
import { ownedByMe, readOwnFile } from "../../fs/private.js";
import { isRunToken, parseRunName, runName } from "../run.js";
import { reapRun } from "./processes.js";

const OWNER_FILE = "owner.json";
/** Every os-driver workspace directory starts with this, in the host state root (../run.ts hostStateRoot). */
export const WORKSPACE_PREFIX = "djinn-build-";

interface Owner {
  pid: number;
  /** The process's start time (clock ticks since boot): a pid reused by another process does not match. */
  started: string;
  name: string;
  run: string;
}

function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command (which may hold spaces and parentheses): state is 3rd, starttime 22nd.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** This process's start time: read once, it never changes. */
let ownStart: string | undefined;

/** Records this process as the owner of the run's directory: the first thing written into it. */
export function writeOwner(dir: string, ref: RunRef): void {
  ownStart ??= startTime(process.pid) ?? "";
  const owner: Owner = { pid: process.pid, started: ownStart, name: runName(ref), run: ref.run };
  // A hundred bytes into the run's own new directory: written at once, where an asynchronous
  // write would cost three thread-pool rounds (open, write, close) for every build.
  writeFileSync(path.join(dir, OWNER_FILE), JSON.stringify(owner), { mode: 0o600 });
}

/** The owner record's path in a run's directory: removed last, so a half-removed run is still found. */
export function ownerFile(dir: string): string {
  return path.join(dir, OWNER_FILE);
}

/**
 * The run name in a workspace directory's name, `djinn-build-<run name>-XXXXXX` (mkdtemp's six
 * letters and digits), or undefined when this driver cannot have made the directory.
 */
export function runNameOfWorkspace(entry: string): string | undefined {
  if (!entry.startsWith(WORKSPACE_PREFIX)) return undefined;
  const m = /^(.+)-[A-Za-z0-9]{6}$/.exec(entry.slice(WORKSPACE_PREFIX.length));
  return m && parseRunName(m[1]) ? m[1] : undefined;
}

/**
 * An owner record as read back, when it has exactly the shape writeOwner gives it and names the
 * run of the directory it is in (`runNameOfDir`); anything else is no record at all.
 */
export function validOwner(value: unknown, runNameOfDir: string): Owner | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const o = value as Record<string, unknown>;
  if (!Number.isInteger(o.pid) || (o.pid as number) <= 0) return undefined;
  if (typeof o.started !== "string" || !/^\d*$/.test(o.started)) return undefined;
  if (!isRunToken(o.run) || o.name !== runNameOfDir || parseRunName(o.name)?.run !== o.run) return undefined;
  return { pid: o.pid as number, started: o.started, name: o.name, run: o.run };
}

async function readOwner(dir: string, name: string): Promise<Owner | undefined> {
  const text = await readOwnFile(path.join(dir, OWNER_FILE));
  if (text === undefined) return undefined;
  try {
    return validOwner(JSON.parse(text), name);
  } catch {
    return undefined;
  }
}

/**
 * Kills the processes of, and removes, every workspace in `root` whose owning process has died
 * (a worker killed with -9). Workspaces of live processes (this worker's, other workers' or
 * `djinn-worker run`s of this user on this host) are left alone, and so is anything without a
 * valid owner record of this user's: a name of another shape, another user's file or directory.
 */
export async function sweepOrphans(root: string, log: Logger): Promise<number> {
  let removed = 0;
  for (const entry of await fs.readdir(root).catch(() => [] as string[])) {
    const name = runNameOfWorkspace(entry);
    if (!name) continue;
    const dir = path.join(root, entry);
    if (!(await ownedByMe(dir, "directory"))) continue;
    const owner = await readOwner(dir, name);
    if (!owner || (owner.pid === process.pid ? true : startTime(owner.pid) === owner.started)) continue;
    const killed = await reapRun(owner.name, owner.run, [dir]);
    await fs.rm(dir, { recursive: true, force: true, maxRetries: 3 });
    log.info({ workspace: dir, deadWorkerPid: owner.pid, killed }, "removed a workspace whose worker died");
    removed++;
  }
  return removed;
}
