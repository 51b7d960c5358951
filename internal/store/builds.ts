// Build rows: written by `submit`, claimed by the worker, read by `status` and `logs`. The writes
// a claimed run makes as it goes are the recorder's (recorder.ts), guarded by the claim.
import { randomBytes } from "node:crypto";
import type pg from "pg";
import type { Crypto } from "../crypto/crypto.js";
import type { Manifest } from "../manifest/manifest.js";
import type { BuildPlan } from "../runner/plan.js";
import { freshRunToken, isRunToken } from "../driver/run.js";
import type { BuildId } from "../queue/build-id.js";
import { maskText } from "../runner/mask.js";
import { parseStatus, TERMINAL_STATUSES, type Status } from "../runner/status.js";

/** The worker's claim on a build was taken over: it must stop and write nothing more. */
export class ClaimLostError extends Error {
  override name = "ClaimLostError";
}

export interface NewBuild {
  manifestText: string;
  manifest: Manifest;
  /** The manifest's plan for the new build's id (the setup stage is named after it): written as its stage and job rows. */
  plan: (id: number) => BuildPlan;
  env: [string, string][];
  secrets: [string, string][];
  notify: string[];
  /** Private keys placed into the build environment, stored encrypted. */
  keys?: [string, string][];
}

/** Inserts a build and everything it needs in one transaction; returns its id. */
export async function insertBuild(pool: pg.Pool, crypto: Crypto, b: NewBuild): Promise<BuildId> {
  return inTransaction(pool, (client) => insertBuildRows(client, crypto, b));
}

/** Runs `fn` in a transaction on a client of `pool`: committed when it resolves, rolled back when it throws. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const out = await fn(client);
    await client.query("COMMIT");
    return out;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** A build's rows, inside the caller's transaction; its id. */
export async function insertBuildRows(client: pg.PoolClient, crypto: Crypto, b: NewBuild): Promise<BuildId> {
  const secret = randomBytes(24).toString("hex");
  const masked = b.secrets.map(([, value]) => value);
  const manifest = storedManifest(crypto, b.manifestText, masked);
  const r = await client.query(
    `INSERT INTO builds (secret, driver, manifest, manifest_encrypted, namespace, notify) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
    [secret, JSON.stringify(maskValues(b.manifest.driver, masked)), manifest.text, manifest.encrypted, b.manifest.namespace === undefined ? null : maskText(b.manifest.namespace, masked), b.notify],
  );
  const id = Number(r.rows[0].id) as BuildId;
  await insertPlanRows(client, id, b.plan(id), masked);
  for (const o of b.manifest.objects) await client.query(`INSERT INTO objects (build_id, source, dest) VALUES ($1, $2, $3)`, [id, maskText(o.source, masked), maskText(o.dest, masked)]);
  // The manifest's env is applied by the worker from the manifest itself; rows hold what the submitter added.
  let position = 0;
  for (const [key, value] of b.env) {
    // A variable holding a masked value is stored (and masked) as one.
    if (maskText(value, masked) !== value) {
      await client.query(`INSERT INTO variables (build_id, position, key, masked, value_encrypted) VALUES ($1, $2, $3, true, $4)`, [id, position++, key, crypto.encrypt(value)]);
    } else await client.query(`INSERT INTO variables (build_id, position, key, value) VALUES ($1, $2, $3, $4)`, [id, position++, key, value]);
  }
  for (const [key, value] of b.secrets) {
    await client.query(`INSERT INTO variables (build_id, position, key, masked, value_encrypted) VALUES ($1, $2, $3, true, $4)`, [id, position++, key, crypto.encrypt(value)]);
  }
  for (const [name, key] of b.keys ?? []) {
    await client.query(`INSERT INTO keys (build_id, name, private_key_encrypted) VALUES ($1, $2, $3)`, [id, name, crypto.encrypt(key)]);
  }
  return id;
}

/**
 * One stages row per planned stage and one jobs row per planned job, positions from 0 in plan order;
 * `masked` values are replaced in the commands column.
 */
export async function insertPlanRows(client: pg.PoolClient, id: number, plan: BuildPlan, masked: string[]): Promise<void> {
  for (const [si, stage] of plan.stages.entries()) {
    const s = await client.query(`INSERT INTO stages (build_id, position, name, can_fail) VALUES ($1, $2, $3, $4) RETURNING id`, [id, si, stage.name, stage.canFail]);
    for (const [ji, job] of stage.jobs.entries()) {
      await client.query(`INSERT INTO jobs (build_id, stage_id, position, name, commands) VALUES ($1, $2, $3, $4, $5)`, [id, s.rows[0].id, ji, job.name, maskText(job.commands.join("\n"), masked)]);
    }
  }
}

/** A string map with masked values replaced in each value: the driver map as stored. */
function maskValues(map: Record<string, string>, masked: string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(map).map(([k, v]) => [k, maskText(v, masked)]));
}

/** The manifest as stored: masked values replaced in the text, which is then also kept encrypted as submitted. */
function storedManifest(crypto: Crypto, text: string, masked: string[]): { text: string; encrypted: Buffer | null } {
  const shown = maskText(text, masked);
  return shown === text ? { text, encrypted: null } : { text: shown, encrypted: crypto.encrypt(text) };
}

/** Discards what an earlier, unfinished run of a build recorded, so it can run again from the start. */
export async function resetRun(client: pg.PoolClient, id: number): Promise<void> {
  await client.query(`DELETE FROM job_output WHERE build_id = $1`, [id]);
  await client.query(`DELETE FROM artifacts WHERE build_id = $1`, [id]);
  await client.query(`UPDATE jobs SET status = $2, exit_code = NULL, output_bytes = 0, started_at = NULL, finished_at = NULL WHERE build_id = $1`, [id, "queued" satisfies Status]);
  await client.query(`UPDATE stages SET status = $2, started_at = NULL, finished_at = NULL WHERE build_id = $1`, [id, "queued" satisfies Status]);
}

export type ClaimResult =
  | {
      outcome: "claimed";
      attempt: number;
      previousWorker: string | null;
      /** This run's token (../driver/run.ts), recorded with the claim. */
      run: string;
      /** The tokens of the earlier claims, oldest first: what those runs may have left. */
      earlierRuns: string[];
      /** The build's rows, read by the claim's own statement (as loadBuild reads them). */
      build: LoadedBuild;
    }
  | { outcome: "missing" }
  | { outcome: "finished"; status: Status }
  | { outcome: "held"; worker: string };

/** The status a claimed build holds while its worker runs it: every claim-guarded statement names it. */
export const RUNNING: Status = "running";

const leaseInterval = (ms: number) => `${Math.max(1, Math.round(ms))} milliseconds`;

/**
 * Takes a build for `worker`: only when it is not finished and nobody holds a live lease on it.
 * A build claimed before (a dead worker's, or one re-queued at shutdown) has its earlier rows
 * reset in the same transaction, so it runs again from the start.
 */
export async function claimBuild(pool: pg.Pool, id: number, worker: string, leaseMs: number, manifestLimit: number): Promise<ClaimResult> {
  const run = freshRunToken();
  // One statement, so one round trip: the row is locked, checked, claimed and (for a run again)
  // its earlier records reset atomically, and read as loadBuild reads it; `attempt` is null when
  // it was not this worker's to claim.
  const r = await pool.query({ name: "djinn-claim", text: CLAIM, values: [id, worker, leaseInterval(leaseMs), run, RUNNING, TERMINAL_STATUSES, "queued" satisfies Status, manifestLimit] });
  if (r.rowCount === 0) return { outcome: "missing" };
  const row = r.rows[0];
  const status = parseStatus(row.status, `builds row ${id}`);
  if (row.attempt === null) {
    if (TERMINAL_STATUSES.includes(status)) return { outcome: "finished", status };
    return { outcome: "held", worker: row.worker };
  }
  return {
    outcome: "claimed",
    attempt: row.attempt,
    previousWorker: row.before > 0 ? row.worker : null,
    run,
    // A token that is not one of ours names nothing on the host: never used to look for files.
    earlierRuns: ((row.runs ?? []) as string[]).filter(isRunToken),
    build: loadedBuild(id, row),
  };
}

/** What AES-GCM adds to what it encrypts (nonce and tag): an encrypted manifest's size less this is the manifest's. */
const SEALED_BYTES = 28;

/** loadBuild's statement, also part of claimBuild's: $1 build, `limit` the manifest limit's parameter. */
const loadQuery = (limit: string) => `
SELECT id, secret, namespace, notify, size AS manifest_bytes,
  CASE WHEN size <= ${limit} THEN manifest ELSE '' END AS manifest,
  CASE WHEN size <= ${limit} THEN manifest_encrypted END AS manifest_encrypted,
  (SELECT coalesce(json_agg(json_build_object('key', key, 'value', value, 'masked', masked, 'value_encrypted', encode(value_encrypted, 'base64')) ORDER BY position, id), '[]')
     FROM variables WHERE build_id = $1) AS variables,
  (SELECT coalesce(json_agg(json_build_object('name', name, 'key', encode(private_key_encrypted, 'base64')) ORDER BY id), '[]') FROM keys WHERE build_id = $1) AS keys,
  (SELECT coalesce(json_agg(json_build_object('id', j.id, 'stage_id', j.stage_id, 'stage', s.name, 'name', j.name) ORDER BY s.position, j.position, j.id), '[]')
     FROM jobs j JOIN stages s ON s.id = j.stage_id WHERE j.build_id = $1) AS jobs
FROM builds, LATERAL (SELECT GREATEST(octet_length(manifest), COALESCE(octet_length(manifest_encrypted) - ${SEALED_BYTES}, 0)) AS size) s
WHERE id = $1`;

/**
 * claimBuild's statement: $1 build, $2 worker, $3 lease, $4 run token, $5 running, $6 terminal
 * statuses, $7 queued, $8 manifest limit. The build's rows are read only when the claim was made;
 * from the statement's snapshot, which the claim's own resets (statuses only) do not change.
 */
const CLAIM = `
WITH cur AS (
  SELECT id, status, worker, attempt, runs, (lease_expires_at IS NOT NULL AND lease_expires_at > now()) AS live FROM builds WHERE id = $1 FOR UPDATE),
upd AS (
  UPDATE builds b SET status = $5, worker = $2, attempt = b.attempt + 1, started_at = now(), finished_at = NULL,
    lease_expires_at = now() + $3::interval, runs = array_append(b.runs, $4::text)
  FROM cur WHERE b.id = cur.id AND NOT (cur.status = ANY($6::text[])) AND NOT (cur.worker IS NOT NULL AND cur.worker <> $2 AND cur.live)
  RETURNING b.attempt),
again AS (SELECT 1 FROM upd, cur WHERE cur.attempt > 0),
o AS (DELETE FROM job_output WHERE build_id = $1 AND EXISTS (SELECT 1 FROM again)),
a AS (DELETE FROM artifacts WHERE build_id = $1 AND EXISTS (SELECT 1 FROM again)),
j AS (UPDATE jobs SET status = $7, exit_code = NULL, output_bytes = 0, started_at = NULL, finished_at = NULL WHERE build_id = $1 AND EXISTS (SELECT 1 FROM again)),
s AS (UPDATE stages SET status = $7, started_at = NULL, finished_at = NULL WHERE build_id = $1 AND EXISTS (SELECT 1 FROM again))
SELECT cur.status, cur.worker, cur.attempt AS before, cur.runs, (SELECT attempt FROM upd) AS attempt, l.* FROM cur
LEFT JOIN LATERAL (${loadQuery("$8")}) l ON (SELECT attempt FROM upd) IS NOT NULL`;

export interface StoredVariable {
  key: string;
  value: string | null;
  masked: boolean;
  valueEncrypted: Buffer | null;
}

export interface StoredJob {
  id: number;
  stageId: number;
  stage: string;
  name: string;
}

export interface LoadedBuild {
  id: number;
  secret: string;
  /** The manifest with masked values replaced; `manifestEncrypted`, when set, holds it as submitted. */
  manifestText: string;
  manifestEncrypted: Buffer | null;
  /** The manifest's size in bytes (the larger of the two forms); over the limit, neither is loaded. */
  manifestBytes: number;
  namespace: string | null;
  notify: string[];
  variables: StoredVariable[];
  keys: { name: string; encrypted: Buffer }[];
  /** Its stage/job rows as they were when loaded, after the claim (matchPlanRows needs to write nothing when they match). */
  jobs?: StoredJob[];
}

/**
 * The build's rows. A manifest over `manifestLimit` bytes is not fetched (its text is empty and
 * `manifestBytes` says how large it is): the worker refuses it without holding or parsing it.
 */
export async function loadBuild(pool: pg.Pool, id: number, manifestLimit: number): Promise<LoadedBuild> {
  // One round trip: the row, its variables, keys and stage/job rows as JSON (bytea as base64).
  const b = await pool.query({ name: "djinn-load", text: loadQuery("$2"), values: [id, manifestLimit] });
  if (b.rowCount === 0) throw new BuildGoneError(`build ${id} not found`);
  return loadedBuild(id, b.rows[0]);
}

/** A build's rows as loadQuery reads them. */
function loadedBuild(id: number, row: pg.QueryResultRow): LoadedBuild {
  const bytes = (b64: string | null) => (b64 === null ? null : Buffer.from(b64, "base64"));
  return {
    id,
    secret: row.secret,
    manifestText: row.manifest,
    manifestEncrypted: row.manifest_encrypted,
    manifestBytes: Number(row.manifest_bytes),
    namespace: row.namespace,
    notify: row.notify ?? [],
    variables: (row.variables as { key: string; value: string | null; masked: boolean; value_encrypted: string | null }[]).map((v) => ({ key: v.key, value: v.value, masked: v.masked, valueEncrypted: bytes(v.value_encrypted) })),
    keys: (row.keys as { name: string; key: string }[]).map((k) => ({ name: k.name, encrypted: bytes(k.key)! })),
    jobs: (row.jobs as { id: number; stage_id: number; stage: string; name: string }[]).map((j) => ({ id: Number(j.id), stageId: Number(j.stage_id), stage: j.stage, name: j.name })),
  };
}

/** loadBuild found no row for the build. */
export class BuildGoneError extends Error {
  override name = "BuildGoneError";
}

async function storedJobs(db: pg.Pool | pg.PoolClient, id: number): Promise<StoredJob[]> {
  const jobs = await db.query(
    `SELECT j.id, j.stage_id, s.name AS stage, j.name FROM jobs j JOIN stages s ON s.id = j.stage_id WHERE j.build_id = $1 ORDER BY s.position, j.position, j.id`,
    [id],
  );
  return jobs.rows.map((j) => ({ id: Number(j.id), stageId: Number(j.stage_id), stage: j.stage, name: j.name }));
}

/** How the stored jobs differ from the plan's, in one phrase; undefined when they are the same. */
function planDifference(stored: StoredJob[], plan: BuildPlan): string | undefined {
  const planned = plan.stages.flatMap((s) => s.jobs.map((j) => `${s.name} / ${j.name}`));
  const have = stored.map((j) => `${j.stage} / ${j.name}`);
  for (let i = 0; i < Math.max(planned.length, have.length); i++) {
    if (planned[i] === have[i]) continue;
    const row = have[i] === undefined ? "no row" : `a row for "${have[i]}"`;
    const plan = planned[i] === undefined ? "nothing more" : `"${planned[i]}"`;
    return `job ${i + 1} of the build's stage/job rows does not match its manifest: ${row} where the manifest plans ${plan}`;
  }
  return undefined;
}

/**
 * Makes a claimed build's stage and job rows those of its plan, in one transaction under the claim.
 * None written by the producer: they are written now. Rows that disagree with the plan are
 * replaced, and the difference is returned: such a build fails in setup rather than run against
 * records that do not describe it. With `keepAny`, any existing rows are kept (a build that fails
 * in setup only needs a first job to say why). `masked` values are replaced in the commands column.
 */
export async function matchPlanRows(pool: pg.Pool, claim: { id: number; worker: string; attempt: number }, plan: BuildPlan, keepAny: boolean, masked: string[], loaded?: StoredJob[]): Promise<{ jobs: StoredJob[]; mismatch?: string }> {
  // Rows loaded after the claim that already are the plan's (the producer wrote them): nothing to
  // write, so no transaction; the writes that follow are each guarded by the claim.
  if (loaded?.length && (keepAny || !planDifference(loaded, plan))) return { jobs: loaded };
  return inTransaction(pool, async (client) => {
    const held = await client.query(`SELECT 1 FROM builds WHERE id = $1 AND worker = $2 AND attempt = $3 AND status = $4 FOR UPDATE`, [claim.id, claim.worker, claim.attempt, RUNNING]);
    if (held.rowCount === 0) throw new ClaimLostError(`build ${claim.id}: claim lost (another worker took it over)`);
    let stored = await storedJobs(client, claim.id);
    let mismatch: string | undefined;
    if (stored.length === 0 || (!keepAny && (mismatch = planDifference(stored, plan)))) {
      await client.query(`DELETE FROM stages WHERE build_id = $1`, [claim.id]);
      await client.query(`DELETE FROM jobs WHERE build_id = $1`, [claim.id]);
      await insertPlanRows(client, claim.id, plan, masked);
      stored = await storedJobs(client, claim.id);
    }
    return { jobs: stored, mismatch };
  });
}

/** Extends the leases of `ids` held by `worker`; returns the ids it still holds. */
export async function renewLeases(pool: pg.Pool, worker: string, ids: number[], leaseMs: number): Promise<Set<number>> {
  if (ids.length === 0) return new Set();
  const r = await pool.query(
    `UPDATE builds SET lease_expires_at = now() + $3::interval WHERE id = ANY($1::bigint[]) AND worker = $2 AND status = $4 RETURNING id`,
    [ids, worker, leaseInterval(leaseMs), RUNNING],
  );
  return new Set(r.rows.map((row) => Number(row.id)));
}

export interface BuildSummary {
  id: BuildId;
  status: Status;
  secret: string;
  namespace: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  worker: string | null;
  attempt: number;
  driver: Record<string, string>;
  jobs: { stage: string; name: string; status: Status; exitCode: number | null; startedAt: Date | null; finishedAt: Date | null }[];
}

export async function buildSummary(pool: pg.Pool, id: BuildId): Promise<BuildSummary | undefined> {
  const b = await pool.query(`SELECT id, status, secret, namespace, created_at, started_at, finished_at, worker, attempt, driver FROM builds WHERE id = $1`, [id]);
  if (b.rowCount === 0) return undefined;
  const jobs = await pool.query(
    `SELECT j.id, s.name AS stage, j.name, j.status, j.exit_code, j.started_at, j.finished_at FROM jobs j JOIN stages s ON s.id = j.stage_id WHERE j.build_id = $1 ORDER BY s.position, j.position`,
    [id],
  );
  const r = b.rows[0];
  return {
    id,
    status: parseStatus(r.status, `builds row ${r.id}`),
    secret: r.secret,
    namespace: r.namespace,
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    worker: r.worker,
    attempt: r.attempt,
    driver: r.driver,
    jobs: jobs.rows.map((j) => ({ stage: j.stage, name: j.name, status: parseStatus(j.status, `jobs row ${j.id}`), exitCode: j.exit_code, startedAt: j.started_at, finishedAt: j.finished_at })),
  };
}

/** A build that should be on its queue: waiting, or claimed by a worker whose lease is over. */
export interface WaitingBuild {
  id: number;
  /** The manifest's driver type. */
  driverType: string;
  /** When it was submitted, Unix milliseconds. */
  createdAt: number;
}

/**
 * Builds that should have a payload in Redis: `queued` for longer than `graceMs` (a producer
 * pushes right after it commits), or `running` under a lease that ran out more than `graceMs`
 * ago. Oldest first, at most `limit`.
 */
export async function waitingBuilds(pool: pg.Pool, graceMs: number, limit: number): Promise<WaitingBuild[]> {
  const r = await pool.query(
    `SELECT id, driver->>'type' AS type, (extract(epoch FROM created_at) * 1000)::bigint AS created FROM builds
     WHERE (status = $3 AND created_at < now() - $1::interval AND (lease_expires_at IS NULL OR lease_expires_at < now() - $1::interval))
        OR (status = $4 AND lease_expires_at < now() - $1::interval)
     ORDER BY id LIMIT $2`,
    [leaseInterval(graceMs), limit, "queued" satisfies Status, RUNNING],
  );
  return r.rows.map((row) => ({ id: Number(row.id), driverType: row.type ?? "", createdAt: Number(row.created) }));
}
