// The commit status last posted to a forge for each pushed build (forge_statuses): each change
// of a build's status is posted once, whichever web process sees it first, and one left unposted
// while no web process ran is found again.
import type pg from "pg";
import type { Status } from "../runner/status.js";

/** A pushed build as its commit status needs it, with the status last posted for it. */
export interface PushedBuild {
  id: number;
  status: Status;
  provider: string;
  repository: string;
  commit: string;
  manifest: string;
  /** The build status last posted, or null when none was. */
  reported: Status | null;
}

/** Pushed build `id` and what was posted for it; undefined when no push started it. */
export async function pushedBuild(pool: pg.Pool, id: number): Promise<PushedBuild | undefined> {
  const r = await pool.query(
    `SELECT b.id, b.status, t.provider, t.repository, t.commit, t.manifest, f.status AS reported
     FROM builds b JOIN build_triggers t ON t.build_id = b.id LEFT JOIN forge_statuses f ON f.build_id = b.id WHERE b.id = $1`,
    [id],
  );
  const row = r.rows[0];
  return row ? { ...row, id: Number(row.id) } : undefined;
}

/**
 * Claims the posting of build `id`'s statuses for `ms`: false while another process holds it.
 * A process that dies holding it gives it up when `ms` pass.
 */
export async function claimPosting(pool: pg.Pool, id: number, ms: number): Promise<boolean> {
  const r = await pool.query(
    `INSERT INTO forge_statuses (build_id, sending_until) VALUES ($1, now() + $2 * interval '1 millisecond')
     ON CONFLICT (build_id) DO UPDATE SET sending_until = EXCLUDED.sending_until
     WHERE forge_statuses.sending_until IS NULL OR forge_statuses.sending_until < now() RETURNING 1`,
    [id, ms],
  );
  return r.rowCount === 1;
}

/** Records that `status` was posted (or refused for good) for build `id`. */
export async function recordPosted(pool: pg.Pool, id: number, status: Status): Promise<void> {
  await pool.query(`UPDATE forge_statuses SET status = $2, updated_at = now() WHERE build_id = $1`, [id, status]);
}

export async function releasePosting(pool: pg.Pool, id: number): Promise<void> {
  await pool.query(`UPDATE forge_statuses SET sending_until = NULL WHERE build_id = $1`, [id]);
}

/**
 * Pushed builds of `providers` created within `days` whose status differs from the one last
 * posted and that no process is posting now, oldest first, at most `limit`.
 */
export async function unpostedBuilds(pool: pg.Pool, providers: string[], days: number, limit: number): Promise<number[]> {
  const r = await pool.query(
    `SELECT b.id FROM builds b JOIN build_triggers t ON t.build_id = b.id LEFT JOIN forge_statuses f ON f.build_id = b.id
     WHERE t.provider = ANY($1) AND b.created_at > now() - $2 * interval '1 day'
       AND f.status IS DISTINCT FROM b.status AND (f.sending_until IS NULL OR f.sending_until < now())
     ORDER BY b.id LIMIT $3`,
    [providers, days, limit],
  );
  return r.rows.map((row) => Number(row.id));
}
