// The daemon's queue against real redis-server and PostgreSQL, os driver:
//  1. enqueue-to-first-command latency (p50/p99) on an idle worker, vs spawning `sh` directly;
//  2. builds per second for --builds one-job builds (default 1,000) with two workers, vs `sh` spawned
//     as many times in a row;
//  3. --drain queued builds (target 20,000; default 2,000 to stay within two minutes on two cores)
//     drained by four workers: lost, duplicated, total time;
//  4. a worker's RSS idle (also with every driver configured) and under load;
//  5. a job printing --print-mib MiB (default 128): stored throughput and the worker's peak RSS
//     (flat: output is streamed into PostgreSQL, never held), vs `yes | head -c` into /dev/null;
//  and, for 1 and 3, where a build's time goes on the worker, phase by phase (p50/p99): from the
//  "build finished" line's phasesMs (claim with load, prepare, environment, first command, status)
//  and, at debug level (1 only), "build acknowledged"'s ackMs.
// The daemons are this build's CLI (node build/cmd/djinn-worker.js), or with --binary PATH a release
// executable (npm run release: release/work/djinn-worker), started as dist/djinn-worker.service does.
// Usage: node build/bench/queue.js [--samples N] [--builds N] [--drain N] [--print-mib N] [--idle-secs N] [--only latency,throughput,drain,output] [--binary PATH]
import { spawnSync } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { Redis } from "ioredis";
import { enqueue } from "../internal/queue/queue.js";
import { migrate } from "../internal/store/db.js";
import { startDaemon as startDaemonOf, startPostgres, startRedis, testPool, writeConfigs, type DaemonProcess, type TestConfig, insertManifestBuild } from "../test/helpers/services.js";
import { numberArg } from "./lib/args.js";
import { goal } from "./lib/goal.js";
import { percentile } from "./lib/percentile.js";
import { cgroup2Mount } from "../internal/driver/os/mounts.js";
import { stateFilesystem } from "../internal/driver/os/statefs.js";
import { hostStatePath } from "../internal/driver/run.js";
import { DRIVER_TYPES } from "../internal/driver/catalogue.js";

// Enough builds that p99 is a percentile, not the one slowest build (the first, which loads what builds need).
const samples = numberArg("samples", 200);
const builds = numberArg("builds", 1000);
const drain = numberArg("drain", 2000);
const printMib = numberArg("print-mib", 128);
/** How long the latency section's worker idles before its settled RSS is read. */
const idleSecs = numberArg("idle-secs", 30);
const onlyAt = process.argv.indexOf("--only");
const sections = new Set(onlyAt < 0 ? ["latency", "throughput", "drain", "output"] : (process.argv[onlyAt + 1] ?? "").split(","));
const binaryAt = process.argv.indexOf("--binary");
const binary = binaryAt < 0 ? undefined : path.resolve(process.argv[binaryAt + 1] ?? "");
const startDaemon = (cfg: TestConfig) => startDaemonOf(cfg, { executable: binary });

const pct = percentile;
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
/** A process's CPU seconds so far: its own, and its children's that it has waited for (a worker's: its jobs' shells). */
function cpuSeconds(pid: number): { self: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  // utime, stime, cutime, cstime are fields 14–17 (11–14 after the command); clock ticks of 1/100 s on Linux.
  return { self: (f[11] + f[12]) / 100, children: (f[13] + f[14]) / 100 };
}
const cpuSum = (pids: number[]) => pids.map(cpuSeconds).reduce((a, c) => ({ self: a.self + c.self, children: a.children + c.children }), { self: 0, children: 0 });
/** CPU the workers spent per build since `from` (their start-up left out): less noisy than wall time on a shared machine. */
function cpuPerBuild(pids: number[], n: number, from: { self: number; children: number }): string {
  const now = cpuSum(pids);
  const sum = { self: now.self - from.self, children: now.children - from.children };
  return `worker CPU per build ${((sum.self * 1000) / n).toFixed(1)} ms (+ ${((sum.children * 1000) / n).toFixed(1)} ms in its jobs' processes)`;
}
const cpuSelf = (pid: number) => cpuSeconds(pid).self;
/** Wall-clock nanoseconds, to compare with `date +%s%N`: sub-millisecond, where Date.now() would add up to 1 ms to a sample. */
const nowNs = () => (performance.timeOrigin + performance.now()) * 1e6;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function manifestText(commands: string[]): string {
  return `driver: {type: os}\nstages: [a]\njobs:\n- stage: a\n  name: one\n  commands:\n${commands.map((c) => `  - ${JSON.stringify(c)}`).join("\n")}\n`;
}

/** p50/p99 of each phase the daemons logged for their builds (see internal/timers/phases.ts). */
function printPhases(what: string, daemons: DaemonProcess[]): void {
  const byPhase = new Map<string, number[]>();
  const add = (phase: string, ms: unknown) => typeof ms === "number" && byPhase.set(phase, [...(byPhase.get(phase) ?? []), ms]);
  for (const line of daemons.flatMap((d) => d.lines)) {
    if (line.msg === "build finished") for (const [phase, ms] of Object.entries((line.phasesMs ?? {}) as Record<string, number>)) add(phase, ms);
    if (line.msg === "build acknowledged") add("ack", line.ackMs);
  }
  const cells = [...byPhase].map(([phase, xs]) => `${phase} ${pct(xs, 50).toFixed(1)}/${pct(xs, 99).toFixed(1)}`);
  console.log(`  where a build's time goes (${what}), ms p50/p99: ${cells.join(", ")}`);
}

async function main(): Promise<void> {
  const [redisServer, pgServer] = await Promise.all([startRedis(), startPostgres()]);
  const daemons: DaemonProcess[] = [];
  const dirs: string[] = [];
  const redis = new Redis(redisServer.port, "127.0.0.1");
  try {
    const env = async (queue: string, parallelism: number, logLevel: "info" | "debug" = "info", driverToml?: string) => {
      const database = await pgServer.createDatabase();
      const pool = testPool(pgServer, database);
      await migrate(pool);
      const cfg = await writeConfigs({ redis: redisServer.addr, postgres: pgServer.addr, database, queue, parallelism, lease: "10s", logLevel, driverToml });
      dirs.push(cfg.dir);
      return { pool, cfg };
    };
    /**
     * Until `n` builds are finished, asking PostgreSQL every 100 ms; while `near` says the end is
     * not near yet, every second only: the count reads the whole table (some 10 ms at 20,000
     * builds), CPU the workers would otherwise have.
     */
    const waitPassed = async (pool: ReturnType<typeof testPool>, n: number, opts: { onTick?: () => void; near?: () => boolean } = {}) => {
      for (let tick = 0; ; tick++) {
        if (!opts.near || tick % 10 === 0 || opts.near()) {
          const r = await pool.query(`SELECT count(*) FILTER (WHERE status IN ('passed','failed','killed','timed_out'))::int AS done FROM builds`);
          if (r.rows[0].done >= n) return;
        }
        opts.onTick?.();
        await sleep(100);
      }
    };

    /** An idle worker whose driver.toml configures every driver: it loads no engine but the os driver's (which sweeps the host) until a build needs one. */
    const idleWithEveryDriver = async () => {
      const every = DRIVER_TYPES.map((name) => `[${name}]\n`).join("");
      const { pool, cfg } = await env("every", 2, "info", every);
      const d = await startDaemon(cfg);
      await sleep(500);
      const at500 = rssMiB(d.pid);
      await sleep(4500);
      const at5s = rssMiB(d.pid);
      console.log(`worker RSS idle with every driver configured (${DRIVER_TYPES.map((name) => `[${name}]`).join(" ")}): ${at500.toFixed(1)} MiB 500 ms after "worker started", ${at5s.toFixed(1)} MiB after 5 s`);
      console.log(`  ${goal("< 64 MiB", Math.max(at500, at5s) < 64)} in the first 5 s`);
      d.kill("SIGTERM");
      await d.exit;
      await pool.end();
    };

    // 1. Latency: one idle worker, builds one at a time.
    if (sections.has("latency")) {
      const { pool, cfg } = await env("lat", 2, "debug");
      const d = await startDaemon(cfg);
      daemons.push(d);
      // At 500 ms, 5 s and --idle-secs: V8 shrinks an idle heap 10-20 s after the last work (its
      // memory reducer), so the last is what a worker waiting for builds holds; or more, if something
      // grows while idle.
      await sleep(500);
      const idleRss = rssMiB(d.pid);
      await sleep(4500);
      const idleRss5 = rssMiB(d.pid);
      await sleep(Math.max(0, idleSecs * 1000 - 5000));
      const idleRssSettled = rssMiB(d.pid);
      const stamp = path.join(cfg.dir, "stamp");
      const text = manifestText([`date +%s%N > ${stamp}`]);
      const lat: number[] = [];
      for (let i = 0; i < samples; i++) {
        const id = await insertManifestBuild(pool, text);
        const t0 = nowNs();
        await enqueue(redis, "lat", "os", id);
        await d.waitForMsg("build finished", { build: id });
        lat.push((Number(readFileSync(stamp, "utf8").trim()) - t0) / 1e6);
      }
      const raw: number[] = [];
      for (let i = 0; i < samples; i++) {
        const t0 = nowNs();
        const out = spawnSync("/bin/sh", ["-c", "date +%s%N"], { encoding: "utf8" }).stdout;
        raw.push((Number(out.trim()) - t0) / 1e6);
      }
      // The first build also loads what builds need (the manifest parser, the driver): shown apart.
      const warm = lat.slice(1);
      console.log(`enqueue → first command (os driver, ${samples} builds, idle worker): p50 ${pct(lat, 50).toFixed(1)} ms, p99 ${pct(lat, 99).toFixed(1)} ms (first build ${lat[0].toFixed(1)} ms; without it p99 ${pct(warm, 99).toFixed(1)} ms); raw sh spawn p50 ${pct(raw, 50).toFixed(1)} ms (ratio ${(pct(lat, 50) / pct(raw, 50)).toFixed(1)}x)`);
      const mount = cgroup2Mount(readFileSync("/proc/self/mountinfo", "utf8"));
      const mounted = mount ? `cgroup2 at ${mount.mountPoint} ${mount.favorsDynamicChanges ? "with" : "without"} favordynmods (docs/os.md)` : "no cgroup2 mount";
      console.log(`  ${goal("p99 < 20 ms", pct(lat, 99) < 20)}; ${mounted}`);
      const started = binary ? `${binary} (release executable)` : "node build/cmd/djinn-worker.js";
      console.log(`worker RSS idle (${started}): ${idleRss.toFixed(1)} MiB 500 ms after "worker started", ${idleRss5.toFixed(1)} MiB after 5 s, ${idleRssSettled.toFixed(1)} MiB after ${idleSecs} s`);
      console.log(`  ${goal("< 64 MiB", idleRssSettled < 64)} after ${idleSecs} s idle; ${goal("< 64 MiB", Math.max(idleRss, idleRss5) < 64)} in the first 5 s`);
      printPhases("idle worker", [d]);
      d.kill("SIGTERM");
      await d.exit;
      await pool.end();
      await idleWithEveryDriver();
    }

    // 2. Throughput: two workers, --builds one-job builds queued before they start.
    if (sections.has("throughput")) {
      const { pool, cfg } = await env("tput", 4);
      const text = manifestText(["true"]);
      for (let i = 0; i < builds; i++) {
        const id = await insertManifestBuild(pool, text);
        await enqueue(redis, "tput", "os", id);
      }
      const t0 = performance.now();
      const ds = await Promise.all([startDaemon(cfg), startDaemon(cfg)]);
      daemons.push(...ds);
      let peak = 0;
      await waitPassed(pool, builds, { onTick: () => (peak = Math.max(peak, ...ds.map((d) => rssMiB(d.pid)))) });
      const secs = (performance.now() - t0) / 1000;
      const r0 = performance.now();
      for (let i = 0; i < builds; i++) spawnSync("/bin/sh", ["-c", "true"]);
      const rawSecs = (performance.now() - r0) / 1000;
      console.log(`throughput, ${builds} one-job builds, 2 workers × parallelism 4: ${(builds / secs).toFixed(1)} builds/s (${secs.toFixed(1)} s); raw sh spawn ${(builds / rawSecs).toFixed(0)}/s sequential`);
      console.log(`worker RSS under load: peak ${peak.toFixed(1)} MiB`);
      for (const d of ds) d.kill("SIGTERM");
      await Promise.all(ds.map((d) => d.exit));
      await pool.end();
    }

    // 3. Drain: --drain builds inserted in bulk, four workers, each build appends its id to one file.
    if (sections.has("drain")) {
      const { pool, cfg } = await env("drain", 2);
      const ran = path.join(cfg.dir, "ran");
      const text = manifestText([`echo "$DJINN_BUILD" >> ${ran}`]);
      const ins = await pool.query(
        `INSERT INTO builds (secret, driver, manifest) SELECT md5(random()::text), '{"type":"os"}', $1 FROM generate_series(1, $2) RETURNING id`,
        [text, drain],
      );
      const ids = ins.rows.map((r) => Number(r.id));
      await pool.query(`INSERT INTO stages (build_id, position, name) SELECT id, 0, 'setup - #' || id FROM builds`);
      await pool.query(`INSERT INTO stages (build_id, position, name) SELECT id, 1, 'a' FROM builds`);
      await pool.query(`INSERT INTO jobs (build_id, stage_id, position, name) SELECT s.build_id, s.id, 0, CASE WHEN s.position = 0 THEN 'create-driver' ELSE 'one' END FROM stages s`);
      for (let i = 0; i < ids.length; i += 1000) {
        const batch = ids.slice(i, i + 1000).map((id) => JSON.stringify({ id, enqueued_at: Date.now() }));
        await redis.lpush("drain_os", ...batch);
      }
      const t0 = performance.now();
      const ds = await Promise.all([0, 1, 2, 3].map(() => startDaemon(cfg)));
      daemons.push(...ds);
      const cpu0 = cpuSum(ds.map((d) => d.pid));
      // The end is near once every job has written its line (a stat, not a query).
      const ranBytes = ids.reduce((sum, id) => sum + String(id).length + 1, 0);
      const near = () => {
        try {
          return statSync(ran).size >= ranBytes;
        } catch {
          return false;
        }
      };
      await waitPassed(pool, drain, { near });
      const secs = (performance.now() - t0) / 1000;
      const counts = new Map<number, number>();
      for (const line of (await fs.readFile(ran, "utf8")).trim().split("\n")) counts.set(Number(line), (counts.get(Number(line)) ?? 0) + 1);
      const lost = ids.filter((id) => !counts.has(id)).length;
      const duplicated = [...counts.values()].filter((n) => n > 1).length;
      const notPassed = (await pool.query(`SELECT count(*)::int AS n FROM builds WHERE status <> 'passed'`)).rows[0].n;
      printPhases(`drain of ${drain}`, ds);
      console.log(`  ${cpuPerBuild(ds.map((d) => d.pid), drain, cpu0)}`);
      console.log(`drain ${drain} queued builds (target 20000: --drain 20000), 4 workers × parallelism 2: ${secs.toFixed(1)} s (${(drain / secs).toFixed(1)} builds/s), lost ${lost}, duplicated ${duplicated}, not passed ${notPassed}`);
      console.log(`  ${goal("≥ 250 builds/s, 0 lost, 0 duplicated", drain / secs >= 250 && lost === 0 && duplicated === 0)}${drain < 20000 ? " (on fewer than 20000 builds)" : ""}; ${stateFilesystem(hostStatePath())}`);
      for (const d of ds) d.kill("SIGTERM");
      await Promise.all(ds.map((d) => d.exit));
      await pool.end();
    }

    // 5. One job printing a lot.
    if (sections.has("output")) {
      const { pool, cfg } = await env("big", 1);
      const d = await startDaemon(cfg);
      daemons.push(d);
      // A first, one-line build loads what builds need (the worker loads it with its first build),
      // so that the figures below are of streaming output alone.
      const warmup = await insertManifestBuild(pool, manifestText(["true"]));
      await enqueue(redis, "big", "os", warmup);
      await d.waitForMsg("build finished", { build: warmup });
      const text = manifestText([`yes "a line of build output, as a compiler might print it" | head -c ${printMib}M`]);
      const id = await insertManifestBuild(pool, text);
      const before = rssMiB(d.pid);
      const cpuBefore = cpuSelf(d.pid);
      let peak = before;
      const t0 = performance.now();
      await enqueue(redis, "big", "os", id);
      const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(d.pid))), 100);
      await d.waitForMsg("build finished", { build: id }, 600_000);
      clearInterval(sampler);
      const secs = (performance.now() - t0) / 1000;
      const cpu = cpuSelf(d.pid) - cpuBefore;
      const stored = (await pool.query(`SELECT sum(octet_length(data))::bigint AS n FROM job_output WHERE build_id = $1`, [id])).rows[0].n / 2 ** 20;
      const r0 = performance.now();
      spawnSync("/bin/sh", ["-c", `yes "a line of build output, as a compiler might print it" | head -c ${printMib}M > /dev/null`]);
      const rawSecs = (performance.now() - r0) / 1000;
      console.log(`job printing ${printMib} MiB: stored ${stored.toFixed(0)} MiB in ${secs.toFixed(1)} s (${(stored / secs).toFixed(1)} MiB/s; raw yes|head ${(printMib / rawSecs).toFixed(0)} MiB/s), worker RSS ${before.toFixed(1)} → peak ${peak.toFixed(1)} MiB, worker CPU ${cpu.toFixed(2)} s`);
      console.log(`  ${goal("≥ 200 MiB/s", stored / secs >= 200)}${printMib < 1024 ? " (for fewer than 1024 MiB: --print-mib 1024)" : ""}; RSS grew ${(peak - before).toFixed(1)} MiB for ${printMib} MiB printed`);
      d.kill("SIGTERM");
      await d.exit;
      await pool.end();
    }
  } finally {
    redis.disconnect();
    for (const d of daemons) await d.stop();
    await Promise.all([redisServer.stop(), pgServer.stop()]);
    for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true });
  }
}

await main();
