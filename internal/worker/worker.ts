// The daemon: takes builds from its queues, claims each in PostgreSQL, runs it with the runner,
// records it as it goes, acknowledges it only once its result is written, and gives back what
// it cannot finish. See docs/daemon.md for the guarantees.
import { timingSafeEqual } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { Readable, type Writable } from "node:stream";
import type { Redis } from "ioredis";
import type pg from "pg";
import { configuredDrivers, type DriverConfig, type WorkerConfig } from "../config/config.js";
import type { Crypto } from "../crypto/crypto.js";
import { getDriver, type Driver, type RunRef } from "../driver/driver.js";
import "../driver/all.js";
import { ArtifactStore, ObjectStore } from "../fs/store.js";
import type { Logger } from "../log/log.js";
import type { Manifest } from "../manifest/manifest.js";
import type { PlannedJob } from "../runner/plan.js";
import { runBuild, type BuildReporter } from "../runner/runner.js";
import { isFailure, worse, type Status } from "../runner/status.js";
import { BuildGoneError, BuildRecorder, ClaimLostError, claimBuild, loadBuild, outputTail, renewLeases, type LoadedBuild, type StoredJob } from "../store/builds.js";
import { permanentDatabaseError } from "../store/db.js";
import { MAX_DELIVERIES, prepareBuild, type PreparedBuild } from "./prepare.js";
import { JobOutputSink } from "../store/output.js";
import { healQueue } from "./heal.js";
import { bounded, sleep } from "../timers/timers.js";
import { buildIdOfKillChannel, driverTypeOfQueue, killChannel } from "../queue/names.js";
import { parsePayload, type Taken, type WorkerQueue } from "../queue/queue.js";

/** What the worker needs of the mailer (internal/mail). */
export interface FailureMailer {
  sendBuildFailure(m: { id: string; status: string; namespace?: string; notify: string[]; outputTail: string[] }): Promise<boolean>;
}

/** What the worker needs of the metrics (internal/metrics). */
export interface WorkerMetrics {
  buildFinished(status: string, durationSeconds: number): void;
  queueWait(seconds: number): void;
  setRunning(n: number): void;
  setQueueDepth(queue: string, depth: number): void;
  queueHealed(queue: string, builds: number): void;
}

export interface WorkerDeps {
  id: string;
  config: WorkerConfig;
  drivers: DriverConfig;
  pool: pg.Pool;
  queue: WorkerQueue;
  /** A connection in subscriber mode, for kill messages. */
  subscriber: Redis;
  crypto: Crypto;
  mailer?: FailureMailer;
  metrics?: WorkerMetrics;
  log: Logger;
}

type StopReason = "kill" | "shutdown" | "lost" | "unrecorded";

interface Claimed {
  id: number;
  taken: Taken;
  abort: AbortController;
  /** This run's token and the earlier runs' (recorded with the claims): what the driver leaves on the host is named by it. */
  run: string;
  earlierRuns: string[];
  reason?: StopReason;
  /** Why a run was not recorded. */
  cause?: unknown;
  /** The build's environment, once there is one: destroyed on a forced exit. */
  driver?: Driver;
  secret?: string;
  /**
   * The run is over and its final status (or its release) is being written, which ends the lease:
   * a renewal that finds the lease gone then is no lost claim.
   */
  settling?: boolean;
}

/** How often a worker looks for what dead workers left on its host. */
const SWEEP_EVERY_MS = 60_000;

/** A database or Redis error that a retry may cure (as opposed to a lost claim, or a statement PostgreSQL refuses). */
function transient(err: unknown): boolean {
  return !(err instanceof ClaimLostError) && !(err instanceof BuildGoneError) && !permanentDatabaseError(err);
}

export class Worker {
  readonly id: string;
  private readonly log: Logger;
  private readonly claimed = new Map<number, Claimed>();
  private readonly claiming = new Set<number>();
  private inflight = 0;
  private slotWaiters: (() => void)[] = [];
  private stopping = false;
  private forced = false;
  private timers: NodeJS.Timeout[] = [];
  private loopDone?: Promise<void>;
  private handles = new Set<Promise<void>>();
  private background = new Set<Promise<unknown>>();
  /** Processing-list entries this worker does not know, seen on the last heartbeat. */
  private strays = new Set<string>();
  private heartbeatBusy = false;
  private claimBackoff = 500;

  constructor(private readonly deps: WorkerDeps) {
    this.id = deps.id;
    this.log = deps.log.child({ worker: deps.id });
  }

  get running(): number {
    return this.claimed.size;
  }

  async start(): Promise<void> {
    const { queue, subscriber, config } = this.deps;
    await queue.heartbeat();
    await this.recover();
    subscriber.on("message", (channel: string, message: string) => this.onKill(channel, message));
    const beat = Math.max(200, Math.floor(config.leaseMs / 3));
    this.timers.push(setInterval(() => void this.heartbeat(), beat));
    if (this.deps.metrics) this.timers.push(setInterval(() => void this.pollDepths(), 5000));
    void this.sweep();
    this.timers.push(setInterval(() => void this.sweep(), SWEEP_EVERY_MS));
    this.timers.push(setInterval(() => void this.heal(), Math.max(1000, config.leaseMs)));
    this.loopDone = this.loop();
    this.log.info({ queues: queue.lists, parallelism: config.parallelism }, "worker started");
  }

  /** Stops taking builds, gives running ones `graceMs` to finish, then kills and re-queues the rest. */
  async shutdown(graceMs: number): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.log.info({ running: this.claimed.size, graceMs }, "shutting down: no new builds");
      for (const w of this.slotWaiters.splice(0)) w();
    }
    // A take blocked on an unreachable Redis must not hold up the exit.
    await Promise.race([this.loopDone, sleep(3000, { unref: true })]);
    const all = () => Promise.allSettled([...this.handles]);
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((r) => (timer = setTimeout(r, graceMs)));
    await Promise.race([all(), grace, this.forcedPromise]);
    clearTimeout(timer);
    if (this.claimed.size > 0) {
      this.log.info({ builds: [...this.claimed.keys()] }, "shutdown grace over: killing and re-queueing running builds");
      for (const c of this.claimed.values()) this.stop(c, "shutdown");
    }
    // From here on a failed write is not retried: what cannot be handed back now is recovered by the lease.
    this.forced = true;
    await all();
    await Promise.allSettled([...this.background]);
    for (const t of this.timers) clearInterval(t);
    try {
      const back = await bounded(this.deps.queue.leave(), 5000, "Redis");
      if (back > 0) this.log.info({ builds: back }, "gave back builds still in the processing list");
    } catch (err) {
      this.log.error({ err: (err as Error).message }, "could not give back the processing list: it is recovered when the lease runs out");
    }
  }

  private forceResolve?: () => void;
  private readonly forcedPromise = new Promise<void>((r) => (this.forceResolve = r));

  /** A second signal: end the grace period now. */
  force(): void {
    this.forced = true;
    this.forceResolve?.();
    // Kill what still runs now: its processes die even if the exit comes before the hand-back.
    if (this.stopping) for (const c of this.claimed.values()) this.stop(c, "shutdown");
  }

  /** Before a forced exit: the environments of builds still running are destroyed (nothing left behind on this host). */
  async abandon(): Promise<void> {
    await Promise.allSettled([...this.claimed.values()].map((c) => c.driver?.destroy()));
  }

  private stop(c: Claimed, reason: StopReason): void {
    c.reason ??= reason;
    c.abort.abort();
  }

  private freeSlot(): void {
    this.inflight--;
    this.slotWaiters.shift()?.();
  }

  private async loop(): Promise<void> {
    const { queue, config } = this.deps;
    let backoff = 100;
    while (!this.stopping) {
      if (this.inflight >= config.parallelism) {
        await new Promise<void>((r) => this.slotWaiters.push(r));
        continue;
      }
      let taken: Taken | null;
      try {
        taken = await queue.take(2);
        backoff = 100;
      } catch (err) {
        if (this.stopping) break;
        this.log.warn({ err: (err as Error).message }, "cannot take from the queue; retrying");
        await sleep(backoff, { unref: true });
        backoff = Math.min(backoff * 2, 5000);
        continue;
      }
      if (!taken) continue;
      if (this.stopping) {
        await queue.requeue(taken.list, taken.raw, true).catch(() => undefined);
        break;
      }
      this.inflight++;
      const h: Promise<void> = this.handle(taken)
        .catch((err) => this.log.error({ err: (err as Error).stack }, "unexpected error handling a build"))
        .finally(() => {
          this.handles.delete(h);
          this.freeSlot();
        });
      this.handles.add(h);
    }
  }

  private async handle(taken: Taken): Promise<void> {
    const { queue, pool, config } = this.deps;
    const payload = parsePayload(taken.raw);
    if (typeof payload === "string") {
      this.log.warn({ queue: taken.list, reason: payload }, "unusable payload moved to the dead list");
      await this.retry("dead-letter", () => queue.dead(taken.list, taken.raw, payload), Infinity);
      return;
    }
    const id = payload.id;
    if (this.claimed.has(id) || this.claiming.has(id)) {
      // A second copy of a build this worker is running: look again once it is done.
      this.later(() => queue.requeue(taken.list, taken.raw, false));
      return;
    }
    let claim;
    // Two copies of one build taken at once must not both claim it: the claim does not tell this worker's runs apart.
    this.claiming.add(id);
    try {
      claim = await claimBuild(pool, id, this.id, config.leaseMs);
      this.claimBackoff = 500;
    } catch (err) {
      this.claiming.delete(id);
      this.log.warn({ build: id, err: (err as Error).message }, "cannot claim build (database unavailable?); putting it back");
      // Backing off here keeps a worker from spinning on the queue while PostgreSQL is away.
      await sleep(this.claimBackoff, { unref: true });
      this.claimBackoff = Math.min(this.claimBackoff * 2, 10_000);
      await this.retry("requeue", () => queue.requeue(taken.list, taken.raw, true), Infinity);
      return;
    }
    if (claim.outcome !== "claimed") this.claiming.delete(id);
    switch (claim.outcome) {
      case "missing":
        this.log.warn({ build: id, queue: taken.list }, "payload names no build: moved to the dead list");
        await this.retry("dead-letter", () => queue.dead(taken.list, taken.raw, `no build with id ${id}`), Infinity);
        return;
      case "finished":
        this.log.info({ build: id, status: claim.status }, "build already finished: dropping duplicate delivery");
        await this.retry("ack", () => queue.ack(taken.list, taken.raw), Infinity);
        return;
      case "held":
        this.log.info({ build: id, owner: claim.worker }, "build is held by another worker: looking again later");
        this.later(() => queue.requeue(taken.list, taken.raw, false));
        return;
    }
    const c: Claimed = { id, taken, abort: new AbortController(), run: claim.run, earlierRuns: claim.earlierRuns };
    this.claimed.set(id, c);
    this.claiming.delete(id);
    this.deps.metrics?.setRunning(this.claimed.size);
    if (payload.enqueued_at && claim.attempt === 1) this.deps.metrics?.queueWait(Math.max(0, Date.now() - payload.enqueued_at) / 1000);
    try {
      await this.execute(c, claim.attempt, claim.previousWorker);
    } finally {
      this.claimed.delete(id);
      this.deps.metrics?.setRunning(this.claimed.size);
    }
  }

  /** Runs `fn` after a second, outside the slot; the payload stays in the processing list meanwhile. */
  private later(fn: () => Promise<unknown>): void {
    const p = sleep(1000, { unref: true })
      .then(() => this.retry("requeue", fn, 30_000))
      .catch(() => undefined)
      .finally(() => this.background.delete(p));
    this.background.add(p);
  }

  /** Retries `fn` while it fails with a transient error, up to `forMs`; a forced shutdown ends it. */
  private async retry<T>(what: string, fn: () => Promise<T>, forMs: number): Promise<T> {
    const deadline = Date.now() + forMs;
    let delay = 200;
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (!transient(err) || Date.now() + delay > deadline || this.forced) throw err;
        this.log.warn({ err: (err as Error).message, what }, "write failed; retrying");
        await sleep(delay, { unref: true });
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  private async execute(c: Claimed, attempt: number, previousWorker: string | null): Promise<void> {
    const { pool, config, drivers, queue, subscriber } = this.deps;
    const log = this.log.child({ build: c.id, attempt });
    const recorder = new BuildRecorder(pool, c.id, this.id, attempt);
    let build: LoadedBuild;
    let prepared: PreparedBuild;
    try {
      build = await loadBuild(pool, c.id);
      c.secret = build.secret;
      prepared = await this.retry("prepare", () => prepareBuild(build, { pool, crypto: this.deps.crypto, drivers, claim: { id: c.id, worker: this.id, attempt } }), config.leaseMs);
    } catch (err) {
      await this.unpreparable(c, recorder, attempt, err, log);
      return;
    }
    const started = Date.now();
    const writeFor = config.leaseMs;
    let status: Status;
    let firstSink = true;
    const sinks = new Map<number, JobOutputSink>();
    const jobsByKey = new Map(prepared.jobs.map((j) => [`${j.stage}\0${j.name}`, j]));
    const stageJobs = new Map<number, { left: number; status?: Status }>();
    for (const j of prepared.jobs) {
      const s = stageJobs.get(j.stageId) ?? { left: 0 };
      s.left++;
      stageJobs.set(j.stageId, s);
    }
    const row = (job: PlannedJob) => {
      const r = jobsByKey.get(`${job.stage}\0${job.name}`);
      if (!r) throw new Error(`job ${job.stage}/${job.name} has no row`);
      return r;
    };
    // A write that keeps failing stops the build: it is given back rather than acknowledged.
    const write = async (what: string, fn: () => Promise<void>) => {
      try {
        await this.retry(what, fn, writeFor);
      } catch (err) {
        c.cause ??= err;
        this.stop(c, err instanceof ClaimLostError ? "lost" : "unrecorded");
        throw err;
      }
    };
    const note =
      attempt > 1
        ? `--- attempt ${attempt}: an earlier run${previousWorker ? ` (worker ${previousWorker})` : ""} did not finish; its output was discarded and the build runs again from the start ---\n`
        : undefined;
    const reporter: BuildReporter = {
      jobStarted: async (job) => {
        const r = row(job);
        await write("job start", () => recorder.jobStarted(r.id, r.stageId));
        const sink = new JobOutputSink({ limit: config.outputLimit, append: (text) => write("output", () => recorder.appendOutput(r.id, text)) });
        sink.on("error", (err) => log.warn({ err: err.message }, "output not stored"));
        sinks.set(r.id, sink);
        if (firstSink && note) sink.write(note);
        firstSink = false;
        return sink as Writable;
      },
      jobFinished: async (job, result) => {
        const r = row(job);
        await write("job finish", () => recorder.jobFinished(r.id, result.status, result.exitCode, sinks.get(r.id)?.storedBytes ?? 0));
        sinks.delete(r.id);
        const s = stageJobs.get(r.stageId)!;
        s.status = s.status ? worse(s.status, result.status) : result.status;
        if (--s.left === 0) await write("stage finish", () => recorder.stageFinished(r.stageId, s.status!));
      },
      artifactStored: async (job, a) => {
        const r = row(job);
        await write("artifact", () => recorder.artifactStored(r.id, a));
      },
    };

    const { manifest, plan, setupError, env, masks, keys } = prepared;
    // Not awaited: with Redis away the build runs anyway, and kill works once it is back.
    subscriber.subscribe(killChannel(c.id)).catch((err) => log.warn({ err: (err as Error).message }, "cannot subscribe for kill"));
    try {
      if (setupError || !manifest || !plan) {
        log.warn({ reason: setupError }, "build cannot run: failed in setup");
        status = await this.failSetup(prepared.jobs, setupError ?? "no manifest", reporter);
      } else {
        // Whatever an earlier run of this build left (a dead worker's, or one that died before it
        // could reap the run before it), newest first; never another installation's.
        for (const run of [...c.earlierRuns].reverse()) await this.reap(manifest, { buildId: String(c.id), run }, log);
        const entry = await getDriver(manifest.driver.type);
        const inner = entry.create({ buildId: String(c.id), run: c.run, manifest: manifest.driver, config: drivers, imagesPath: config.images?.path, log });
        c.driver = inner;
        let artifacts: ArtifactStore | undefined;
        if (config.artifacts) {
          const dir = path.join(config.artifacts.path, String(c.id));
          // An earlier run's artifacts, half-written ones of a killed worker included, went with its rows.
          if (attempt > 1) await fs.rm(dir, { recursive: true, force: true });
          await fs.mkdir(dir, { recursive: true });
          artifacts = new ArtifactStore(dir, config.artifacts.limit);
        }
        log.info({ driver: manifest.driver.type }, "build started");
        status = await runBuild({
          plan,
          driver: claimedDriver(inner, keys, async () => {
            // An environment made after the claim was lost (a worker that stalled past its lease) goes at once.
            try {
              await recorder.assertHeld();
            } catch (err) {
              if (!(err instanceof ClaimLostError)) return; // PostgreSQL away: the next write decides
              this.stop(c, "lost");
              throw err;
            }
          }),
          env,
          masks,
          objects: { store: config.objects ? new ObjectStore(config.objects.path) : undefined, list: manifest.objects },
          artifacts,
          reporter,
          signal: c.abort.signal,
          timeoutMs: config.timeoutMs,
        });
      }
    } catch (err) {
      if (!c.reason) {
        log.error({ err: (err as Error).message }, "build could not be recorded");
        c.reason = "unrecorded";
      }
      c.cause ??= err;
      status = "failed";
    } finally {
      subscriber.unsubscribe(killChannel(c.id)).catch(() => undefined);
    }

    if (c.reason === "lost") {
      log.warn("claim lost to another worker: this run's result is discarded");
      await this.retry("ack", () => queue.ack(c.taken.list, c.taken.raw), 30_000).catch(() => undefined);
      return;
    }
    if (c.reason === "shutdown") {
      await this.giveBack(c, recorder, log);
      return;
    }
    if (c.reason === "unrecorded") {
      await this.unfinished(c, recorder, attempt, c.cause, log);
      return;
    }
    c.settling = true;
    try {
      await this.retry("build status", () => recorder.finish(status), Infinity);
    } catch (err) {
      log.error({ err: (err as Error).message, status }, "cannot write the build's status");
      if (!(err instanceof ClaimLostError)) await this.unfinished(c, recorder, attempt, err, log);
      return;
    }
    const seconds = (Date.now() - started) / 1000;
    log.info({ status, seconds }, "build finished");
    this.deps.metrics?.buildFinished(status, seconds);
    if (isFailure(status) && build.notify.length && this.deps.mailer) this.mail(build, status, log);
    await this.retry("ack", () => queue.ack(c.taken.list, c.taken.raw), Infinity).catch((err) =>
      log.warn({ err: (err as Error).message }, "cannot acknowledge: a later delivery finds it finished and drops it"),
    );
  }

  /** A build that could not be loaded or prepared: given back when a retry may help, otherwise given up. */
  private async unpreparable(c: Claimed, recorder: BuildRecorder, attempt: number, err: unknown, log: Logger): Promise<void> {
    if (err instanceof ClaimLostError) {
      log.warn("claim lost to another worker before the build started");
      await this.retry("ack", () => this.deps.queue.ack(c.taken.list, c.taken.raw), 30_000).catch(() => undefined);
      return;
    }
    log.warn({ err: (err as Error).message }, "cannot prepare the build");
    await this.unfinished(c, recorder, attempt, err, log);
  }

  /**
   * A run whose result was not written: put back to run again while a retry may help; a build
   * whose writes PostgreSQL refuses, or that has been taken too often, ends on the dead list.
   */
  private async unfinished(c: Claimed, recorder: BuildRecorder, attempt: number, err: unknown, log: Logger): Promise<void> {
    const refused = err instanceof BuildGoneError || permanentDatabaseError(err);
    if (!refused && !(attempt >= MAX_DELIVERIES)) {
      await this.giveBack(c, recorder, log);
      return;
    }
    const why = refused ? `cannot record the build: ${(err as Error).message}` : `build taken ${attempt} times without its result being written: ${(err as Error)?.message ?? "unknown error"}`;
    c.settling = true;
    await recorder.finish("failed").catch(() => undefined);
    try {
      await bounded(this.retry("dead-letter", () => this.deps.queue.dead(c.taken.list, c.taken.raw, why), 30_000), 30_000, "Redis");
      log.error({ reason: why }, "build given up: failed and moved to the dead list");
    } catch (e) {
      log.error({ err: (e as Error).message, reason: why }, "build given up, but cannot move it to the dead list: it stays in the processing list");
    }
  }

  /** Not acknowledged: the build goes back on its queue, released in the database when possible. */
  private async giveBack(c: Claimed, recorder: BuildRecorder, log: Logger): Promise<void> {
    c.settling = true;
    await recorder.release().catch((err) => log.warn({ err: (err as Error).message }, "cannot release the build's claim: another worker takes it once the lease runs out"));
    try {
      await bounded(this.retry("requeue", () => this.deps.queue.requeue(c.taken.list, c.taken.raw, true), 30_000), 30_000, "Redis");
      log.info({ reason: c.reason }, "build put back on its queue");
    } catch (err) {
      log.error({ err: (err as Error).message }, "cannot put the build back: it stays in the processing list and is recovered with it");
    }
  }

  /** A build that cannot even start: the reason goes into its first job's output. */
  private async failSetup(jobs: StoredJob[], reason: string, reporter: BuildReporter): Promise<Status> {
    const [first, ...rest] = jobs;
    const job = (j: StoredJob): PlannedJob => ({ stage: j.stage, name: j.name, commands: [], artifacts: [] });
    const sink = await reporter.jobStarted(job(first));
    sink.end(`${reason}\n`);
    await new Promise<void>((resolve, reject) => {
      sink.once("finish", resolve);
      sink.once("error", reject);
    });
    await reporter.jobFinished(job(first), { status: "failed" });
    for (const j of rest) await reporter.jobFinished(job(j), { status: "skipped" });
    return "failed";
  }

  private async reap(manifest: Manifest, dead: RunRef, log: Logger): Promise<void> {
    try {
      await (await getDriver(manifest.driver.type)).reap?.(dead, this.deps.drivers, log);
    } catch (err) {
      log.warn({ err: (err as Error).message }, "could not clean up the earlier run's environment");
    }
  }

  private mail(build: LoadedBuild, status: string, log: Logger): void {
    const p = (async () => {
      const tail = await outputTail(this.deps.pool, build.id, 15);
      const sent = await this.deps.mailer!.sendBuildFailure({ id: String(build.id), status, namespace: build.namespace ?? undefined, notify: build.notify, outputTail: tail });
      log.info({ sent, to: build.notify.length }, sent ? "failure mail sent" : "failure mail not sent");
    })()
      .catch((err) => log.warn({ err: (err as Error).message }, "failure mail not sent"))
      .finally(() => this.background.delete(p));
    this.background.add(p);
  }

  private onKill(channel: string, message: string): void {
    const id = buildIdOfKillChannel(channel);
    if (id === undefined) return;
    const c = this.claimed.get(id);
    if (!c?.secret) return;
    const a = Buffer.from(message);
    const b = Buffer.from(c.secret);
    if (a.length !== b.length || !timingSafeEqual(a, b)) {
      this.log.warn({ build: c.id }, "kill request with the wrong secret ignored");
      return;
    }
    this.log.info({ build: c.id }, "kill requested");
    this.stop(c, "kill");
  }

  private async heartbeat(): Promise<void> {
    if (this.heartbeatBusy) return;
    this.heartbeatBusy = true;
    const { queue, pool, config } = this.deps;
    try {
      await queue.heartbeat().catch((err) => this.log.warn({ err: (err as Error).message }, "heartbeat to Redis failed"));
      const ids = [...this.claimed.keys()];
      if (ids.length) {
        try {
          const held = await renewLeases(pool, this.id, ids, config.leaseMs);
          for (const id of ids) {
            const c = this.claimed.get(id);
            if (c && !held.has(id) && !c.reason && !c.settling) {
              this.log.warn({ build: id }, "lease on build lost: stopping it");
              this.stop(c, "lost");
            }
          }
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, "cannot renew build leases (database unavailable?)");
        }
      }
      await this.recover();
      await this.reconcile();
    } finally {
      this.heartbeatBusy = false;
    }
  }

  private async recover(): Promise<void> {
    try {
      for (const r of await this.deps.queue.recoverDead()) {
        this.log.info({ deadWorker: r.worker, builds: r.builds }, "recovered the builds of a worker whose lease ran out");
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "cannot check for dead workers");
    }
  }

  /**
   * A BLMOVE whose reply was lost in a disconnect leaves a build in this worker's processing list
   * that it never saw; one seen on two heartbeats in a row goes back on its queue.
   */
  private async reconcile(): Promise<void> {
    if (this.stopping) return;
    try {
      const known = new Set([...this.claimed.values()].map((c) => c.taken.raw));
      const next = new Set<string>();
      const held = await this.deps.queue.held();
      if (this.inflight > this.claimed.size) return; // a build is between take and claim: look next time
      for (const t of held) {
        if (known.has(t.raw)) continue;
        const key = `${t.list}\0${t.raw}`;
        if (this.strays.has(key)) {
          this.log.warn({ queue: t.list }, "a taken build this worker never received goes back on its queue");
          await this.deps.queue.requeue(t.list, t.raw, true);
        } else next.add(key);
      }
      this.strays = next;
    } catch {
      // Redis unavailable: the heartbeat has already said so.
    }
  }

  private healBusy = false;

  /** Puts back on their queues the waiting builds whose payloads Redis lost (./heal.ts). */
  private async heal(): Promise<void> {
    if (this.healBusy || this.stopping) return;
    this.healBusy = true;
    const { queue, pool, config, metrics } = this.deps;
    try {
      await healQueue({ redis: queue.redis, pool, prefix: queue.prefix, worker: this.id, intervalMs: Math.max(1000, config.leaseMs), log: this.log, healed: (list, n) => metrics?.queueHealed(list, n) });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "cannot compare the queue with the database");
    } finally {
      this.healBusy = false;
    }
  }

  private sweepBusy = false;

  /** What workers killed on this host left (workspaces, processes), whichever machine runs their builds now. */
  private async sweep(): Promise<void> {
    if (this.sweepBusy) return;
    this.sweepBusy = true;
    try {
      for (const type of new Set(configuredDrivers(this.deps.drivers).map(driverTypeOfQueue))) {
        await (await getDriver(type)).sweep?.(this.deps.drivers, this.log).catch((err) => this.log.warn({ err: (err as Error).message, driver: type }, "could not sweep what dead workers left"));
      }
    } finally {
      this.sweepBusy = false;
    }
  }

  private depthsBusy = false;

  private async pollDepths(): Promise<void> {
    if (this.depthsBusy) return;
    this.depthsBusy = true;
    try {
      for (const [list, n] of Object.entries(await this.deps.queue.depths())) this.deps.metrics?.setQueueDepth(list, n);
    } catch {
      // Redis unavailable: depths are stale until it is back.
    } finally {
      this.depthsBusy = false;
    }
  }
}

/**
 * The driver, checking the claim once the environment exists (the runner destroys it when that
 * fails), then placing the build's private keys in ~/.ssh.
 */
function claimedDriver(inner: Driver, keys: { name: string; value: Buffer }[], assertHeld: () => Promise<void>): Driver {
  return {
    async create(output, signal) {
      await inner.create(output, signal);
      await assertHeld();
      for (const k of keys) await inner.place(`~/.ssh/${k.name}`, Readable.from([k.value]), k.value.length, 0o600);
    },
    execute: (job) => inner.execute(job),
    place: (dest, source, size, mode) => inner.place(dest, source, size, mode),
    collect: (p) => inner.collect(p),
    glob: inner.glob ? (p) => inner.glob!(p) : undefined,
    destroy: () => inner.destroy(),
  };
}
