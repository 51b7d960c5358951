// Cancelling a build no worker has started: it ends as killed, with a line saying so in the output
// of its first job, in one transaction that locks the row as a claim does, so a worker that takes
// its payload afterwards finds it finished (claimBuild refuses a finished build).
import type pg from "pg";
import { setupStageName } from "../manifest/names.js";
import type { BuildId } from "../queue/build-id.js";
import { createDriverJob } from "../runner/plan.js";
import type { Status } from "../runner/status.js";
import { inTransaction, insertPlanRows } from "./builds.js";

/** The first line of a cancelled build's output. */
export const CANCELLED_NOTE = "--- cancelled before it ran (kill of a queued build) ---\n";

/** Kills build `id` if it is still queued; its status otherwise (a worker has it, or it is over). */
export async function cancelQueuedBuild(pool: pg.Pool, id: BuildId): Promise<{ cancelled: true } | { cancelled: false; status: Status | undefined }> {
  return inTransaction(pool, async (client) => {
    const cur = await client.query(`SELECT status FROM builds WHERE id = $1 FOR UPDATE`, [id]);
    const status = cur.rows[0]?.status as Status | undefined;
    // Nothing written: committing only lets the row go.
    if (status !== "queued") return { cancelled: false, status };
    await client.query(`UPDATE builds SET status = $2, finished_at = now(), lease_expires_at = NULL WHERE id = $1`, [id, "killed" satisfies Status]);
    const first = await firstJob(client, id);
    await client.query(`UPDATE jobs SET status = $2 WHERE build_id = $1`, [id, "skipped" satisfies Status]);
    await client.query(`UPDATE stages SET status = $2 WHERE build_id = $1`, [id, "skipped" satisfies Status]);
    await client.query(`UPDATE jobs SET status = $2, finished_at = now() WHERE id = $1`, [first.job, "killed" satisfies Status]);
    await client.query(`UPDATE stages SET status = $2, finished_at = now() WHERE id = $1`, [first.stage, "killed" satisfies Status]);
    await client.query(`INSERT INTO job_output (build_id, job_id, data) VALUES ($1, $2, $3)`, [id, first.job, CANCELLED_NOTE]);
    return { cancelled: true };
  });
}

/** The build's first job, its setup rows written first when its producer wrote none. */
async function firstJob(client: pg.PoolClient, id: BuildId): Promise<{ job: number; stage: number }> {
  const query = () => client.query(`SELECT j.id, j.stage_id FROM jobs j JOIN stages s ON s.id = j.stage_id WHERE j.build_id = $1 ORDER BY s.position, j.position LIMIT 1`, [id]);
  let r = await query();
  if (r.rowCount === 0) {
    // Stages without jobs differ from any plan (a worker would rewrite them too).
    await client.query(`DELETE FROM stages WHERE build_id = $1`, [id]);
    const setup = setupStageName(String(id));
    await insertPlanRows(client, id, { stages: [{ name: setup, canFail: false, jobs: [createDriverJob(setup)] }] }, []);
    r = await query();
  }
  return { job: Number(r.rows[0].id), stage: Number(r.rows[0].stage_id) };
}

/**
 * Deletes the builds of a batch that could not be queued, and its delivery, in one transaction:
 * false (nothing deleted) when a worker has claimed one of `queued` since.
 */
export async function withdrawBatch(pool: pg.Pool, queued: BuildId[], refused: BuildId[], delivery?: { provider: string; id: string }): Promise<boolean> {
  try {
    await inTransaction(pool, async (client) => {
      const r = await client.query(`DELETE FROM builds WHERE id = ANY($1::bigint[]) AND status = $2 AND attempt = 0`, [queued, "queued" satisfies Status]);
      // Thrown to roll back the deletes made so far.
      if (r.rowCount !== queued.length) throw new ClaimedMeanwhile();
      await client.query(`DELETE FROM builds WHERE id = ANY($1::bigint[])`, [refused]);
      if (delivery) await client.query(`DELETE FROM deliveries WHERE provider = $1 AND delivery = $2`, [delivery.provider, delivery.id]);
    });
    return true;
  } catch (err) {
    if (err instanceof ClaimedMeanwhile) return false;
    throw err;
  }
}

/** A build of the batch was claimed by a worker since it was queued: the batch stays. */
class ClaimedMeanwhile extends Error {}
