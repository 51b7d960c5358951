// The daemon's worker: takes builds from its queues, claims each in PostgreSQL and hands it to a
// ClaimedBuild (./build.ts), which prepares, runs and settles it; meanwhile it renews the leases,
// passes on kills, heals the queue, sweeps the host, and at shutdown gives back what still runs.
// See docs/daemon.md for the guarantees.
import { timingSafeEqual } from "node:crypto";
import { sweepingDrivers } from "../driver/catalogue.js";
import { getDriver } from "../driver/driver.js";
import "../driver/all.js";
import type { Logger } from "../log/log.js";
import { buildIdOfKillChannel } from "../queue/names.js";
import type { BuildId, Delivery, SettlePolicy } from "../queue/delivery.js";
import { allQueueDepths } from "../queue/inventory.js";
import { parsePayload } from "../queue/queue.js";
import { ClaimLostError, claimBuild, renewLeases } from "../store/builds.js";
import { permanentDatabaseError } from "../store/db.js";
import { bounded, sleep } from "../timers/timers.js";
import type { ClaimedBuild, WorkerServices } from "./build.js";
import type { WorkerDeps } from "./deps.js";
import { healQueue } from "./heal.js";
import { letYoungGenerationGrow } from "./idle-memory.js";
import { PhaseClock } from "../timers/phases.js";

/** How often a worker looks for what dead workers left on its host. */
const SWEEP_EVERY_MS = 60_000;

/** A database or Redis error that a retry may cure (as opposed to a lost claim, or a statement PostgreSQL refuses). */
function transient(err: unknown): boolean {
  return !(err instanceof ClaimLostError) && !permanentDatabaseError(err);
}

export class Worker {
  readonly id: string;
  private readonly log: Logger;
  private readonly claimed = new Map<BuildId, ClaimedBuild>();
  private readonly claiming = new Set<BuildId>();
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

  /** What the builds it runs use of it. */
  private readonly services: WorkerServices;
  /** Aborted on a forced stop: writes still waiting for Redis are abandoned (./delivery.ts's policy). */
  private readonly stopRetries = new AbortController();
  private readonly settlePolicy: SettlePolicy;

  constructor(private readonly deps: WorkerDeps) {
    this.id = deps.id;
    this.log = deps.log.child({ worker: deps.id });
    this.services = { deps, log: this.log, retry: (what, fn, forMs) => this.retry(what, fn, forMs), track: (work) => this.track(work) };
    this.settlePolicy = { stop: this.stopRetries.signal, onRetry: (what, err) => this.log.warn({ err: (err as Error).message, what }, "write to Redis failed; retrying") };
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
      for (const c of this.claimed.values()) c.stop("shutdown");
    }
    // From here on a failed write is not retried: what cannot be handed back now is recovered by the lease.
    this.forced = true;
    this.stopRetries.abort();
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
    this.stopRetries.abort();
    this.forceResolve?.();
    // Kill what still runs now: its processes die even if the exit comes before the hand-back.
    if (this.stopping) for (const c of this.claimed.values()) c.stop("shutdown");
  }

  /** Before a forced exit: the environments of builds still running are destroyed (nothing left behind on this host). */
  async abandon(): Promise<void> {
    await Promise.allSettled([...this.claimed.values()].map((c) => c.driver?.destroy()));
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
      let taken: Delivery | null;
      try {
        taken = await queue.take(2, this.settlePolicy);
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
        await taken.requeue("the worker is stopping").catch(() => undefined);
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

  private async handle(taken: Delivery): Promise<void> {
    const phases = new PhaseClock();
    const payload = parsePayload(taken.raw);
    if (typeof payload === "string") {
      this.log.warn({ queue: taken.list, reason: payload }, "unusable payload moved to the dead list");
      await taken.dead(payload);
      return;
    }
    const { id } = payload;
    if (this.claimed.has(id) || this.claiming.has(id)) {
      // A second copy of a build this worker is running: look again once it is done.
      this.later(taken, "a copy of a build this worker is running");
      return;
    }
    // Loaded with the first build (the runner, manifest, assembly, recorder): an idle worker does
    // without. Before the claim, so that nothing comes between claiming a build and holding it.
    const { ClaimedBuild } = await import("./build.js");
    letYoungGenerationGrow();
    const claim = await this.claim(id, taken);
    if (!claim) return;
    phases.mark("claim");
    const build = new ClaimedBuild({ id, taken, attempt: claim.attempt, previousWorker: claim.previousWorker, run: claim.run, earlierRuns: claim.earlierRuns, phases, build: claim.build }, this.services);
    this.claimed.set(id, build);
    this.claiming.delete(id);
    this.deps.metrics?.setRunning(this.claimed.size);
    if (payload.enqueued_at && claim.attempt === 1) this.deps.metrics?.queueWait(Math.max(0, Date.now() - payload.enqueued_at) / 1000);
    try {
      await build.run();
    } finally {
      this.claimed.delete(id);
      this.deps.metrics?.setRunning(this.claimed.size);
    }
  }

  /** Claims the build in PostgreSQL; when it is not this worker's to run, ends the delivery and says undefined. */
  private async claim(id: BuildId, taken: Delivery) {
    const { pool, config } = this.deps;
    let claim;
    // Two copies of one build taken at once must not both claim it: the claim does not tell this worker's runs apart.
    this.claiming.add(id);
    try {
      claim = await claimBuild(pool, id, this.id, config.leaseMs, config.manifestLimit);
      this.claimBackoff = 500;
    } catch (err) {
      this.claiming.delete(id);
      this.log.warn({ build: id, err: (err as Error).message }, "cannot claim build (database unavailable?); putting it back");
      // Backing off here keeps a worker from spinning on the queue while PostgreSQL is away.
      await sleep(this.claimBackoff, { unref: true });
      this.claimBackoff = Math.min(this.claimBackoff * 2, 10_000);
      await taken.requeue("cannot claim the build");
      return undefined;
    }
    if (claim.outcome === "claimed") return claim;
    this.claiming.delete(id);
    switch (claim.outcome) {
      case "missing":
        this.log.warn({ build: id, queue: taken.list }, "payload names no build: moved to the dead list");
        await taken.dead(`no build with id ${id}`);
        break;
      case "finished":
        this.log.info({ build: id, status: claim.status }, "build already finished: dropping duplicate delivery");
        await taken.ack();
        break;
      case "held":
        this.log.info({ build: id, owner: claim.worker }, "build is held by another worker: looking again later");
        this.later(taken, "held by another worker");
        break;
    }
    return undefined;
  }

  /** Puts it back behind the queue after a second, outside the slot; the payload stays in the processing list meanwhile. */
  private later(taken: Delivery, reason: string): void {
    this.track(sleep(1000, { unref: true }).then(() => taken.requeue(reason, "behind")));
  }

  /** Work that outlives a build's slot (a requeue later, a failure mail): shutdown waits for it. */
  private track(work: Promise<unknown>): void {
    const p: Promise<unknown> = work.catch(() => undefined).finally(() => this.background.delete(p));
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
    c.stop("kill");
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
              c.stop("lost");
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
      // Payloads are bytes: compared as latin1 strings, one character a byte.
      const known = new Set([...this.claimed.values()].map((c) => c.taken.raw.toString("latin1")));
      const next = new Set<string>();
      const held = await this.deps.queue.held(this.settlePolicy);
      if (this.inflight > this.claimed.size) return; // a build is between take and claim: look next time
      for (const t of held) {
        if (known.has(t.raw.toString("latin1"))) continue;
        const key = `${t.list}\0${t.raw.toString("latin1")}`;
        if (this.strays.has(key)) {
          this.log.warn({ queue: t.list }, "a taken build this worker never received goes back on its queue");
          // Not awaited: a Redis away must not hold up the heartbeat that renews the leases.
          this.track(t.requeue("taken by a command whose reply was lost"));
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
      // Only engines that sweep: a driver configured but idle is not loaded until a build for it arrives.
      for (const type of sweepingDrivers(this.deps.drivers)) {
        await (await getDriver(type)).sweep?.(this.deps.drivers, this.log).catch((err) => this.log.warn({ err: (err as Error).message, driver: type }, "could not sweep what dead workers left"));
      }
    } finally {
      this.sweepBusy = false;
    }
  }

  private depthsBusy = false;
  /** Queues whose depth has been reported: one Redis no longer has (emptied) is reported 0. */
  private depthsSeen = new Set<string>();

  /** The depth of every queue under the prefix, served by this worker or not (an unserved one is how a waiting build is seen). */
  private async pollDepths(): Promise<void> {
    if (this.depthsBusy) return;
    this.depthsBusy = true;
    const { queue, metrics } = this.deps;
    try {
      const depths = await allQueueDepths(queue.redis, queue.prefix);
      for (const list of [...queue.lists, ...this.depthsSeen]) if (!depths.has(list)) depths.set(list, 0);
      for (const [list, n] of depths) metrics?.setQueueDepth(list, n);
      this.depthsSeen = new Set(depths.keys());
    } catch {
      // Redis unavailable: depths are stale until it is back.
    } finally {
      this.depthsBusy = false;
    }
  }
}
