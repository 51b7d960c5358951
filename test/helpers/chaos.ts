// Kill -9 chaos on one queue (os driver): several workers, one killed every few seconds and
// replaced, builds of a random length each recording when its job starts and ends. Shared by the
// bounded test in the suite and the full run under bench/.
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { Redis } from "ioredis";
import { enqueue } from "../../internal/queue/queue.js";
import { TERMINAL_STATUSES } from "../../internal/runner/status.js";
import { migrate } from "../../internal/store/db.js";
import { hostStatePath } from "../../internal/driver/run.js";
import { startDaemon, testPool, writeConfigs, type DaemonProcess, type PostgresServer, type RedisServer, insertManifestBuild } from "./services.js";

export interface ChaosOptions {
  builds: number;
  workers: number;
  killEveryMs: number;
  /** Each build's job sleeps a random time in [minJobMs, maxJobMs]. */
  minJobMs: number;
  maxJobMs: number;
  parallelism: number;
  lease: string;
  leaseMs: number;
  /** After every build is finished, workers keep running (and being killed) this long, to catch late runs. */
  settleMs: number;
  /** Gives up waiting for the builds after this long. */
  timeoutMs: number;
  progress?: (line: string) => void;
}

export interface ChaosResult {
  builds: number;
  kills: number;
  seconds: number;
  /** Not finished at the end, and in no Redis list: nothing would ever run them. */
  lost: number[];
  /** Not finished at the end. */
  stuck: number[];
  /** Builds whose job started after the build had finished. */
  reRun: number[];
  /** Builds whose job started more than once (recovered after a kill: expected, reported). */
  runMoreThanOnce: number;
  notPassed: number[];
  /** Workspaces left in the workers' TMPDIR, with how long after their build finished each was created. */
  workspaces: { name: string; afterFinishMs: number | null }[];
  /** Processes still running in those workspaces. */
  processes: number;
  /** Artifacts not each build's own, whole and alone in its directory (half-written ones included). */
  badArtifacts: string[];
  /** Payloads left in queues and processing lists, and dead-list entries. */
  payloadsLeft: number;
  dead: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function chaosRun(redisServer: RedisServer, pgServer: PostgresServer, o: ChaosOptions): Promise<ChaosResult> {
  const queue = `chaos${Date.now() % 100000}`;
  const database = await pgServer.createDatabase();
  const pool = testPool(pgServer, database);
  await migrate(pool);
  const cfg = await writeConfigs({ redis: redisServer.addr, postgres: pgServer.addr, database, queue, parallelism: o.parallelism, lease: o.lease, shutdownTimeout: "5s", logLevel: "info" });
  const tmp = path.join(cfg.dir, "tmp");
  await fs.mkdir(tmp);
  const marks = path.join(cfg.dir, "marks");
  const redis = new Redis(redisServer.port, "127.0.0.1");
  const workers: DaemonProcess[] = [];
  const start = () => startDaemon(cfg, { env: { TMPDIR: tmp } });
  const t0 = Date.now();
  let kills = 0;
  try {
    const ids: number[] = [];
    for (let i = 0; i < o.builds; i++) {
      const seconds = ((o.minJobMs + Math.random() * (o.maxJobMs - o.minJobMs)) / 1000).toFixed(2);
      const text = `driver: {type: os}\nstages: [run]\njobs:\n- stage: run\n  commands:\n  - echo "start $DJINN_BUILD $(date +%s%3N)" >> ${marks}\n  - sleep ${seconds}\n  - echo "$DJINN_BUILD" > out.txt\n  - echo "end $DJINN_BUILD $(date +%s%3N)" >> ${marks}\n  artifacts:\n  - out.txt\n`;
      const id = await insertManifestBuild(pool, text);
      ids.push(id);
      await enqueue(redis, queue, "os", id);
    }
    for (let i = 0; i < o.workers; i++) workers.push(await start());

    const unfinished = async () => Number((await pool.query(`SELECT count(*) FROM builds WHERE status <> ALL($1)`, [TERMINAL_STATUSES])).rows[0].count);
    let finishedAt: number | undefined;
    let nextKill = Date.now() + o.killEveryMs;
    for (;;) {
      const left = await unfinished();
      if (left === 0 && finishedAt === undefined) {
        finishedAt = Date.now();
        o.progress?.(`all ${o.builds} builds finished after ${((finishedAt - t0) / 1000).toFixed(1)} s and ${kills} kills; settling ${o.settleMs / 1000} s`);
      }
      if (finishedAt !== undefined && Date.now() - finishedAt > o.settleMs) break;
      if (Date.now() - t0 > o.timeoutMs) {
        o.progress?.(`gave up waiting: ${left} builds unfinished`);
        break;
      }
      if (Date.now() >= nextKill) {
        const i = Math.floor(Math.random() * workers.length);
        workers[i].kill("SIGKILL");
        await workers[i].exit;
        kills++;
        workers[i] = await start();
        nextKill = Date.now() + o.killEveryMs;
        if (kills % 10 === 0) o.progress?.(`${kills} kills, ${left} builds unfinished`);
      }
      await sleep(100);
    }
    // A clean stop of the survivors: what they run is handed back (none should be left).
    for (const w of workers) w.kill("SIGTERM");
    await Promise.all(workers.map((w) => w.exit));
    const seconds = (Date.now() - t0) / 1000;

    const rows = (await pool.query(`SELECT id, status, (extract(epoch FROM finished_at) * 1000)::bigint AS finished FROM builds ORDER BY id`)).rows;
    const finished = new Map<number, number | null>(rows.map((r) => [Number(r.id), r.finished === null ? null : Number(r.finished)]));
    const starts = new Map<number, number[]>();
    for (const line of existsSync(marks) ? readFileSync(marks, "utf8").split("\n") : []) {
      const m = /^start (\d+) (\d+)$/.exec(line);
      if (m) starts.set(Number(m[1]), [...(starts.get(Number(m[1])) ?? []), Number(m[2])]);
    }
    const stuck = rows.filter((r) => !TERMINAL_STATUSES.includes(r.status)).map((r) => Number(r.id));
    const payloads: string[] = [];
    for (const key of await redis.keys(`${queue}_os*`)) payloads.push(...(await redis.lrange(key, 0, -1)));
    const queued = new Set(payloads.map((p) => JSON.parse(p).id as number));
    const lost = stuck.filter((id) => !queued.has(id));
    const reRun = rows.filter((r) => r.finished !== null && (starts.get(Number(r.id)) ?? []).some((at) => at > Number(r.finished))).map((r) => Number(r.id));
    const root = hostStatePath(tmp);
    const workspaces = (existsSync(root) ? readdirSync(root) : []).map((name) => {
      const id = Number(/^djinn-build-(\d+)-/.exec(name)?.[1]);
      const done = finished.get(id);
      const st = statSync(path.join(root, name));
      return { name, afterFinishMs: done ? Math.round((st.birthtimeMs || st.ctimeMs) - done) : null };
    });
    let processes = 0;
    for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
      try {
        if (readlinkSync(`/proc/${pid}/cwd`).startsWith(`${tmp}/`)) processes++;
      } catch {
        // Gone, or not ours to look at.
      }
    }
    const badArtifacts: string[] = [];
    const artifactsDir = path.join(cfg.dir, "artifacts");
    for (const id of ids) {
      const dir = path.join(artifactsDir, String(id));
      const files = existsSync(dir) ? readdirSync(dir) : [];
      if (files.length !== 1 || files[0] !== "out.txt" || readFileSync(path.join(dir, "out.txt"), "utf8") !== `${id}\n`) badArtifacts.push(`${id}: ${files.join(", ") || "none"}`);
    }
    return {
      builds: ids.length,
      badArtifacts,
      kills,
      seconds,
      lost,
      stuck,
      reRun,
      runMoreThanOnce: [...starts.values()].filter((s) => s.length > 1).length,
      notPassed: rows.filter((r) => TERMINAL_STATUSES.includes(r.status) && r.status !== "passed").map((r) => Number(r.id)),
      workspaces,
      processes,
      payloadsLeft: payloads.length,
      dead: await redis.llen(`${queue}_dead`),
    };
  } finally {
    for (const w of workers) await w.stop();
    redis.disconnect();
    await pool.end();
    await fs.rm(cfg.dir, { recursive: true, force: true });
  }
}

/** One line per figure, for the bench and for a failing test's message. */
export function chaosReport(r: ChaosResult): string {
  const list = (xs: number[]) => (xs.length ? ` (${xs.slice(0, 10).join(", ")}${xs.length > 10 ? ", ..." : ""})` : "");
  return [
    `builds ${r.builds}, kills ${r.kills}, ${r.seconds.toFixed(1)} s`,
    `lost ${r.lost.length}${list(r.lost)}`,
    `stuck ${r.stuck.length}${list(r.stuck)}`,
    `re-run after finishing ${r.reRun.length}${list(r.reRun)}`,
    `left behind: workspaces ${r.workspaces.length}${r.workspaces.length ? ` (${r.workspaces.slice(0, 5).map((w) => `${w.name}${w.afterFinishMs === null ? "" : ` created ${w.afterFinishMs} ms after its build finished`}`).join("; ")})` : ""}, processes ${r.processes}, payloads ${r.payloadsLeft}, dead-listed ${r.dead}`,
    `artifacts wrong or half-written ${r.badArtifacts.length}${r.badArtifacts.length ? ` (${r.badArtifacts.slice(0, 5).join("; ")})` : ""}`,
    `not passed ${r.notPassed.length}${list(r.notPassed)}; recovered and run again before finishing ${r.runMoreThanOnce}`,
  ].join("\n");
}
