// The PostgreSQL connection and the schema's versioned migrations.
import { readFileSync } from "node:fs";
import pg from "./pg.js";
import type { WorkerConfig } from "../config/config.js";
import { serverAddress } from "../net/address.js";
import { connectReason, serverUnavailable } from "../net/connect.js";
import { MIGRATIONS, SCHEMA_VERSION } from "./migrations/index.js";
import { EnvironmentError, fileReadReason } from "../errors/errors.js";

export { SCHEMA_VERSION } from "./migrations/index.js";

/** Arbitrary constant: every worker serialises migrations on this advisory lock. */
const MIGRATION_LOCK = 0x646a696e6e;

/** The database cannot be reached or is not in the shape this worker needs: one line for the operator. */
export class DatabaseError extends EnvironmentError {
  override name = "DatabaseError";
  /** The server did not answer (as opposed to refusing what was asked): waiting may cure it. */
  unavailable = false;
}

/** Reads a file [database.ssl] names; one line naming the key when it cannot. */
function readSslFile(key: "ca" | "cert" | "key", file: string | undefined): string | undefined {
  if (!file) return undefined;
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new DatabaseError(`database.ssl.${key}: cannot read ${file}: ${fileReadReason(err)}`);
  }
}

export function createPool(cfg: NonNullable<WorkerConfig["database"]>, max = 10): pg.Pool {
  const { host, port } = serverAddress(cfg.addr, 5432);
  let ssl: pg.PoolConfig["ssl"];
  if (cfg.ssl) {
    ssl = {
      ca: readSslFile("ca", cfg.ssl.ca),
      cert: readSslFile("cert", cfg.ssl.cert),
      key: readSslFile("key", cfg.ssl.key),
      rejectUnauthorized: Boolean(cfg.ssl.ca),
    };
  }
  const pool = new pg.Pool({
    host,
    port,
    database: cfg.name,
    user: cfg.username,
    password: cfg.password,
    ssl,
    max,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    application_name: "djinn-worker",
  });
  return pool;
}

/** Connects once, so that a bad address fails now with one clear line rather than on first use. */
export async function probePool(pool: pg.Pool, addr: string): Promise<void> {
  try {
    const client = await pool.connect();
    client.release();
  } catch (err) {
    const e = new DatabaseError(`cannot connect to PostgreSQL at ${addr}: ${connectReason(err)}`);
    e.unavailable = serverUnavailable(err);
    throw e;
  }
}

/**
 * The applied schema version; 0 when the database has never been migrated. A schema_migrations
 * table of another shape (another program's migrations, e.g. Djinn's own server) is refused:
 * this worker's tables would be mixed with someone else's.
 */
export async function schemaVersion(db: pg.Pool | pg.PoolClient): Promise<number> {
  const exists = await db.query(`SELECT to_regclass('schema_migrations') IS NOT NULL AS present`);
  if (!exists.rows[0].present) return 0;
  const cols = await db.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'schema_migrations' AND table_schema = current_schema()`);
  const names = new Set(cols.rows.map((r) => r.column_name as string));
  if (!names.has("version") || !names.has("name")) {
    throw new DatabaseError(`the database was migrated by another program (its schema_migrations table has columns ${[...names].sort().join(", ")}, not version and name): give djinn-worker a database of its own`);
  }
  const r = await db.query(`SELECT coalesce(max(version), 0)::int AS v FROM schema_migrations`);
  return r.rows[0].v as number;
}

/** Refuses to run against a schema this worker does not know. */
export async function requireCurrentSchema(pool: pg.Pool, configFile: string): Promise<void> {
  const have = await schemaVersion(pool);
  if (have === SCHEMA_VERSION) return;
  if (have < SCHEMA_VERSION) {
    throw new DatabaseError(`database schema is at version ${have}, this worker needs version ${SCHEMA_VERSION}: run \`djinn-worker migrate -config ${configFile}\``);
  }
  throw new DatabaseError(`database schema is at version ${have}, newer than this worker's ${SCHEMA_VERSION}: upgrade djinn-worker`);
}

/**
 * PostgreSQL 15 no longer lets every role create tables in the public schema: a role granted ALL
 * on the database but not its owner fails the first CREATE TABLE with "permission denied for
 * schema public". Said before anything is tried, with what to run (docs/install.md).
 */
async function requireCreatePrivilege(client: pg.PoolClient): Promise<void> {
  const r = await client.query(
    `SELECT current_user AS role, current_database() AS db, current_schema() AS schema,
            current_schema() IS NOT NULL AND has_schema_privilege(current_schema(), 'CREATE') AS may_create`,
  );
  const { role, db, schema, may_create: mayCreate } = r.rows[0] as { role: string; db: string; schema: string | null; may_create: boolean };
  if (mayCreate) return;
  // Double-quoted, so that a role such as djinn-worker can be pasted as it is.
  const quoteIdent = pg.escapeIdentifier;
  const where = schema ? `schema ${schema}` : "any schema on its search_path";
  throw new DatabaseError(
    `PostgreSQL: permission denied for ${where}: role ${quoteIdent(role)} may not create tables in database ${quoteIdent(db)}; ` +
      `make it the database's owner (as a superuser: ALTER DATABASE ${quoteIdent(db)} OWNER TO ${quoteIdent(role)};) and run migrate again`,
  );
}

/**
 * Applies the missing migrations, each in its own transaction, under an advisory lock so that
 * workers migrating at once apply each step exactly once. Returns the versions applied.
 */
export async function migrate(pool: pg.Pool): Promise<number[]> {
  const client = await pool.connect();
  const applied: number[] = [];
  try {
    await requireCreatePrivilege(client);
    await client.query(`SELECT pg_advisory_lock($1)`, [MIGRATION_LOCK]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const have = await schemaVersion(client);
      for (const m of MIGRATIONS) {
        if (m.version <= have) continue;
        await client.query("BEGIN");
        try {
          await client.query(m.sql);
          await client.query(`INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
          await client.query("COMMIT");
        } catch (err) {
          await client.query("ROLLBACK").catch(() => undefined);
          throw new DatabaseError(`migration ${m.version} (${m.name}) failed: ${(err as Error).message}`);
        }
        applied.push(m.version);
      }
    } finally {
      await client.query(`SELECT pg_advisory_unlock($1)`, [MIGRATION_LOCK]).catch(() => undefined);
    }
  } finally {
    client.release();
  }
  return applied;
}

/**
 * An error PostgreSQL gave for the statement itself (bad data, a broken constraint, a missing
 * table): the same write fails again however often it is retried, unlike a lost connection.
 */
export function permanentDatabaseError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== "string" || !/^[0-9A-Z]{5}$/.test(code)) return false;
  return ["22", "23", "42", "2B", "44", "P0"].includes(code.slice(0, 2));
}
