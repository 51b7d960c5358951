// One reader per watched build: however many pages follow a build, its statuses and new output
// rows are queried once per notification and each row is rendered (ANSI → HTML) once, into the
// build's EventRing of ready events that every viewer writes from, waiting a while for viewers
// that still need what the ring would drop. The reader starts with the
// first viewer, at the build's newest row, and stops with the last one or at the build's end.
import type pg from "pg";
import { describe } from "../cli/failure.js";
import type { Logger } from "../log/log.js";
import { TERMINAL_STATUSES } from "../runner/status.js";
import { readOutput } from "../store/output.js";
import { buildState, sseEvent } from "./sse.js";
import { RECHECK_MS, type BuildEvents } from "./live.js";
import { ansiConverter } from "./output.js";
import { lastOutputId, OUTPUT_BATCH } from "./queries.js";
import { EventRing, type RingKind } from "./ring.js";

/** The most a build's ring holds: a few seconds of a job printing megabytes a second. */
export const RING_BYTES = 8 * 1024 * 1024;

/** How long the reader waits for a viewer that still needs an event the ring would drop, before it lets the viewer go. */
export const PACE_MS = 1000;

/** Viewers behind their ring that read the database at once: the rest wait their turn, the pool stays free for the readers. */
export const CATCH_UP_READERS = 3;

/** A turn at a scarce thing, first come first served. */
export class Turns {
  private readonly queue: (() => void)[] = [];
  constructor(private free: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.queue.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.free++;
    }
  }
}

/** A viewer's hold on a build's feed. */
export interface Watch {
  ring: EventRing;
  release(): void;
}

class BuildFeed {
  viewers = 0;
  readonly ready: Promise<EventRing>;
  private readonly stop = new AbortController();
  private readonly converters = new Map<number, ReturnType<typeof ansiConverter>>();

  constructor(
    private readonly feeds: BuildFeeds,
    readonly id: number,
  ) {
    this.ready = this.open();
    this.ready.catch(() => undefined);
  }

  private async open(): Promise<EventRing> {
    const ring = new EventRing(await lastOutputId(this.feeds.pool, this.id), this.feeds.ringBytes);
    void this.run(ring).finally(() => ring.close());
    return ring;
  }

  /** No viewer is left, or the web process stops. */
  end(): void {
    this.stop.abort();
  }

  private async run(ring: EventRing): Promise<void> {
    const { pool, events, log } = this.feeds;
    let after = ring.base;
    let shown = "";
    const put = async (kind: RingKind, row: number, text: string) => {
      const bytes = ring.encode(text);
      await ring.room(bytes.length, PACE_MS);
      ring.push(kind, row, bytes);
    };
    try {
      while (!this.stop.signal.aborted) {
        // Registered before reading, so a notification during the read is not missed.
        const waiter = events.waiter(this.id);
        try {
          // The statuses before the rows: a build seen over has written its last row already.
          const state = await buildState(pool, this.id);
          if (!state) return;
          let read = 0;
          for (;;) {
            const rows = await readOutput(pool, this.id, after, OUTPUT_BATCH);
            for (const row of rows) {
              let ansi = this.converters.get(row.jobId);
              if (!ansi) this.converters.set(row.jobId, (ansi = ansiConverter()));
              await put("output", row.id, sseEvent("output", row.id, { job: row.jobId, html: ansi.ansi_to_html(row.data) }));
              after = row.id;
            }
            read += rows.length;
            if (rows.length < OUTPUT_BATCH || this.stop.signal.aborted) break;
          }
          const now = JSON.stringify(state);
          if (now !== shown) await put("status", after, sseEvent("status", undefined, state));
          // A keep-alive when a wait passed with nothing new.
          else if (read === 0) await put("ping", after, ": still here\n\n");
          shown = now;
          if (TERMINAL_STATUSES.includes(state.build.status)) {
            await put("end", after, sseEvent("end", after, { status: state.build.status }));
            return;
          }
          await waiter.wait(RECHECK_MS, this.stop.signal);
        } finally {
          waiter.cancel();
        }
      }
    } catch (err) {
      // Its viewers end cleanly and their pages reconnect, resuming after their last row.
      log.warn({ build: this.id, err: describe(err) }, "web: cannot read the build's events; its pages reconnect");
    } finally {
      this.feeds.forget(this);
    }
  }
}

/** The feeds of the builds being watched, one per build. */
export class BuildFeeds {
  private readonly feeds = new Map<number, BuildFeed>();
  /** Viewers behind their ring take turns at the database (events.ts). */
  readonly catchUp = new Turns(CATCH_UP_READERS);

  constructor(
    readonly pool: pg.Pool,
    readonly events: BuildEvents,
    readonly log: Logger,
    readonly ringBytes = RING_BYTES,
  ) {}

  /** The build's ring, its reader started by the first viewer; `release` when the viewer leaves. */
  async watch(id: number): Promise<Watch> {
    let feed = this.feeds.get(id);
    if (!feed) this.feeds.set(id, (feed = new BuildFeed(this, id)));
    const held = feed;
    held.viewers++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (--held.viewers === 0) {
        this.forget(held);
        held.end();
      }
    };
    try {
      return { ring: await held.ready, release };
    } catch (err) {
      release();
      this.forget(held);
      throw err;
    }
  }

  /** Builds with a reader now. */
  get watched(): number {
    return this.feeds.size;
  }

  /** A feed that stopped: the next viewer of its build starts a new one. */
  forget(feed: BuildFeed): void {
    if (this.feeds.get(feed.id) === feed) this.feeds.delete(feed.id);
  }

  close(): void {
    for (const feed of this.feeds.values()) feed.end();
    this.feeds.clear();
  }
}
