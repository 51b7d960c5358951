// What the daemon suites share: one Redis and one PostgreSQL per suite, a fresh database, queue
// and configuration per test, and submitting builds through the real CLI.
import fs from "node:fs/promises";
import path from "node:path";
import { after, afterEach, before } from "node:test";
import { Redis } from "ioredis";
import type pg from "pg";
import { reapRun } from "../../internal/driver/os/processes.js";
import { runName } from "../../internal/driver/run.js";
import { TERMINAL_STATUSES } from "../../internal/runner/status.js";
import { migrate } from "../../internal/store/db.js";
import { requireService } from "./env.js";
import { Relay, type RelayMode } from "./proxy.js";
import {
  postgresMissing,
  redisMissing,
  runCli,
  startDaemon,
  startPostgres,
  startRedis,
  testPool,
  writeConfigs,
  type ConfigOptions,
  type DaemonProcess,
  type PostgresServer,
  type RedisServer,
  type TestConfig,
} from "./services.js";

export function servicesSkip(): string | false {
  return requireService("redis", redisMissing()) || requireService("postgres", postgresMissing());
}

/** A YAML manifest for the os driver with one stage and one job per command list. */
export function osManifest(jobs: string[][], opts: { allowFailures?: boolean } = {}): string {
  const lines = ["driver:", "  type: os", "stages:", "  - test", ...(opts.allowFailures ? ["allow_failures:", "  - test"] : []), "jobs:"];
  jobs.forEach((commands, i) => {
    lines.push("  - stage: test", `    name: job${i + 1}`, "    commands:");
    for (const c of commands) lines.push(`      - ${JSON.stringify(c)}`);
  });
  return lines.join("\n") + "\n";
}

/**
 * Kills and removes what the recorded runs of unfinished builds left (os driver); a finished
 * build's runs were reaped by the run that finished it.
 */
async function reapRunsOf(pool: pg.Pool): Promise<void> {
  const r = await pool.query(`SELECT id, runs FROM builds WHERE status <> ALL($1)`, [TERMINAL_STATUSES]).catch(() => ({ rows: [] as { id: string; runs: string[] }[] }));
  for (const row of r.rows) {
    for (const run of row.runs ?? []) await reapRun(runName({ buildId: String(row.id), run }), run, []);
  }
}

/** A Suite for the enclosing describe: its servers start before the first test and stop after the last; each test's environments go after it. */
export function daemonSuite(): Suite {
  const suite = new Suite();
  before(() => suite.start());
  after(() => suite.stop());
  afterEach(() => suite.cleanup());
  return suite;
}

export class Suite {
  redis!: RedisServer;
  postgres!: PostgresServer;
  private n = 0;
  private cleanups: (() => Promise<unknown>)[] = [];
  private clients: Redis[] = [];
  private relays: Relay[] = [];

  /** A relay in front of one of the suite's servers (./proxy.ts), stopped after each test before anything else. */
  async relay(port: number, mode: RelayMode = "open"): Promise<Relay> {
    const r = await Relay.create(port, mode);
    this.relays.push(r);
    return r;
  }

  /** A client of the suite's Redis, disconnected when the suite stops. */
  redisClient(): Redis {
    const client = new Redis(this.redis.port, "127.0.0.1");
    this.clients.push(client);
    return client;
  }

  async start(): Promise<void> {
    [this.redis, this.postgres] = await Promise.all([startRedis(), startPostgres()]);
  }

  async stop(): Promise<void> {
    await this.cleanup();
    for (const c of this.clients.splice(0)) c.disconnect();
    await Promise.all([this.redis?.stop(), this.postgres?.stop()]);
  }

  async cleanup(): Promise<void> {
    for (const r of this.relays.splice(0)) await r.stop();
    for (const c of this.cleanups.splice(0).reverse()) await c().catch(() => undefined);
  }

  /** A fresh, migrated database and a configuration using it. */
  async env(opts: Partial<ConfigOptions> & { migrate?: boolean } = {}): Promise<TestEnv> {
    const database = await this.postgres.createDatabase();
    const pool = testPool(this.postgres, database);
    this.cleanups.push(() => pool.end());
    // After the daemons (cleaned up first): what their runs left on the host outside the
    // environment's directory, as a worker killed mid-build leaves it (a cgroup per run).
    this.cleanups.push(() => reapRunsOf(pool));
    if (opts.migrate ?? true) await migrate(pool);
    const cfg = await writeConfigs({ redis: this.redis.addr, postgres: this.postgres.addr, database, queue: `q${++this.n}`, ...opts });
    this.cleanups.push(() => fs.rm(cfg.dir, { recursive: true, force: true }));
    return new TestEnv(cfg, pool, (fn) => this.cleanups.push(fn), opts.queue ?? `q${this.n}`);
  }
}

export class TestEnv {
  constructor(
    readonly cfg: TestConfig,
    readonly pool: pg.Pool,
    private readonly onCleanup: (fn: () => Promise<unknown>) => void,
    readonly queue: string,
  ) {}

  get dir(): string {
    return this.cfg.dir;
  }

  /** The daemons' TMPDIR: os-driver workspaces of this environment, and nothing else, land here. */
  get tmp(): string {
    return path.join(this.cfg.dir, "tmp");
  }

  /** A daemon of this environment; `tmp` gives it another TMPDIR (one shared by several installations). */
  async daemon(opts: { ready?: boolean; tmp?: string } = {}): Promise<DaemonProcess> {
    const tmp = opts.tmp ?? this.tmp;
    await fs.mkdir(tmp, { recursive: true });
    const d = await startDaemon(this.cfg, { ready: opts.ready, env: { TMPDIR: tmp } });
    this.onCleanup(() => d.stop());
    return d;
  }

  /** Writes a manifest into the environment's directory; its path. */
  async writeManifest(manifest: string): Promise<string> {
    const file = path.join(this.cfg.dir, `manifest-${Date.now()}-${Math.random().toString(36).slice(2)}.yml`);
    await fs.writeFile(file, manifest);
    return file;
  }

  /** Submits through the CLI; the build id. */
  async submit(manifest: string, args: string[] = []): Promise<number> {
    const r = await runCli(["submit", await this.writeManifest(manifest), "-config", this.cfg.worker, ...args]);
    if (r.code !== 0) throw new Error(`submit failed (${r.code}): ${r.stderr}`);
    return Number(r.stdout.trim());
  }

  cli(args: string[]) {
    return runCli([...args, "-config", this.cfg.worker]);
  }

  async output(id: number): Promise<string> {
    const r = await this.pool.query(`SELECT data FROM job_output WHERE build_id = $1 ORDER BY id`, [id]);
    return r.rows.map((row) => row.data).join("");
  }

  async jobs(id: number): Promise<{ name: string; status: string; exit_code: number | null; started_at: Date | null; finished_at: Date | null }[]> {
    const r = await this.pool.query(`SELECT j.name, j.status, j.exit_code, j.started_at, j.finished_at FROM jobs j JOIN stages s ON s.id = j.stage_id WHERE j.build_id = $1 ORDER BY s.position, j.position`, [id]);
    return r.rows;
  }

  async build(id: number): Promise<{ status: string; attempt: number; worker: string | null; started_at: Date | null; finished_at: Date | null }> {
    const r = await this.pool.query(`SELECT status, attempt, worker, started_at, finished_at FROM builds WHERE id = $1`, [id]);
    return r.rows[0];
  }
}
