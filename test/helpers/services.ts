// Throwaway servers for integration suites (redis-server, PostgreSQL) and a daemon under test.
import type { BuildId } from "../../internal/queue/delivery.js";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import pg from "pg";
import { cliPath, which } from "./env.js";
import { freeLocalPort as freePort } from "../../internal/net/port.js";
import { Crypto } from "../../internal/crypto/crypto.js";
import { parseManifest } from "../../internal/manifest/manifest.js";
import { planBuild } from "../../internal/runner/plan.js";
import { insertBuild, type NewBuild } from "../../internal/store/builds.js";
import { hostStatePath } from "../../internal/driver/run.js";

/** What drivers left in the host state root of a worker whose TMPDIR is `tmp` (os workspaces, qemu/). */
export async function hostState(tmp: string): Promise<string[]> {
  return fs.readdir(hostStatePath(tmp)).catch(() => []);
}


/** Resolves when `child` prints a line matching `pattern` on stdout or stderr; rejects if it exits first. */
function waitForLine(child: ChildProcess, pattern: RegExp, what: string, timeoutMs = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = "";
    const onData = (d: Buffer) => {
      seen = (seen + d.toString()).slice(-4000);
      if (pattern.test(seen)) done();
    };
    const onExit = (code: number | null) => finish(new Error(`${what} exited (${code}) before it was ready: ${seen}`));
    const timer = setTimeout(() => finish(new Error(`${what} not ready after ${timeoutMs} ms: ${seen}`)), timeoutMs);
    const finish = (err?: Error) => {
      clearTimeout(timer);
      child.stdout?.off("data", onData);
      child.stderr?.off("data", onData);
      child.off("exit", onExit);
      if (err) reject(err);
      else resolve();
    };
    const done = () => finish();
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", onExit);
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once("exit", () => r()));
}

export function redisMissing(): string | undefined {
  return which("redis-server") ? undefined : "redis-server not found (apt-get install redis-server)";
}

export interface RedisServer {
  addr: string;
  port: number;
  /** Stops the server (its data is gone: no persistence) and starts a fresh one on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<RedisServer> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-redis-"));
  const port = await freePort();
  let child: ChildProcess;
  const launch = async () => {
    child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], { stdio: ["ignore", "pipe", "pipe"] });
    await waitForLine(child, /Ready to accept connections/, "redis-server");
  };
  const halt = async () => {
    child.kill("SIGKILL");
    await exited(child);
  };
  await launch();
  return {
    addr: `127.0.0.1:${port}`,
    port,
    restart: async () => {
      await halt();
      await launch();
    },
    stop: async () => {
      await halt();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

export function postgresBin(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) if (existsSync(path.join(root, v, "bin", "initdb"))) return path.join(root, v, "bin");
  return undefined;
}

export function postgresMissing(): string | undefined {
  if (!postgresBin()) return "PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)";
  if (process.getuid?.() === 0 && spawnSync("id", ["-u", "postgres"]).status !== 0) return "running as root and there is no postgres user to run the server as";
  return undefined;
}

export interface PostgresServer {
  addr: string;
  port: number;
  /** A fresh, empty database on this server; its name. */
  createDatabase(): Promise<string>;
  /** Stops the server (fast shutdown: clients are cut off); `start()` brings it back with its data. */
  halt(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

let databases = 0;

/** initdb + postgres in a temporary directory, as the postgres user when run as root (the server refuses root). */
export async function startPostgres(): Promise<PostgresServer> {
  const bin = postgresBin()!;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-pg-"));
  const data = path.join(dir, "data");
  const asRoot = process.getuid?.() === 0;
  if (asRoot) spawnSync("chown", ["-R", "postgres:", dir]);
  const run = (cmd: string, args: string[]) => (asRoot ? spawn("runuser", ["-u", "postgres", "--", cmd, ...args], { stdio: ["ignore", "pipe", "pipe"] }) : spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }));
  const init = run(path.join(bin, "initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "--no-instructions"]);
  let initOut = "";
  init.stdout!.on("data", (d) => (initOut += d));
  init.stderr!.on("data", (d) => (initOut += d));
  const code = await new Promise<number | null>((r) => init.once("exit", r));
  if (code !== 0) throw new Error(`initdb failed: ${initOut}`);
  const port = await freePort();
  let server: ChildProcess;
  const start = async () => {
    server = run(path.join(bin, "postgres"), ["-D", data, "-k", dir, "-h", "127.0.0.1", "-p", String(port), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200"]);
    await waitForLine(server, /database system is ready to accept connections/, "postgres");
  };
  const halt = async () => {
    // runuser does not pass signals on: signal the postmaster itself (fast shutdown).
    try {
      const pid = Number(readFileSync(path.join(data, "postmaster.pid"), "utf8").split("\n")[0]);
      process.kill(pid, "SIGINT");
    } catch {
      server.kill("SIGINT");
    }
    await exited(server);
  };
  await start();
  const addr = `127.0.0.1:${port}`;
  return {
    addr,
    port,
    createDatabase: async () => {
      const name = `djinn_${process.pid}_${++databases}`;
      const client = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database: "postgres" });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return name;
    },
    halt,
    start,
    stop: async () => {
      await halt();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

export interface TestConfig {
  dir: string;
  worker: string;
  driver: string;
  logFile?: string;
}

export interface ConfigOptions {
  redis: string;
  postgres: string;
  database: string;
  parallelism?: number;
  lease?: string;
  timeout?: string;
  shutdownTimeout?: string;
  outputLimit?: number;
  pidfile?: string;
  smtp?: string;
  logFile?: boolean;
  metrics?: string;
  logLevel?: "debug" | "info" | "error";
  /** worker.toml driver (default "os") and the driver.toml text (default "[os]"). */
  driver?: string;
  driverToml?: string;
  /** Queue name prefix (default "builds"): a test of its own on a shared Redis uses its own. */
  queue?: string;
  /** No [artifacts] and [objects] sections (both optional for the daemon). */
  withoutStores?: boolean;
  /** Extra top-level TOML lines. */
  extra?: string;
}

/** Whether a process still runs: neither gone nor a zombie waiting for its parent to reap it. */
export function isAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

export const CRYPTO_BLOCK = "0123456789abcdef0123456789abcdef";

/** Stores a build of manifest `text` as submit does (its rows planned from the manifest), without queueing it. */
export function insertManifestBuild(pool: pg.Pool, text: string, more: Partial<Pick<NewBuild, "env" | "secrets" | "notify" | "keys">> = {}): Promise<BuildId> {
  const { manifest } = parseManifest(text);
  return insertBuild(pool, new Crypto(CRYPTO_BLOCK), { manifestText: text, manifest, plan: (id) => planBuild(manifest, String(id)), env: [], secrets: [], notify: [], ...more });
}

/** Writes worker.toml and driver.toml (os driver) for a test into a fresh directory. */
export async function writeConfigs(o: ConfigOptions): Promise<TestConfig> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-daemon-"));
  const logFile = o.logFile ? path.join(dir, "worker.log") : undefined;
  const lines = [
    `parallelism = ${o.parallelism ?? 2}`,
    `driver = "${o.driver ?? "os"}"`,
    `queue = "${o.queue ?? "builds"}"`,
    `lease = "${o.lease ?? "3s"}"`,
    `timeout = "${o.timeout ?? "2m"}"`,
    `shutdown_timeout = "${o.shutdownTimeout ?? "10s"}"`,
    `output_limit = ${o.outputLimit ?? 0}`,
    o.pidfile ? `pidfile = "${o.pidfile}"` : "",
    o.extra ?? "",
    "",
    "[crypto]",
    `block = "${CRYPTO_BLOCK}"`,
    "",
    "[database]",
    `addr = "${o.postgres}"`,
    `name = "${o.database}"`,
    `username = "postgres"`,
    "",
    "[redis]",
    `addr = "${o.redis}"`,
    "",
    ...(o.withoutStores ? [] : ["[artifacts]", `path = "${path.join(dir, "artifacts")}"`, "", "[objects]", `path = "${path.join(dir, "objects")}"`, ""]),
    "[log]",
    `level = "${o.logLevel ?? "debug"}"`,
    logFile ? `file = "${logFile}"` : "",
  ];
  if (o.smtp) lines.push("", "[smtp]", `addr = "${o.smtp}"`, `admin = "djinn@example.test"`);
  if (o.metrics) lines.push("", "[metrics]", `addr = "${o.metrics}"`);
  await fs.mkdir(path.join(dir, "objects"));
  const worker = path.join(dir, "worker.toml");
  const driver = path.join(dir, "driver.toml");
  await fs.writeFile(worker, lines.join("\n") + "\n");
  await fs.writeFile(driver, o.driverToml ?? "[os]\n");
  return { dir, worker, driver, logFile };
}

export interface LogLine {
  msg?: string;
  level?: string;
  [key: string]: unknown;
}

/** A daemon under test: its log lines (JSON on stdout) as they come, and its exit. */
export class DaemonProcess {
  readonly lines: LogLine[] = [];
  readonly raw: string[] = [];
  stderr = "";
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];

  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      this.raw.push(line);
      let parsed: LogLine;
      try {
        parsed = JSON.parse(line);
      } catch {
        parsed = { msg: line };
      }
      this.lines.push(parsed);
      for (const w of [...this.waiters]) {
        if (w.pred(parsed)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(parsed);
        }
      }
    });
    child.stderr!.on("data", (d) => (this.stderr += d));
    this.exit = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The first log line (past or future) matching `pred`. */
  waitFor(pred: (l: LogLine) => boolean, what: string, timeoutMs = 30_000): Promise<LogLine> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== wrapped);
        reject(new Error(`daemon: no log line for "${what}" within ${timeoutMs} ms; last lines:\n${this.raw.slice(-15).join("\n")}\nstderr: ${this.stderr}`));
      }, timeoutMs);
      const wrapped = (l: LogLine) => {
        clearTimeout(timer);
        resolve(l);
      };
      this.waiters.push({ pred, resolve: wrapped });
      void this.exit.then(() => {
        if (this.waiters.some((w) => w.resolve === wrapped)) {
          clearTimeout(timer);
          reject(new Error(`daemon exited before "${what}"; stderr: ${this.stderr}\n${this.raw.slice(-15).join("\n")}`));
        }
      });
    });
  }

  waitForMsg(msg: string | RegExp, extra: Record<string, unknown> = {}, timeoutMs?: number): Promise<LogLine> {
    const pred = (l: LogLine) => (typeof msg === "string" ? l.msg === msg : msg.test(String(l.msg ?? ""))) && Object.entries(extra).every(([k, v]) => l[k] === v);
    return this.waitFor(pred, `${msg} ${JSON.stringify(extra)}`, timeoutMs);
  }

  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }

  /** SIGKILL if still running, and wait. */
  async stop(): Promise<void> {
    this.kill("SIGKILL");
    await this.exit;
  }
}

/** Starts `djinn-worker -config ... -driver ...` and waits for it to be taking builds. */
export async function startDaemon(cfg: TestConfig, opts: { ready?: boolean; env?: NodeJS.ProcessEnv; executable?: string } = {}): Promise<DaemonProcess> {
  // `executable`: a release executable instead of this build's CLI.
  const [file, ...args] = opts.executable ? [opts.executable] : [process.execPath, cliPath];
  const child = spawn(file, [...args, "-config", cfg.worker, "-driver", cfg.driver], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...opts.env } });
  const d = new DaemonProcess(child);
  if (opts.ready ?? true) await d.waitForMsg("worker started");
  return d;
}

/** Polls the build's status until it is one of `statuses` (there is no event to wait on in the database). */
export async function waitForStatus(pool: pg.Pool, id: number, statuses: readonly string[], timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let status = "";
  while (Date.now() < deadline) {
    const r = await pool.query(`SELECT status FROM builds WHERE id = $1`, [id]);
    status = r.rows[0]?.status;
    if (statuses.includes(status)) return status;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`build ${id} is ${status}, not ${statuses.join("/")}, after ${timeoutMs} ms`);
}

/** Polls until `check` returns a value other than undefined. */
export async function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** A pool on a test database. */
export function testPool(server: { port: number }, database: string): pg.Pool {
  const pool = new pg.Pool({ host: "127.0.0.1", port: server.port, user: "postgres", database, max: 4 });
  pool.on("error", () => undefined);
  return pool;
}

/** Runs the CLI to completion. */
export function runCli(args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cliPath, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.stdin.end(input ?? "");
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

export { freePort };
