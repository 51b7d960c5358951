// One LISTEN connection per web process: the daemon's BuildRecorder announces every output row and
// status change of a build on BUILD_CHANNEL (payload: the build id), and each open page, event
// stream or followed log waiting on that build is woken. A wake only says "look again": readers
// always read the rows themselves, so a lost or merged notification loses nothing.
import pg from "../store/pg.js";
import type { WorkerConfig } from "../config/config.js";
import type { Logger } from "../log/log.js";
import { serverAddress } from "../net/address.js";
import { BUILD_CHANNEL } from "../store/recorder.js";
import { sleep } from "../timers/timers.js";

/** Waiters look again after this even without a notification: a safety net, and a keep-alive for event streams. */
export const RECHECK_MS = 15_000;

export interface Waiter {
  /** Resolves at the next notification for the build, after `ms`, or when `signal` aborts or the hub closes. */
  wait(ms: number, signal?: AbortSignal): Promise<void>;
  cancel(): void;
}

export class BuildEvents {
  private readonly waiting = new Map<number, Set<() => void>>();
  private readonly listeners = new Set<(buildId: number | undefined) => void>();
  private client?: pg.Client;
  private closed = false;

  constructor(
    private readonly db: NonNullable<WorkerConfig["database"]>,
    private readonly log: Logger,
  ) {}

  /** Connects and listens; fails when the first connection cannot be made. */
  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    const { host, port } = serverAddress(this.db.addr, 5432);
    const client = new pg.Client({ host, port, database: this.db.name, user: this.db.username, password: this.db.password, application_name: "djinn-worker web", connectionTimeoutMillis: 5000 });
    client.on("notification", (n) => {
      const id = Number(n.payload);
      if (n.channel === BUILD_CHANNEL && Number.isSafeInteger(id)) {
        this.wake(id);
        for (const l of this.listeners) l(id);
      }
    });
    client.on("error", () => undefined);
    client.on("end", () => {
      if (this.client === client && !this.closed) void this.reconnect();
    });
    await client.connect();
    await client.query(`LISTEN ${BUILD_CHANNEL}`);
    this.client = client;
  }

  /** Connects again after the connection dropped; everything waiting looks again, as notifications may have been missed. */
  private async reconnect(): Promise<void> {
    this.client = undefined;
    for (let delay = 500; !this.closed; delay = Math.min(delay * 2, 10_000)) {
      try {
        await this.connect();
        this.log.info("web: listening for build events again");
        this.wakeAll();
        for (const l of this.listeners) l(undefined);
        return;
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, "web: cannot listen for build events; trying again");
        await sleep(delay, { unref: true });
      }
    }
  }

  /** Calls `listener` with each notified build, and with undefined when notifications may have been missed. */
  subscribe(listener: (buildId: number | undefined) => void): void {
    this.listeners.add(listener);
  }

  /** Registers at once (before the caller reads), so a notification between the read and the wait is not missed. */
  waiter(buildId: number): Waiter {
    let fired = false;
    let release: (() => void) | undefined;
    const fire = () => {
      fired = true;
      release?.();
    };
    let set = this.waiting.get(buildId);
    if (!set) this.waiting.set(buildId, (set = new Set()));
    set.add(fire);
    const cancel = () => {
      const s = this.waiting.get(buildId);
      s?.delete(fire);
      if (s?.size === 0) this.waiting.delete(buildId);
    };
    return {
      wait: async (ms, signal) => {
        if (fired || this.closed) return cancel();
        const stop = new AbortController();
        release = () => stop.abort();
        const onAbort = () => stop.abort();
        signal?.addEventListener("abort", onAbort, { once: true });
        if (signal?.aborted) stop.abort();
        await sleep(ms, { signal: stop.signal });
        signal?.removeEventListener("abort", onAbort);
        cancel();
      },
      cancel,
    };
  }

  private wake(buildId: number): void {
    for (const fire of this.waiting.get(buildId) ?? []) fire();
  }

  private wakeAll(): void {
    for (const set of this.waiting.values()) for (const fire of set) fire();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wakeAll();
    await this.client?.end().catch(() => undefined);
  }
}
