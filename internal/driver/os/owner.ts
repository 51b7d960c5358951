// Which process a run's workspace belongs to, so that what a killed worker left on this host is
// found even when its builds were run again on another machine (whose reap cannot see this one).
import { readFileSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import type { Logger } from "../../log/log.js";
import type { RunRef } from "../driver.js";
import { runName } from "../run.js";
import { reapRun } from "./processes.js";

const OWNER_FILE = "owner.json";
/** Every os-driver workspace directory starts with this, in os.tmpdir(). */
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

/** Records this process as the owner of the run's directory: the first thing written into it. */
export async function writeOwner(dir: string, ref: RunRef): Promise<void> {
  const owner: Owner = { pid: process.pid, started: startTime(process.pid) ?? "", name: runName(ref), run: ref.run };
  await fs.writeFile(path.join(dir, OWNER_FILE), JSON.stringify(owner), { mode: 0o600 });
}

async function readOwner(dir: string): Promise<Owner | undefined> {
  try {
    const o = JSON.parse(await fs.readFile(path.join(dir, OWNER_FILE), "utf8")) as Owner;
    return typeof o.pid === "number" && typeof o.run === "string" && typeof o.name === "string" ? o : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Kills the processes of, and removes, every workspace in `tmp` whose owning process has died
 * (a worker killed with -9). Workspaces of live processes (this worker's, other workers' or
 * `djinn-worker run`s on this host) and directories without an owner record are left alone.
 */
export async function sweepOrphans(tmp: string, log: Logger): Promise<number> {
  let removed = 0;
  for (const entry of await fs.readdir(tmp).catch(() => [] as string[])) {
    if (!entry.startsWith(WORKSPACE_PREFIX)) continue;
    const dir = path.join(tmp, entry);
    const owner = await readOwner(dir);
    if (!owner || (owner.pid === process.pid ? true : startTime(owner.pid) === owner.started)) continue;
    const killed = await reapRun(owner.name, owner.run, [dir]);
    await fs.rm(dir, { recursive: true, force: true, maxRetries: 3 });
    log.info({ workspace: dir, deadWorkerPid: owner.pid, killed }, "removed a workspace whose worker died");
    removed++;
  }
  return removed;
}
