// Runs a build plan on a driver with Djinn's semantics: stages in order, jobs in order, a failed
// job stops the build unless its stage may fail, timeout and kill stop it at once, and the
// driver is destroyed whatever happens.
import type { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { formatDuration } from "../timers/duration.js";
import { DriverError, type Driver, type ExecResult } from "../driver/driver.js";
import type { Passthrough } from "../manifest/manifest.js";
import { ArtifactStore, ObjectStore, type StoredArtifact } from "../fs/store.js";
import { collectArtifacts } from "./collect.js";
import { restoreCache, saveCache, type CacheContext } from "./cache.js";
import { writeDrained } from "../stream/write.js";
import { MaskStream } from "./mask.js";
import { outcomeLines } from "./outcome.js";
import { jobScript, type BuildPlan, type PlannedJob } from "./plan.js";
import { isFailure, worse, type Status } from "./status.js";

export interface JobResult {
  status: Status;
  /** The job script's exit code, when it ran to an end. */
  exitCode?: number;
}

/** Where a build's progress goes: the terminal for `run`, the database for the daemon. */
export interface BuildReporter {
  /** A job begins; returns where its (already masked) output goes. The runner ends that stream and waits for it to finish. */
  jobStarted(job: PlannedJob): Promise<Writable> | Writable;
  /** A job ended, or (status skipped) will never run. */
  jobFinished(job: PlannedJob, result: JobResult): Promise<void> | void;
  artifactStored?(job: PlannedJob, artifact: StoredArtifact & { source: string }): Promise<void> | void;
}

export interface RunOptions {
  plan: BuildPlan;
  driver: Driver;
  /** The build's variables, in order of precedence (later wins). */
  env: Record<string, string>;
  /** Values never to show: replaced by xxxxxx in every byte of output. */
  masks: string[];
  /** Without a store (a worker with no [objects] path), each object gets a note instead. */
  objects?: { store?: ObjectStore; list: Passthrough[] };
  /** Without it (a worker with no [artifacts] path), a job's artifacts get a note instead. */
  artifacts?: ArtifactStore;
  reporter: BuildReporter;
  /** The build's cache, when its manifest has `cache:`: its restore-cache and save-cache jobs use it. */
  cache?: CacheContext;
  /** Aborting it kills the build (status killed). */
  signal?: AbortSignal;
  /** 0 or undefined = no timeout; past it the build is timed_out. */
  timeoutMs?: number;
  /** How long a driver may take to stop a job after an abort before the runner moves on to destroy it. */
  abortGraceMs?: number;
}

export async function runBuild(opts: RunOptions): Promise<Status> {
  const stop = new AbortController();
  let ending: "killed" | "timed_out" | undefined;
  const onKill = () => {
    ending ??= "killed";
    stop.abort();
  };
  if (opts.signal?.aborted) onKill();
  opts.signal?.addEventListener("abort", onKill, { once: true });
  const timer = opts.timeoutMs ? setTimeout(() => {
    ending ??= "timed_out";
    stop.abort();
  }, opts.timeoutMs) : undefined;

  let status: Status = "passed";
  let stopped = false;
  try {
    for (const stage of opts.plan.stages) {
      for (const job of stage.jobs) {
        if (stopped || stop.signal.aborted) {
          await opts.reporter.jobFinished(job, { status: "skipped" });
          continue;
        }
        const result = await runJob(opts, job, stop.signal, () => ending);
        if (result.status === "failed" && stage.canFail) result.status = "passed_with_failures";
        await opts.reporter.jobFinished(job, result);
        status = worse(status, result.status);
        if (isFailure(result.status)) stopped = true;
      }
    }
  } finally {
    if (timer) clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onKill);
    await opts.driver.destroy().catch(() => undefined);
  }
  return ending ? worse(status, ending) : status;
}

/**
 * A build that cannot start: `reason` goes into its first job's output, through the masking
 * filter like every other byte of output (a manifest error may quote a masked value), and the
 * other jobs are skipped.
 */
export async function reportSetupFailure(plan: BuildPlan, reason: string, masks: string[], reporter: BuildReporter): Promise<Status> {
  const [first, ...rest] = plan.stages.flatMap((s) => s.jobs);
  const sink = await reporter.jobStarted(first);
  const output = new MaskStream(masks);
  const delivered = pipeline(output, sink);
  output.end(`${reason}\n`);
  await delivered;
  await reporter.jobFinished(first, { status: "failed" });
  for (const job of rest) await reporter.jobFinished(job, { status: "skipped" });
  return "failed";
}

async function runJob(opts: RunOptions, job: PlannedJob, signal: AbortSignal, ending: () => "killed" | "timed_out" | undefined): Promise<JobResult> {
  const sink = await opts.reporter.jobStarted(job);
  const output = new MaskStream(opts.masks);
  // Not pipe(): a sink that fails (its database gone) must end `output` too, or whoever writes
  // into it waits for a drain that never comes.
  const delivered = pipeline(output, sink).catch(() => undefined);
  const note = async (line: string) => {
    await writeDrained(output, `${line}\n`);
  };
  let result: JobResult;
  try {
    if (job.createsDriver) {
      result = await createEnvironment(opts, output, note, signal);
    } else if (job.cache) {
      // Never fails the build: whatever goes wrong is a line, and the build goes on cold.
      await (job.cache === "restore" ? restoreCache : saveCache)(opts.cache, opts.driver, note, signal);
      result = { status: "passed", exitCode: 0 };
    } else if (job.commands.length === 0) {
      // An artifact-only job: it collects what earlier jobs left.
      result = { status: "passed", exitCode: 0 };
    } else {
      const run = opts.driver.execute({ name: `${job.stage}/${job.name}`, script: jobScript(job.commands), env: opts.env, output, signal });
      const ended = await untilSettledOrAbandoned(run, signal, opts.abortGraceMs ?? 15_000);
      result = ended === undefined ? { status: "failed" } : { status: ended.exitCode === 0 ? "passed" : "failed", exitCode: ended.exitCode };
      if (ended !== undefined && !signal.aborted) for (const line of outcomeLines(job.name, ended)) await note(line);
    }
    if (signal.aborted) {
      const why = ending() ?? "killed";
      result = { status: why };
      await note(why === "timed_out" ? `build timed out after ${formatDuration(opts.timeoutMs ?? 0)}` : "build killed");
    } else if (job.artifacts.length && opts.artifacts) {
      const lost = await collectArtifacts({ driver: opts.driver, artifacts: opts.artifacts, reporter: opts.reporter, masks: opts.masks }, job, note);
      // An artifact that exists but could not be brought out or stored is lost: the job fails rather than pass without it.
      if (lost && !isFailure(result.status)) {
        result = { ...result, status: "failed" };
        await note(`job ${job.name} failed: ${lost === 1 ? "an artifact" : `${lost} artifacts`} could not be collected (see above)`);
      }
    } else if (job.artifacts.length) {
      await note(`artifacts not collected: no artifact store is configured here ([artifacts] path)`);
    }
  } catch (err) {
    const msg = err instanceof DriverError ? err.message : `internal error: ${(err as Error).message}`;
    await note(msg).catch(() => undefined);
    result = { status: signal.aborted ? ending() ?? "killed" : "failed" };
  } finally {
    output.end();
    await delivered;
  }
  return result!;
}

async function createEnvironment(opts: RunOptions, output: Writable, note: (l: string) => Promise<void>, signal: AbortSignal): Promise<JobResult> {
  try {
    await opts.driver.create(output, signal);
  } catch (err) {
    await note(`driver: ${(err as Error).message}`);
    return { status: "failed" };
  }
  let missing = 0;
  for (const obj of opts.objects?.list ?? []) {
    if (signal.aborted) break;
    if (!opts.objects!.store) {
      await note(`object ${obj.source} not placed: no object store is configured here ([objects] path)`);
      continue;
    }
    try {
      const { stream, size } = await opts.objects!.store.open(obj.source);
      await opts.driver.place(obj.dest, stream, size);
      await note(`Placed object ${obj.source} => ${obj.dest}`);
    } catch (err) {
      await note(`object ${obj.source} not placed: ${(err as Error).message}`);
      missing++;
    }
  }
  // As in Djinn: a build whose objects are not all there does not run (each was tried, to say every reason at once).
  if (missing) {
    await note(`${missing === 1 ? "an object was" : `${missing} objects were`} not placed: the build does not run without ${missing === 1 ? "it" : "them"}`);
    return { status: "failed" };
  }
  return { status: "passed", exitCode: 0 };
}

/** Waits for a job; after an abort, gives the driver `graceMs` to stop it, then gives up on it (destroy follows). */
async function untilSettledOrAbandoned(run: Promise<ExecResult>, signal: AbortSignal, graceMs: number): Promise<ExecResult | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const abandoned = new Promise<undefined>((resolve) => {
    const arm = () => {
      timer = setTimeout(() => resolve(undefined), graceMs);
    };
    if (signal.aborted) arm();
    else signal.addEventListener("abort", arm, { once: true });
  });
  try {
    return await Promise.race([run, abandoned]);
  } finally {
    if (timer) clearTimeout(timer);
    run.catch(() => undefined);
  }
}
