// A job's output as the web serves it: rendered from ANSI to HTML (ansi.ts, which escapes the text), or
// as plain text; read from job_output OUTPUT_BATCH rows at a time, never whole, and followed while
// the job runs.
import type pg from "pg";
import { TERMINAL_STATUSES, type Status } from "../runner/status.js";
import type { BuildEvents } from "./live.js";
import { RECHECK_MS } from "./live.js";
import { jobOfBuild, jobOutputRows, OUTPUT_BATCH } from "./queries.js";

export { ansiConverter } from "./ansi.js";

/** The statuses of a job that will not print any more. */
export function jobOver(status: Status, buildStatus: Status): boolean {
  return status === "skipped" || TERMINAL_STATUSES.includes(status) || TERMINAL_STATUSES.includes(buildStatus);
}

/**
 * A job's stored output, in order. With `follow`, it goes on while the job runs, woken by the
 * build's notifications, and ends once the job has ended and its last row is out. `signal` ends
 * it early (the client went away).
 */
export async function* jobText(pool: pg.Pool, events: BuildEvents, buildId: number, jobId: number, follow: boolean, signal: AbortSignal): AsyncGenerator<string> {
  let after = 0;
  while (!signal.aborted) {
    const waiter = events.waiter(buildId);
    try {
      // The status before the rows: a job seen over has written its last row already.
      const job = await jobOfBuild(pool, buildId, jobId);
      for (;;) {
        const rows = await jobOutputRows(pool, jobId, after);
        for (const row of rows) {
          yield row.data;
          after = row.id;
        }
        if (rows.length < OUTPUT_BATCH || signal.aborted) break;
      }
      if (!follow || !job || jobOver(job.status, job.buildStatus)) return;
      await waiter.wait(RECHECK_MS, signal);
    } finally {
      waiter.cancel();
    }
  }
}
