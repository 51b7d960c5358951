// The one small interface every driver implements, and the registry that finds them by name.
import type { Readable, Writable } from "node:stream";
import type { Logger } from "pino";
import type { DriverSettings } from "./section.js";
import type { RunRef } from "./run.js";
import { EnvironmentError } from "../errors/errors.js";

export type { RunRef } from "./run.js";

export interface JobRun {
  /** Full job name, for messages. */
  name: string;
  /** A POSIX shell script (../runner/plan.ts jobScript): it stops at the first failure and shows each command as written. */
  script: string;
  /** The build's variables (manifest env, submitted and masked ones); the driver adds its own base env underneath. */
  env: Record<string, string>;
  /** Where stdout and stderr go, merged, as they come. Never end it: the runner owns it. */
  output: Writable;
  /** Aborted when the build is killed or times out: stop the job at once. */
  signal: AbortSignal;
}

/** Where packTar and unpackTar work: relative paths under the workspace, or under the job user's home (`~/`). */
export type TarBase = "workspace" | "home";

export interface PackedTar {
  archive: Readable;
  /** The paths asked for that do not exist: not in the archive. */
  missing: string[];
}

/** How a job ended, as the driver saw it; the runner words it in the job's output. */
export interface ExecResult {
  /** The job script's exit code (0 = passed; 128 + n when signal n ended it; 137 when the job was stopped). */
  exitCode: number;
  /** The kernel's out-of-memory killer ended a process of the job (said by drivers that can tell). */
  oomKilled?: boolean;
  /** The memory limit the job ran under, in MB, when it had one. */
  memoryLimitMb?: number;
  /** The environment itself stopped during the job, with this exit status: no later job can run in it. */
  environmentExitCode?: number;
}

export interface Driver {
  /** Brings the build environment up, writing progress to `output`. Throws DriverError with a message fit for the build output. */
  create(output: Writable, signal: AbortSignal): Promise<void>;
  /** Runs one job; resolves to how it ended. Writes only the job's own output, never words its outcome. */
  execute(job: JobRun): Promise<ExecResult>;
  /**
   * Writes `source` (of `size` bytes) to `dest` in the environment with permissions `mode` (0644
   * unless given: 0600 for keys). A relative `dest` is under the workspace; one starting with `~/`
   * is under the home directory of the user jobs run as.
   */
  place(dest: string, source: Readable, size: number, mode?: number): Promise<void>;
  /**
   * Opens a file of the environment for reading. A relative `path` is under the workspace, `~/...`
   * under the job user's home; throwaway environments (docker, qemu) and ssh also take absolute
   * paths, the os driver refuses anything outside the workspace. Rejects with CollectError.
   */
  collect(path: string): Promise<Readable>;
  /**
   * The files and directories a shell pattern (`*`, `?`, `[...]`) matches in the environment,
   * as paths `collect` takes (see artifacts.ts). Rejects with CollectError.
   */
  glob?(pattern: string): Promise<string[]>;
  /**
   * A tar stream of `paths` under `base` (the workspace, or the job user's home), named relative to
   * it, produced as it is read; paths that do not exist are left out and listed in `missing`. The
   * os driver keeps to its workspace (its home). For build caches (../cache/, docs/cache.md).
   */
  packTar?(base: TarBase, paths: string[], signal: AbortSignal): Promise<PackedTar>;
  /** Extracts the tar stream `archive` under `base`, streamed; resolves once every entry is written. Rejects with DriverError. */
  unpackTar?(base: TarBase, archive: Readable, signal: AbortSignal): Promise<void>;
  /** Releases everything the build used. Idempotent, never throws. */
  destroy(): Promise<void>;
}

/** A failure to create or use the environment, worded for the build's output. */
export class DriverError extends EnvironmentError {
  override name = "DriverError";
}

/** Why an artifact could not be collected; the build goes on. */
export class CollectError extends EnvironmentError {
  override name = "CollectError";
  constructor(readonly reason: "missing" | "outside" | "not-a-file" | "failed", message: string) {
    super(message);
  }
}

export interface DriverOptions {
  buildId: string;
  /**
   * This run's token (./run.ts): everything the driver leaves on the host carries it, so `reap`
   * can find exactly what a dead run left. Absent: a fresh token nothing will reap by name.
   */
  run?: string;
  /** The manifest's driver map (type, image, workspace, ...). */
  manifest: Record<string, string>;
  config: DriverSettings;
  /** worker.toml [images] path, when the daemon runs the build. */
  imagesPath?: string;
  /** The build's variables as every job gets them (JobRun.env): a driver may start a job's process ahead of the job. */
  env?: Record<string, string>;
  log: Logger;
}

export interface DriverEntry {
  /** The manifest's driver.type. */
  name: string;
  create(options: DriverOptions): Driver;
  /**
   * Removes what one run of a build left behind when its worker died; called by the worker that
   * recovers it. Touches nothing of another run or another installation.
   */
  reap?(dead: RunRef, config: DriverSettings, log: Logger): Promise<void>;
  /** Removes what runs of dead workers left on this host, whichever build they ran (at start and now and then). */
  sweep?(config: DriverSettings, log: Logger): Promise<void>;
  /** Lines for `djinn-worker check`: reachability, versions. Throws when the driver cannot work. */
  check?(config: DriverSettings): Promise<string[]>;
}

const registry = new Map<string, DriverEntry>();
const loaders = new Map<string, () => Promise<unknown>>();

export function registerDriver(entry: DriverEntry): void {
  registry.set(entry.name, entry);
}

/** Names a driver whose module is imported on first use: a command that never runs it never pays for its libraries. */
export function registerDriverModule(name: string, load: () => Promise<unknown>): void {
  loaders.set(name, load);
}

export async function getDriver(type: string): Promise<DriverEntry> {
  if (!registry.has(type)) await loaders.get(type)?.();
  const entry = registry.get(type);
  if (!entry) throw new DriverError(`unknown driver "${type}": this worker has ${driverNames().join(", ")}`);
  return entry;
}

export function driverNames(): string[] {
  return [...new Set([...registry.keys(), ...loaders.keys()])];
}
