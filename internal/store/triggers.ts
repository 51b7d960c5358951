// What started a build pushed to a repository (build_triggers), and the webhook deliveries acted
// on (deliveries): both written in the transaction that stores the builds, so a delivery is either
// recorded with all its builds or not at all.
import { randomBytes } from "node:crypto";
import type pg from "pg";
import { setupStageName } from "../manifest/names.js";
import type { BuildId } from "../queue/build-id.js";
import { createDriverJob } from "../runner/plan.js";
import type { Status } from "../runner/status.js";
import { insertPlanRows } from "./builds.js";

/** The push (or pull request) a build was started by. */
export interface Trigger {
  /** github, gitlab, gitea, forgejo or git. */
  provider: string;
  /** The repository as its forge names it (owner/name), or its URL. */
  repository: string;
  /** The pushed ref (refs/heads/main, refs/tags/v1, refs/pull/7/head). */
  ref: string;
  commit: string;
  /** `Name <email>`, or the forge's user name when no address is given. */
  author: string;
  /** The commit's message, or the pull request's title. */
  message: string;
  /** The manifest's path in the repository (.djinn.yml, .djinn/lint.yml). */
  manifest?: string;
}

export async function insertTrigger(client: pg.PoolClient, id: BuildId, t: Trigger): Promise<void> {
  await client.query(`INSERT INTO build_triggers (build_id, provider, repository, ref, commit, author, message, manifest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, [
    id,
    t.provider,
    t.repository,
    t.ref,
    t.commit,
    t.author,
    t.message,
    t.manifest ?? "",
  ]);
}

/** The trigger in one line, as `status` and the failure mail show it. */
export function triggerLine(t: Trigger): string {
  return `pushed: ${t.provider} ${t.repository} ${t.ref} ${t.commit.slice(0, 12)}${t.author ? ` by ${t.author}` : ""}${t.message ? `: ${t.message}` : ""}`;
}

/** The trigger of build `id`, if a push started it. */
export async function buildTrigger(db: pg.Pool | pg.PoolClient, id: number): Promise<Trigger | undefined> {
  const r = await db.query(`SELECT provider, repository, ref, commit, author, message FROM build_triggers WHERE build_id = $1`, [id]);
  return r.rows[0];
}

/**
 * Takes delivery `delivery` of `provider` for this transaction: false when it was taken before
 * (a concurrent taker waits here until the first commits or rolls back).
 */
export async function takeDelivery(client: pg.PoolClient, provider: string, delivery: string): Promise<boolean> {
  const r = await client.query(`INSERT INTO deliveries (provider, delivery) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1`, [provider, delivery]);
  return r.rowCount === 1;
}

export async function setDeliveryBuilds(client: pg.PoolClient, provider: string, delivery: string, ids: BuildId[]): Promise<void> {
  await client.query(`UPDATE deliveries SET builds = $3 WHERE provider = $1 AND delivery = $2`, [provider, delivery, ids]);
}

/** The builds a delivery started, when it was acted on before. */
export async function deliveredBuilds(pool: pg.Pool, provider: string, delivery: string): Promise<BuildId[] | undefined> {
  const r = await pool.query(`SELECT builds FROM deliveries WHERE provider = $1 AND delivery = $2`, [provider, delivery]);
  return r.rowCount === 0 ? undefined : (r.rows[0].builds as string[]).map((id) => Number(id) as BuildId);
}

/** A manifest that was refused: what the failed build records. */
export interface RefusedManifest {
  /** The manifest as found (its size already checked). */
  text: string;
  /** The one line saying which file, line and what is wrong. */
  reason: string;
  notify: string[];
}

/**
 * A build that failed before it could be queued: its setup job failed, its output the reason, so
 * the pusher sees the mistake where builds are shown. Inside the caller's transaction.
 */
export async function insertRefusedBuild(client: pg.PoolClient, m: RefusedManifest): Promise<BuildId> {
  const failed: Status = "failed";
  const r = await client.query(
    `INSERT INTO builds (secret, driver, manifest, notify, status, started_at, finished_at) VALUES ($1, $2, $3, $4, $5, now(), now()) RETURNING id`,
    [randomBytes(24).toString("hex"), JSON.stringify({ type: "" }), m.text, m.notify, failed],
  );
  const id = Number(r.rows[0].id) as BuildId;
  const setup = setupStageName(String(id));
  await insertPlanRows(client, id, { stages: [{ name: setup, canFail: false, jobs: [createDriverJob(setup)] }] }, []);
  await client.query(`UPDATE stages SET status = $2, started_at = now(), finished_at = now() WHERE build_id = $1`, [id, failed]);
  const job = await client.query(`UPDATE jobs SET status = $2, started_at = now(), finished_at = now() WHERE build_id = $1 RETURNING id`, [id, failed]);
  const output = `${m.reason}\n`;
  await client.query(`INSERT INTO job_output (build_id, job_id, data) VALUES ($1, $2, $3)`, [id, job.rows[0].id, output]);
  await client.query(`UPDATE jobs SET output_bytes = $2 WHERE id = $1`, [job.rows[0].id, Buffer.byteLength(output)]);
  return id;
}
