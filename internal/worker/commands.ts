// The producer and operator commands: migrate, submit, status, logs, kill.
import { readFile } from "node:fs/promises";
import { Redis } from "ioredis";
import type pg from "pg";
import { queueDriverOf } from "../driver/driver.js";
import { loadWorkerConfig, requireSections, type WorkerConfig } from "../config/config.js";
import { Crypto } from "../crypto/crypto.js";
import { terminalSafe } from "../cli/terminal.js";
import { InputError, parseAssignments, parseSecrets, readManifestFile } from "../run/run.js";
import { enqueue, killChannel, probeRedis, redisOptions } from "../queue/queue.js";
import { buildSummary, insertBuild, readOutput, TERMINAL_STATUSES } from "../store/builds.js";
import { createPool, migrate, probePool, requireCurrentSchema, SCHEMA_VERSION } from "../store/db.js";

type Out = NodeJS.WritableStream;

/** Connects to the database; unless `migrating`, refuses a schema this worker does not know (not migrated, or someone else's). */
async function withPool<T>(cfg: WorkerConfig, fn: (pool: pg.Pool) => Promise<T>, migrating = false): Promise<T> {
  requireSections(cfg, "database");
  const pool = createPool(cfg.database!, 2);
  pool.on("error", () => undefined);
  try {
    await probePool(pool, cfg.database!.addr);
    if (!migrating) await requireCurrentSchema(pool, cfg.file);
    return await fn(pool);
  } finally {
    await pool.end().catch(() => undefined);
  }
}

async function withRedis<T>(cfg: WorkerConfig, fn: (redis: Redis) => Promise<T>): Promise<T> {
  requireSections(cfg, "redis");
  await probeRedis(cfg.redis!);
  const redis = new Redis(redisOptions(cfg.redis!, { maxRetriesPerRequest: 3 }));
  redis.on("error", () => undefined);
  try {
    await redis.connect();
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

export async function migrateCommand(configFile: string, out: Out): Promise<void> {
  const cfg = loadWorkerConfig(configFile);
  await withPool(cfg, async (pool) => {
    const applied = await migrate(pool);
    out.write(applied.length ? `applied migration${applied.length > 1 ? "s" : ""} ${applied.join(", ")}; schema at version ${SCHEMA_VERSION}\n` : `schema already at version ${SCHEMA_VERSION}\n`);
  }, true);
}

export function parseBuildId(text: string): number {
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) <= 0) throw new InputError(`${JSON.stringify(text)} is not a build id (a positive integer)`);
  return Number(text);
}

const EMAIL = /^[^\s@<>,;]+@[^\s@<>,;]+$/;

export interface SubmitOptions {
  manifest: string;
  configFile: string;
  env: string[];
  secrets: string[];
  notify: string[];
  /** NAME=FILE: a private key placed at ~/.ssh/NAME in the build, stored encrypted. */
  keys?: string[];
}

/** Reads --key NAME=FILE arguments; the name becomes a file in ~/.ssh, so it is a plain file name. */
async function readKeys(items: string[]): Promise<[string, string][]> {
  const keys: [string, string][] = [];
  for (const item of items) {
    const eq = item.indexOf("=");
    const name = eq < 0 ? "" : item.slice(0, eq);
    if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(name)) throw new InputError(`--key ${JSON.stringify(item)}: expected NAME=FILE with NAME a file name for ~/.ssh`);
    const file = item.slice(eq + 1);
    try {
      keys.push([name, await readFile(file, "utf8")]);
    } catch (err) {
      throw new InputError(`--key ${name}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`);
    }
  }
  return keys;
}


export async function submitCommand(opts: SubmitOptions, out: Out): Promise<number> {
  const cfg = loadWorkerConfig(opts.configFile);
  const { manifest, text } = await readManifestFile(opts.manifest);
  const env = parseAssignments("--env", opts.env);
  const secrets = parseSecrets(opts.secrets);
  const keys = await readKeys(opts.keys ?? []);
  for (const a of opts.notify) if (!EMAIL.test(a)) throw new InputError(`--notify ${JSON.stringify(a)}: not an email address`);
  requireSections(cfg, "crypto", "database", "redis");
  const crypto = new Crypto(cfg.crypto!.block);
  return withPool(cfg, async (pool) => {
    const id = await insertBuild(pool, crypto, { manifestText: text, manifest, env, secrets, keys, notify: opts.notify });
    await withRedis(cfg, (redis) => enqueue(redis, cfg.queue, queueDriverOf(manifest.driver.type), id));
    out.write(`${id}\n`);
    return id;
  });
}

const seconds = (from: Date | null, to: Date | null) => (from && to ? `${((to.getTime() - from.getTime()) / 1000).toFixed(1)}s` : "");

export async function statusCommand(configFile: string, idText: string, out: Out): Promise<string> {
  const id = parseBuildId(idText);
  const cfg = loadWorkerConfig(configFile);
  return withPool(cfg, async (pool) => {
    const b = await buildSummary(pool, id);
    if (!b) throw new InputError(`build ${id} not found`);
    const lines = [`build ${b.id} ${b.status}`];
    // Names come from the build: escaped, so none can split a row or reach the terminal as a control.
    const label = (j: (typeof b.jobs)[number]) => terminalSafe(`${j.stage} / ${j.name}`);
    const width = Math.max(...b.jobs.map((j) => label(j).length));
    for (const j of b.jobs) {
      const exit = j.exitCode === null ? "" : `exit ${j.exitCode}`;
      lines.push(`  ${label(j).padEnd(width)}  ${j.status.padEnd(20)} ${exit.padEnd(8)} ${seconds(j.startedAt, j.finishedAt)}`.trimEnd());
    }
    const meta = [`driver ${b.driver.type}`, b.namespace ? `namespace ${b.namespace}` : "", b.worker ? `worker ${b.worker}` : "", b.attempt > 1 ? `attempt ${b.attempt}` : ""].filter(Boolean);
    lines.push(terminalSafe(`  (${meta.join(", ")}${b.startedAt && b.finishedAt ? `, took ${seconds(b.startedAt, b.finishedAt)}` : ""})`));
    out.write(lines.join("\n") + "\n");
    return b.status;
  });
}

export async function logsCommand(configFile: string, idText: string, follow: boolean, out: Out): Promise<void> {
  const id = parseBuildId(idText);
  const cfg = loadWorkerConfig(configFile);
  await withPool(cfg, async (pool) => {
    const first = await buildSummary(pool, id);
    if (!first) throw new InputError(`build ${id} not found`);
    let after = 0;
    let job = -1;
    const drain = async () => {
      for (;;) {
        const chunks = await readOutput(pool, id, after, BATCH);
        for (const c of chunks) {
          if (c.jobId !== job) {
            job = c.jobId;
            await write(out, `==> ${terminalSafe(`${c.stage} / ${c.job}`)}\n`);
          }
          await write(out, c.data);
          after = c.id;
        }
        if (chunks.length < BATCH) return;
      }
    };
    for (;;) {
      const status = follow ? (await buildSummary(pool, id))?.status : undefined;
      await drain();
      if (!follow || (status && TERMINAL_STATUSES.includes(status))) break;
      await new Promise((r) => setTimeout(r, 500));
    }
  });
}

/** Chunks read at a time: at most a few MiB of output in memory whatever the build printed. */
const BATCH = 32;

function write(out: Out, text: string): Promise<void> {
  return new Promise((resolve) => (out.write(text) ? resolve() : out.once("drain", () => resolve())));
}

export async function killCommand(configFile: string, idText: string, out: Out): Promise<boolean> {
  const id = parseBuildId(idText);
  const cfg = loadWorkerConfig(configFile);
  const b = await withPool(cfg, (pool) => buildSummary(pool, id));
  if (!b) throw new InputError(`build ${id} not found`);
  if (TERMINAL_STATUSES.includes(b.status)) {
    out.write(`build ${id} already finished: ${b.status}\n`);
    return true;
  }
  const receivers = await withRedis(cfg, (redis) => redis.publish(killChannel(id), b.secret));
  if (receivers === 0) {
    out.write(`build ${id} is ${b.status}: no worker is running it right now, nothing killed\n`);
    return false;
  }
  out.write(`kill sent for build ${id}\n`);
  return true;
}
