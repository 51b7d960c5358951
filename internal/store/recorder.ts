// The writes of one claimed run of a build, each guarded by its claim (worker and attempt), so a
// worker that lost its claim can never overwrite another's run; each announces itself (NOTIFY)
// to whoever follows the build live.
import type pg from "pg";
import type { Status } from "../runner/status.js";
import { ClaimLostError, inTransaction, resetRun, RUNNING } from "./builds.js";

/** The channel the recorder's writes are announced on; the payload is the build's id, nothing more. */
export const BUILD_CHANNEL = "djinn_build";

/**
 * Ends a guarded write: one row (and one NOTIFY, delivered when the write commits) per row the
 * write's CTE `cte` changed, so the statement's row count still tells whether the claim held.
 */
const NOTIFY_FROM = (cte: string) => `SELECT pg_notify('${BUILD_CHANNEL}', $1::text) FROM ${cte}`;

/** A job's end as written: the last of its output (`rest`, may be empty), and its stage's end when the stage ended with it. */
export interface JobEnd {
  jobId: number;
  status: Status;
  exitCode: number | undefined;
  outputBytes: number;
  rest: string;
  stage?: { id: number; status: Status };
}

/**
 * The CTEs o, j and es of a job's end, parameters $5–$11 (endParams); `j` returns its row. A
 * skipped job never ran: it has no times. One text for every status, so each statement that
 * holds it is prepared once.
 */
const ENDING_JOB = (guard: string) => `WITH o AS (INSERT INTO job_output (build_id, job_id, data) SELECT $1, $5, $9 WHERE $9 <> '' AND ${guard}),
   j AS (UPDATE jobs SET status = $6, exit_code = $7, output_bytes = $8,
     started_at = CASE WHEN $6 = '${"skipped" satisfies Status}' THEN started_at ELSE coalesce(started_at, now()) END,
     finished_at = CASE WHEN $6 = '${"skipped" satisfies Status}' THEN NULL ELSE now() END
     WHERE id = $5 AND ${guard} RETURNING 1),
   es AS (UPDATE stages SET status = $11, finished_at = now() WHERE id = $10 AND ${guard})`;

const endParams = (e: JobEnd) => [e.jobId, e.status, e.exitCode ?? null, e.outputBytes, e.rest, e.stage?.id ?? null, e.stage?.status ?? null];

/** The writes of one claimed run of a build; each fails with ClaimLostError once the claim is gone. */
export class BuildRecorder {
  constructor(
    private readonly pool: pg.Pool,
    readonly buildId: number,
    readonly worker: string,
    readonly attempt: number,
  ) {}

  /** $1–$4 of every guarded statement: the build, its claim (worker, attempt) and `running`; a statement's own parameters are $5 on. */
  private readonly guard = `EXISTS (SELECT 1 FROM builds WHERE id = $1 AND worker = $2 AND attempt = $3 AND status = $4)`;

  /** `name` prepares the statement once per connection: the recorder's statements run for every build. */
  private async guarded(sql: string, params: unknown[], name?: string): Promise<void> {
    const r = await this.pool.query({ name, text: sql, values: [this.buildId, this.worker, this.attempt, RUNNING, ...params] });
    if (r.rowCount === 0) throw new ClaimLostError(`build ${this.buildId}: claim lost (another worker took it over)`);
  }

  /** Throws ClaimLostError unless this run still holds the build. */
  async assertHeld(): Promise<void> {
    const r = await this.pool.query(`SELECT 1 FROM builds WHERE id = $1 AND worker = $2 AND attempt = $3 AND status = $4`, [this.buildId, this.worker, this.attempt, RUNNING]);
    if (r.rowCount === 0) throw new ClaimLostError(`build ${this.buildId}: claim lost (another worker took it over, or it is finished)`);
  }

  /**
   * A job's start; with `previous`, the end of the job before it in the same statement (see
   * jobEnded), so that going from one job to the next is one round trip. `previous`'s stage, when
   * it ended with it, is never this job's: a stage ends with its last job.
   */
  jobStarted(jobId: number, stageId: number, previous?: JobEnd): Promise<void> {
    if (!previous) {
      return this.guarded(
        `WITH s AS (UPDATE stages SET status = $4, started_at = coalesce(started_at, now()) WHERE id = $6 AND ${this.guard}),
         j AS (UPDATE jobs SET status = $4, started_at = now() WHERE id = $5 AND ${this.guard} RETURNING 1)
         ${NOTIFY_FROM("j")}`,
        [jobId, stageId],
        "djinn-job-started",
      );
    }
    return this.guarded(
      `${ENDING_JOB(this.guard)},
       s AS (UPDATE stages SET status = $4, started_at = coalesce(started_at, now()) WHERE id = $13 AND ${this.guard}),
       n AS (UPDATE jobs SET status = $4, started_at = now() WHERE id = $12 AND ${this.guard} RETURNING 1)
       ${NOTIFY_FROM("n")}`,
      [...endParams(previous), jobId, stageId],
      "djinn-job-handover",
    );
  }

  /**
   * A job's end in one statement: the last of its output (`rest`, may be empty), its row, and
   * its stage's row when `stage` says the stage ended with it.
   */
  jobEnded(end: JobEnd): Promise<void> {
    return this.guarded(`${ENDING_JOB(this.guard)} ${NOTIFY_FROM("j")}`, endParams(end), "djinn-job-ended");
  }

  appendOutput(jobId: number, text: string): Promise<void> {
    return this.guarded(`WITH o AS (INSERT INTO job_output (build_id, job_id, data) SELECT $1, $5, $6 WHERE ${this.guard} RETURNING 1) ${NOTIFY_FROM("o")}`, [jobId, text], "djinn-output");
  }

  artifactStored(jobId: number, a: { source: string; name: string; size: number; sha256: string; path: string }): Promise<void> {
    return this.guarded(
      `INSERT INTO artifacts (build_id, job_id, source, name, size, sha256, path) SELECT $1, $5, $6, $7, $8, $9, $10 WHERE ${this.guard}`,
      [jobId, a.source, a.name, a.size, a.sha256, a.path],
    );
  }

  finish(status: Status): Promise<void> {
    // A retry of a write whose reply was lost finds the status already written: that is success too.
    return this.guarded(
      `WITH b AS (UPDATE builds SET status = $5, finished_at = coalesce(CASE WHEN status = $5 THEN finished_at END, now()), lease_expires_at = NULL WHERE id = $1 AND worker = $2 AND attempt = $3 AND status IN ($4, $5) RETURNING 1)
       ${NOTIFY_FROM("b")}`,
      [status],
      "djinn-finish",
    );
  }

  /** Gives the build back (shutdown, unwritable result): queued again, this run's rows reset, the claim free. */
  async release(): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      // Never a finished build: its result stands.
      const r = await client.query(`UPDATE builds SET status = $5, lease_expires_at = NULL WHERE id = $1 AND worker = $2 AND attempt = $3 AND status = $4`, [this.buildId, this.worker, this.attempt, RUNNING, "queued" satisfies Status]);
      if (r.rowCount === 0) throw new ClaimLostError(`build ${this.buildId}: claim lost (another worker took it over)`);
      await resetRun(client, this.buildId);
    });
  }
}
