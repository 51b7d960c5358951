// What the web process reads from the daemon's tables. It never writes, and never reads a masked
// variable's encrypted value or the manifest as submitted (manifest_encrypted).
import type pg from "pg";
import { parseStatus, type Status } from "../runner/status.js";

/** Builds on one page of the list. */
export const PAGE_SIZE = 50;

export interface ListFilter {
  status?: Status;
  namespace?: string;
  /** Keyset paging: only builds with a smaller id. */
  before?: number;
}

export interface BuildRow {
  id: number;
  status: Status;
  namespace: string | null;
  driver: string;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

const BUILD_COLUMNS = `id, status, namespace, driver->>'type' AS driver, created_at, started_at, finished_at`;

function buildRow(r: Record<string, unknown>): BuildRow {
  return {
    id: Number(r.id),
    status: parseStatus(r.status, `builds row ${r.id}`),
    namespace: (r.namespace as string | null) ?? null,
    driver: (r.driver as string | null) ?? "",
    createdAt: r.created_at as Date,
    startedAt: (r.started_at as Date | null) ?? null,
    finishedAt: (r.finished_at as Date | null) ?? null,
  };
}

/**
 * A page of builds, newest first, and the id to ask for the next page with (`before`), if any.
 * Conditions are only those asked for, so the planner walks the (status, id) or (namespace, id)
 * index, or the primary key, from the newest build: the first page is as fast at any size.
 */
export async function listBuilds(pool: pg.Pool, f: ListFilter, limit = PAGE_SIZE): Promise<{ builds: BuildRow[]; next?: number }> {
  const { sql, params } = listQuery(f, limit + 1);
  const r = await pool.query(sql, params);
  const builds = r.rows.slice(0, limit).map(buildRow);
  return { builds, next: r.rows.length > limit ? builds[builds.length - 1].id : undefined };
}

/** The list's statement for `f`, at most `limit` rows. */
export function listQuery(f: ListFilter, limit: number): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.status) where.push(`status = $${params.push(f.status)}`);
  if (f.namespace !== undefined) where.push(`namespace = $${params.push(f.namespace)}`);
  if (f.before !== undefined) where.push(`id < $${params.push(f.before)}`);
  const sql = `SELECT ${BUILD_COLUMNS} FROM builds ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT $${params.push(limit)}`;
  return { sql, params };
}

/** The newest build of a namespace. */
export async function latestBuild(pool: pg.Pool, namespace: string): Promise<BuildRow | undefined> {
  const r = await pool.query(`SELECT ${BUILD_COLUMNS} FROM builds WHERE namespace = $1 ORDER BY id DESC LIMIT 1`, [namespace]);
  return r.rows[0] ? buildRow(r.rows[0]) : undefined;
}

export interface JobRow {
  id: number;
  stageId: number;
  name: string;
  status: Status;
  exitCode: number | null;
  outputBytes: number;
  startedAt: Date | null;
  finishedAt: Date | null;
}

export interface StageRow {
  id: number;
  name: string;
  canFail: boolean;
  status: Status;
  startedAt: Date | null;
  finishedAt: Date | null;
  jobs: JobRow[];
}

export interface BuildDetail extends BuildRow {
  /** The driver map as stored (masked values already replaced). */
  driverMap: Record<string, string>;
  /** The manifest as stored: masked values replaced by the submitter. */
  manifest: string;
  worker: string | null;
  attempt: number;
}

export async function buildDetail(pool: pg.Pool, id: number): Promise<BuildDetail | undefined> {
  const r = await pool.query(`SELECT ${BUILD_COLUMNS}, driver AS driver_map, manifest, worker, attempt FROM builds WHERE id = $1`, [id]);
  if (!r.rows[0]) return undefined;
  const row = r.rows[0];
  return { ...buildRow(row), driverMap: row.driver_map ?? {}, manifest: row.manifest, worker: row.worker, attempt: row.attempt };
}

/** The build's stages in order, each with its jobs in order. */
export async function buildStages(pool: pg.Pool, id: number): Promise<StageRow[]> {
  const s = await pool.query(`SELECT id, name, can_fail, status, started_at, finished_at FROM stages WHERE build_id = $1 ORDER BY position, id`, [id]);
  const j = await pool.query(`SELECT id, stage_id, name, status, exit_code, output_bytes, started_at, finished_at FROM jobs WHERE build_id = $1 ORDER BY position, id`, [id]);
  const stages: StageRow[] = s.rows.map((r) => ({
    id: Number(r.id),
    name: r.name,
    canFail: r.can_fail,
    status: parseStatus(r.status, `stages row ${r.id}`),
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    jobs: [],
  }));
  const byId = new Map(stages.map((st) => [st.id, st]));
  for (const r of j.rows) {
    byId.get(Number(r.stage_id))?.jobs.push({
      id: Number(r.id),
      stageId: Number(r.stage_id),
      name: r.name,
      status: parseStatus(r.status, `jobs row ${r.id}`),
      exitCode: r.exit_code,
      outputBytes: Number(r.output_bytes),
      startedAt: r.started_at,
      finishedAt: r.finished_at,
    });
  }
  return stages;
}

/** A variable as it may be shown: a masked one has no value here at all. */
export interface ShownVariable {
  key: string;
  value: string | null;
  masked: boolean;
}

export async function buildVariables(pool: pg.Pool, id: number): Promise<ShownVariable[]> {
  // value_encrypted is never selected: the web process holds no key and shows no secret.
  const r = await pool.query(`SELECT key, CASE WHEN masked THEN NULL ELSE value END AS value, masked FROM variables WHERE build_id = $1 ORDER BY position, id`, [id]);
  return r.rows.map((v) => ({ key: v.key, value: v.value, masked: v.masked }));
}

export async function buildObjects(pool: pg.Pool, id: number): Promise<{ source: string; dest: string }[]> {
  const r = await pool.query(`SELECT source, dest FROM objects WHERE build_id = $1 ORDER BY id`, [id]);
  return r.rows.map((o) => ({ source: o.source, dest: o.dest }));
}

export interface ArtifactRow {
  id: number;
  jobId: number;
  name: string;
  size: number;
  sha256: string;
  /** Where the daemon wrote it; served only when inside `[artifacts] path`. */
  path: string;
}

export async function buildArtifacts(pool: pg.Pool, id: number): Promise<ArtifactRow[]> {
  const r = await pool.query(`SELECT id, job_id, name, size, sha256, path FROM artifacts WHERE build_id = $1 ORDER BY id`, [id]);
  return r.rows.map(artifactRow);
}

export async function artifact(pool: pg.Pool, buildId: number, id: number): Promise<ArtifactRow | undefined> {
  const r = await pool.query(`SELECT id, job_id, name, size, sha256, path FROM artifacts WHERE build_id = $1 AND id = $2`, [buildId, id]);
  return r.rows[0] ? artifactRow(r.rows[0]) : undefined;
}

function artifactRow(a: Record<string, unknown>): ArtifactRow {
  return { id: Number(a.id), jobId: Number(a.job_id), name: a.name as string, size: Number(a.size), sha256: a.sha256 as string, path: a.path as string };
}

/** A job of the build, with the build's own status (a job never ends while its build runs on). */
export async function jobOfBuild(pool: pg.Pool, buildId: number, jobId: number): Promise<{ status: Status; buildStatus: Status } | undefined> {
  const r = await pool.query(`SELECT j.status, b.status AS build_status FROM jobs j JOIN builds b ON b.id = j.build_id WHERE j.id = $1 AND j.build_id = $2`, [jobId, buildId]);
  if (!r.rows[0]) return undefined;
  return { status: parseStatus(r.rows[0].status, `jobs row ${jobId}`), buildStatus: parseStatus(r.rows[0].build_status, `builds row ${buildId}`) };
}

/** The id of the build's newest output row (0 when none): where a page's output ends and its live updates begin. */
export async function lastOutputId(pool: pg.Pool, buildId: number): Promise<number> {
  const r = await pool.query(`SELECT id FROM job_output WHERE build_id = $1 ORDER BY id DESC LIMIT 1`, [buildId]);
  return r.rows[0] ? Number(r.rows[0].id) : 0;
}

/** Output rows at a time: a few MiB at most in memory whatever a job printed. */
/** Rows read at once: a row is at most a MiB (../store/output.ts FLUSH_BYTES), so a batch holds at most 8. */
export const OUTPUT_BATCH = 8;

/** A job's output rows after `afterId` (up to `uptoId` when given), in order, at most OUTPUT_BATCH. */
export async function jobOutputRows(pool: pg.Pool, jobId: number, afterId: number, uptoId?: number): Promise<{ id: number; data: string }[]> {
  const r = await pool.query(
    `SELECT id, data FROM job_output WHERE job_id = $1 AND id > $2 ${uptoId === undefined ? "" : "AND id <= $4"} ORDER BY id LIMIT $3`,
    uptoId === undefined ? [jobId, afterId, OUTPUT_BATCH] : [jobId, afterId, OUTPUT_BATCH, uptoId],
  );
  return r.rows.map((row) => ({ id: Number(row.id), data: row.data }));
}

/**
 * Where a job's output tail starts: the id after which its last rows up to `uptoId` hold at least
 * `bytes` (0 when the whole output is shorter), how many bytes of the first of those rows to leave
 * out (a row may be a MiB: the tail is cut inside it, see tailOf), and whether anything was left out.
 */
export async function tailStart(pool: pg.Pool, jobId: number, uptoId: number, bytes: number): Promise<{ afterId: number; skipBytes: number; cut: boolean }> {
  let before = uptoId + 1;
  let total = 0;
  for (;;) {
    const r = await pool.query(`SELECT id, octet_length(data) AS n FROM job_output WHERE job_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`, [jobId, before, OUTPUT_BATCH]);
    for (const row of r.rows) {
      total += Number(row.n);
      before = Number(row.id);
      if (total >= bytes) {
        const earlier = await pool.query(`SELECT 1 FROM job_output WHERE job_id = $1 AND id < $2 LIMIT 1`, [jobId, before]);
        const skipBytes = total - bytes;
        return { afterId: before - 1, skipBytes, cut: skipBytes > 0 || (earlier.rowCount ?? 0) > 0 };
      }
    }
    if (r.rows.length < OUTPUT_BATCH) return { afterId: 0, skipBytes: 0, cut: false };
  }
}

/** `data` without its first `skipBytes` bytes, starting at a line: what a tail shows of its first row. */
export function tailOf(data: string, skipBytes: number): string {
  if (skipBytes <= 0) return data;
  // From the byte before the cut: a cut right after a line end keeps the line that starts there.
  const rest = Buffer.from(data, "utf8").subarray(skipBytes - 1).toString("utf8");
  const line = rest.indexOf("\n");
  return line < 0 ? "" : rest.slice(line + 1);
}
