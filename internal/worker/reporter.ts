// The daemon's BuildReporter: each job's progress, output and artifacts written to its rows under
// the claim, and each stage's status once its last job is done.
import type { Writable } from "node:stream";
import type { StoredArtifact } from "../fs/store.js";
import type { Logger } from "../log/log.js";
import type { BuildPlan, JobRecord, PlannedJob } from "../runner/plan.js";
import type { BuildReporter, JobResult } from "../runner/runner.js";
import { worse, type Status } from "../runner/status.js";
import type { BuildRecorder, JobEnd } from "../store/recorder.js";
import { JobOutputSink } from "../store/output.js";
import type { PhaseClock } from "../timers/phases.js";

/** Runs one write of the build's records; the caller decides what a write that keeps failing means. */
export type RecordWrite = (what: string, fn: () => Promise<void>) => Promise<void>;

export interface DatabaseReporterOptions {
  /** Most bytes of output stored per job (0 = no limit). */
  outputLimit: number;
  log: Logger;
  /** A line put first into the first job's output (why this is not the build's first run). */
  firstNote?: string;
  /** Marked when the environment is ready (create-driver ended) and when the first command starts. */
  phases?: PhaseClock;
}

export class DatabaseReporter implements BuildReporter {
  private readonly sinks = new Map<number, JobOutputSink>();
  /** Each running job's start, being written. */
  private readonly starts = new Map<number, Promise<void>>();
  /** Per stage row: jobs not finished yet, and the worst status so far. */
  private readonly stages = new Map<number, { left: number; status?: Status }>();
  private note: string | undefined;
  /** Jobs not finished yet: the runner finishes each planned job once, in plan order. */
  private jobsLeft: number;
  /**
   * The end of the job before, not written yet: it goes with the next job's start (one
   * statement, not two), or before whatever else is written next.
   */
  private pendingEnd: JobEnd | undefined;

  /** `plan`'s jobs carry their rows (../runner/plan.ts JobRecord). */
  constructor(
    plan: BuildPlan,
    private readonly recorder: BuildRecorder,
    private readonly write: RecordWrite,
    private readonly opts: DatabaseReporterOptions,
  ) {
    const jobs = plan.stages.flatMap((s) => s.jobs);
    this.jobsLeft = jobs.length;
    for (const job of jobs) {
      const stage = this.stages.get(recordOf(job).stageId) ?? { left: 0 };
      stage.left++;
      this.stages.set(recordOf(job).stageId, stage);
    }
    this.note = opts.firstNote;
  }

  async jobStarted(job: PlannedJob): Promise<Writable> {
    if (!job.createsDriver && !job.name.startsWith("clone.")) this.opts.phases?.mark("first command");
    const r = recordOf(job);
    // Not waited for: the job starts while its row says so; the job's end waits for it (and
    // fails with it), and a failed write stops the build meanwhile.
    const previous = this.pendingEnd;
    this.pendingEnd = undefined;
    const started = this.write("job start", () => this.recorder.jobStarted(r.id, r.stageId, previous));
    started.catch(() => undefined);
    this.starts.set(r.id, started);
    const sink = new JobOutputSink({ limit: this.opts.outputLimit, keepRest: true, append: (text) => this.write("output", () => this.recorder.appendOutput(r.id, text)) });
    sink.on("error", (err) => this.opts.log.warn({ err: err.message }, "output not stored"));
    this.sinks.set(r.id, sink);
    if (this.note) sink.write(this.note);
    this.note = undefined;
    return sink;
  }

  async jobFinished(job: PlannedJob, result: JobResult): Promise<void> {
    const r = recordOf(job);
    const started = this.starts.get(r.id);
    this.starts.delete(r.id);
    await started;
    await this.writePendingEnd();
    const stage = this.stages.get(r.stageId)!;
    const stageStatus = stage.status ? worse(stage.status, result.status) : result.status;
    const sink = this.sinks.get(r.id);
    // The runner has ended the sink and waited for it: what it kept goes with the job's end, and
    // so does the stage's end when this was its last job (one statement).
    const end: JobEnd = {
      jobId: r.id,
      status: result.status,
      exitCode: result.exitCode,
      outputBytes: sink?.storedBytes ?? 0,
      rest: sink && !sink.failed ? sink.takeRest() : "",
      stage: stage.left === 1 ? { id: r.stageId, status: stageStatus } : undefined,
    };
    this.sinks.delete(r.id);
    stage.status = stageStatus;
    stage.left--;
    this.jobsLeft--;
    if (job.createsDriver) this.opts.phases?.mark("environment");
    // A job that ran, with another after it: its end goes with what is written next, most often
    // the next job's start, which the runner makes at once.
    if (this.jobsLeft > 0 && result.status !== "skipped") this.pendingEnd = end;
    else await this.write("job finish", () => this.recorder.jobEnded(end));
  }

  /** The job before's end, when nothing has carried it yet. */
  private async writePendingEnd(): Promise<void> {
    const end = this.pendingEnd;
    this.pendingEnd = undefined;
    if (end) await this.write("job finish", () => this.recorder.jobEnded(end));
  }

  async artifactStored(job: PlannedJob, artifact: StoredArtifact & { source: string }): Promise<void> {
    const r = recordOf(job);
    await this.writePendingEnd();
    await this.write("artifact", () => this.recorder.artifactStored(r.id, artifact));
  }
}

function recordOf(job: PlannedJob): JobRecord {
  if (!job.record) throw new Error(`job ${job.stage}/${job.name} has no row`);
  return job.record;
}
