// One claimed build on this worker, in one direction: prepare (load, decrypt, masks, driver
// check) → run → settle (record the status, mail, acknowledge; or give it back, or dead-letter
// it). The worker around it takes, claims, renews leases and stops it (./worker.ts).
import path from "node:path";
import { assembleBuild, type BuildSpec } from "../assembly/assembly.js";
import { CacheStore } from "../cache/store.js";
import { getDriver, type Driver } from "../driver/driver.js";
import type { Logger } from "../log/log.js";
import { killChannel } from "../queue/names.js";
import type { BuildId, Delivery } from "../queue/delivery.js";
import { reportSetupFailure, runBuild, type BuildReporter } from "../runner/runner.js";
import { isFailure, type Status } from "../runner/status.js";
import { ClaimLostError, type LoadedBuild } from "../store/builds.js";
import { BuildRecorder } from "../store/recorder.js";
import { outputTail } from "../store/output.js";
import { permanentDatabaseError } from "../store/db.js";
import { PhaseClock } from "../timers/phases.js";
import type { WorkerDeps } from "./deps.js";
import { MAX_DELIVERIES, prepareBuild, type PreparedBuild } from "./prepare.js";
import { claimedDriver } from "./claimed-driver.js";
import { buildTrigger, triggerLine } from "../store/triggers.js";
import { DatabaseReporter } from "./reporter.js";

export type StopReason = "kill" | "shutdown" | "lost" | "unrecorded";

/** What a claimed build uses of its worker. */
export interface WorkerServices {
  deps: WorkerDeps;
  log: Logger;
  /** Retries `fn` while it fails with a transient error, up to `forMs`; a forced shutdown ends it. */
  retry<T>(what: string, fn: () => Promise<T>, forMs: number): Promise<T>;
  /** Work that outlives the build (its failure mail): shutdown waits for it. */
  track(work: Promise<unknown>): void;
}

export interface Claim {
  id: BuildId;
  taken: Delivery;
  attempt: number;
  previousWorker: string | null;
  /** This run's token and the earlier runs' (recorded with the claims): what the driver leaves on the host is named by it. */
  run: string;
  earlierRuns: string[];
  /** Started when the payload was taken; marked "claim" when the claim was written. */
  phases: PhaseClock;
  /** The build's rows, read with the claim. */
  build: LoadedBuild;
}

export class ClaimedBuild {
  readonly id: BuildId;
  readonly taken: Delivery;
  /** The id as drivers, paths and mail name it: converted once, here at the edge. */
  private readonly idText: string;
  reason?: StopReason;
  /** Why a run was not recorded. */
  private cause?: unknown;
  /** The build's environment, once there is one: destroyed on a forced exit. */
  driver?: Driver;
  /** What a kill request must carry. */
  secret?: string;
  /**
   * The run is over and its final status (or its release) is being written, which ends the lease:
   * a renewal that finds the lease gone then is no lost claim.
   */
  settling = false;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private readonly recorder: BuildRecorder;
  private started = 0;

  constructor(
    private readonly claim: Claim,
    private readonly w: WorkerServices,
  ) {
    this.id = claim.id;
    this.idText = String(claim.id);
    this.taken = claim.taken;
    this.log = w.log.child({ build: claim.id, attempt: claim.attempt });
    this.recorder = new BuildRecorder(w.deps.pool, claim.id, w.deps.id, claim.attempt);
  }

  stop(reason: StopReason): void {
    this.reason ??= reason;
    this.abort.abort();
  }

  /** The build's whole stay on this worker; what goes wrong ends in a settled build, never a throw. */
  async run(): Promise<void> {
    const ready = await this.prepare();
    if (!ready) return;
    const status = await this.execute(ready.prepared);
    await this.settle(status, ready.build);
  }

  private async prepare(): Promise<{ build: LoadedBuild; prepared: PreparedBuild } | undefined> {
    const { pool, crypto, drivers, config } = this.w.deps;
    try {
      const build = this.claim.build;
      this.secret = build.secret;
      const claim = { id: this.id, worker: this.w.deps.id, attempt: this.claim.attempt };
      const prepared = await this.w.retry("prepare", () => prepareBuild(build, { pool, crypto, drivers, claim, manifestLimit: config.manifestLimit }), config.leaseMs);
      this.claim.phases.mark("prepare");
      return { build, prepared };
    } catch (err) {
      await this.unpreparable(err);
      return undefined;
    }
  }

  private async execute(prepared: PreparedBuild): Promise<Status> {
    const { subscriber, config } = this.w.deps;
    this.started = Date.now();
    // Not awaited: with Redis away the build runs anyway, and kill works once it is back.
    subscriber.subscribe(killChannel(this.id)).catch((err) => this.log.warn({ err: (err as Error).message }, "cannot subscribe for kill"));
    try {
      const reporter = new DatabaseReporter(prepared.plan, this.recorder, (what, fn) => this.write(what, fn), { outputLimit: config.outputLimit, log: this.log, firstNote: this.attemptNote(), phases: this.claim.phases });
      if (!prepared.spec) {
        const reason = prepared.setupError ?? "no manifest";
        this.log.warn({ reason }, "build cannot run: failed in setup");
        return await reportSetupFailure(prepared.plan, reason, prepared.masks, reporter);
      }
      return await this.runSpec(prepared.spec, prepared.keys, reporter);
    } catch (err) {
      if (!this.reason) {
        this.log.error({ err: (err as Error).message }, "build could not be recorded");
        this.reason = "unrecorded";
      }
      this.cause ??= err;
      return "failed";
    } finally {
      subscriber.unsubscribe(killChannel(this.id)).catch(() => undefined);
    }
  }

  private async runSpec(spec: BuildSpec, keys: PreparedBuild["keys"], reporter: BuildReporter): Promise<Status> {
    const { config, drivers } = this.w.deps;
    // Whatever an earlier run of this build left (a dead worker's, or one that died before it
    // could reap the run before it), newest first; never another installation's.
    for (const run of [...this.claim.earlierRuns].reverse()) await this.reap(spec.manifest.driver.type, run);
    const build = await assembleBuild(spec, {
      buildId: this.idText,
      run: this.claim.run,
      drivers,
      imagesPath: config.images?.path,
      objectsPath: config.objects?.path,
      // An earlier run's artifacts, half-written ones of a killed worker included, went with its rows.
      artifacts: config.artifacts && { dir: path.join(config.artifacts.path, this.idText), limit: config.artifacts.limit, fresh: this.claim.attempt > 1 },
      cache: config.cache && { store: new CacheStore({ root: config.cache.path, limit: config.cache.limit, quota: config.cache.quota }), observe: this.w.deps.metrics?.cache },
      log: this.log,
    });
    this.driver = build.driver;
    this.log.info({ driver: spec.manifest.driver.type }, "build started");
    const { plan, env, masks, objects, artifacts, cache } = build;
    const driver = claimedDriver(build.driver, keys, () => this.assertHeld());
    return runBuild({ plan, driver, env, masks, objects, artifacts, cache, reporter, signal: this.abort.signal, timeoutMs: config.timeoutMs });
  }

  /** An environment made after the claim was lost (a worker that stalled past its lease) goes at once. */
  private async assertHeld(): Promise<void> {
    try {
      await this.recorder.assertHeld();
    } catch (err) {
      if (!(err instanceof ClaimLostError)) return; // PostgreSQL away: the next write decides
      this.stop("lost");
      throw err;
    }
  }

  /** A write that keeps failing stops the build: it is given back rather than acknowledged. */
  private async write(what: string, fn: () => Promise<void>): Promise<void> {
    try {
      await this.w.retry(what, fn, this.w.deps.config.leaseMs);
    } catch (err) {
      this.cause ??= err;
      this.stop(err instanceof ClaimLostError ? "lost" : "unrecorded");
      throw err;
    }
  }

  private attemptNote(): string | undefined {
    const { attempt, previousWorker } = this.claim;
    if (attempt <= 1) return undefined;
    return `--- attempt ${attempt}: an earlier run${previousWorker ? ` (worker ${previousWorker})` : ""} did not finish; its output was discarded and the build runs again from the start ---\n`;
  }

  private async settle(status: Status, build: LoadedBuild): Promise<void> {
    if (this.reason === "lost") {
      this.log.warn("claim lost to another worker: this run's result is discarded");
      await this.taken.ack().catch(() => undefined);
      return;
    }
    if (this.reason === "shutdown") return this.giveBack();
    if (this.reason === "unrecorded") return this.unfinished(this.cause);
    this.settling = true;
    try {
      await this.w.retry("build status", () => this.recorder.finish(status), Infinity);
    } catch (err) {
      this.log.error({ err: (err as Error).message, status }, "cannot write the build's status");
      if (!(err instanceof ClaimLostError)) await this.unfinished(err);
      return;
    }
    const { phases } = this.claim;
    phases.mark("status");
    const seconds = (Date.now() - this.started) / 1000;
    this.log.info({ status, seconds, phasesMs: phases.ms }, "build finished");
    this.w.deps.metrics?.buildFinished(status, seconds);
    if (isFailure(status) && build.notify.length && this.w.deps.mailer) this.mail(build, status);
    await this.taken.ack().catch((err) => this.log.warn({ err: (err as Error).message }, "cannot acknowledge: a later delivery finds it finished and drops it"));
    phases.mark("ack");
    // Apart from "build finished": an acknowledgement waits for Redis, the build's result does not.
    this.log.debug({ ackMs: phases.ms.ack }, "build acknowledged");
  }

  /** A build that could not be loaded or prepared: given back when a retry may help, otherwise given up. */
  private async unpreparable(err: unknown): Promise<void> {
    if (err instanceof ClaimLostError) {
      this.log.warn("claim lost to another worker before the build started");
      await this.taken.ack().catch(() => undefined);
      return;
    }
    this.log.warn({ err: (err as Error).message }, "cannot prepare the build");
    await this.unfinished(err);
  }

  /**
   * A run whose result was not written: put back to run again while a retry may help; a build
   * whose writes PostgreSQL refuses, or that has been taken too often, ends on the dead list.
   */
  private async unfinished(err: unknown): Promise<void> {
    const { attempt } = this.claim;
    const refused = permanentDatabaseError(err);
    if (!refused && !(attempt >= MAX_DELIVERIES)) return this.giveBack();
    const why = refused ? `cannot record the build: ${(err as Error).message}` : `build taken ${attempt} times without its result being written: ${(err as Error)?.message ?? "unknown error"}`;
    this.settling = true;
    await this.recorder.finish("failed").catch(() => undefined);
    try {
      await this.taken.dead(why);
      this.log.error({ reason: why }, "build given up: failed and moved to the dead list");
    } catch (e) {
      this.log.error({ err: (e as Error).message, reason: why }, "build given up, but cannot move it to the dead list: it stays in the processing list");
    }
  }

  /** Not acknowledged: the build goes back on its queue, released in the database when possible. */
  private async giveBack(): Promise<void> {
    this.settling = true;
    await this.recorder.release().catch((err) => this.log.warn({ err: (err as Error).message }, "cannot release the build's claim: another worker takes it once the lease runs out"));
    try {
      await this.taken.requeue(`run not finished (${this.reason ?? "not recorded"})`);
      this.log.info({ reason: this.reason }, "build put back on its queue");
    } catch (err) {
      this.log.error({ err: (err as Error).message }, "cannot put the build back: it stays in the processing list and is recovered with it");
    }
  }

  private async reap(type: string, run: string): Promise<void> {
    try {
      await (await getDriver(type)).reap?.({ buildId: this.idText, run }, this.w.deps.drivers, this.log);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "could not clean up the earlier run's environment");
    }
  }

  private mail(build: LoadedBuild, status: Status): void {
    const { pool, mailer } = this.w.deps;
    this.w.track(
      (async () => {
        const [tail, pushed] = await Promise.all([outputTail(pool, build.id, 15), buildTrigger(pool, build.id)]);
        // The mailer logs the one line each mail gets, sent or not.
        await mailer!.sendBuildFailure({ id: this.idText, status, namespace: build.namespace ?? undefined, notify: build.notify, outputTail: tail, trigger: pushed && triggerLine(pushed) }, this.log);
      })().catch((err) => this.log.warn({ err: (err as Error).message }, "failure mail not sent")),
    );
  }
}

