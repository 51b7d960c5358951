// /builds/<id>/events: Server-Sent Events for an open build page. Each output row becomes an
// `output` event whose id is the row's id, so a viewer that reconnects (EventSource sends
// Last-Event-ID) resumes after the last row it got, neither losing nor repeating a line. A
// `status` event carries every status when one changed (no id: it moves no resume point); `end`
// says the build is over. Every viewer of a build writes the same ready events from the build's
// ring (fanout.ts); one behind the ring reads the rows it lacks from the database itself.
import type { ServerResponse } from "node:http";
import type pg from "pg";
import { describe } from "../cli/failure.js";
import { readOutput } from "../store/output.js";
import { writeDrained } from "../stream/write.js";
import type { BuildFeeds } from "./fanout.js";
import { ansiConverter } from "./output.js";
import { buildState, sseEvent } from "./sse.js";
import { RingCursor, type EventRing } from "./ring.js";

/** Rows a viewer behind its ring reads at a time: little held per viewer, however many are behind. */
export const CATCH_UP_ROWS = 2;

/**
 * Streams the build's events into `res` from output row `after` on, until the build ends or
 * `signal` aborts. Never fails: a database that cannot be reached is logged and the stream ends
 * cleanly, and the page's EventSource reconnects with Last-Event-ID.
 */
export async function streamEvents(feeds: BuildFeeds, id: number, after: number, res: ServerResponse, signal: AbortSignal): Promise<void> {
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no", "x-content-type-options": "nosniff" });
  let release: (() => void) | undefined;
  let cursor: RingCursor | undefined;
  try {
    // Tells EventSource how long to wait before it reconnects.
    await writeDrained(res, "retry: 1000\n\n");
    const watch = await feeds.watch(id);
    release = watch.release;
    cursor = new RingCursor(watch.ring, after);
    await follow(feeds, id, cursor, watch.ring, res, signal);
  } catch (err) {
    feeds.log.warn({ build: id, err: describe(err) }, "web: an event stream stopped early; its page reconnects and resumes");
  } finally {
    cursor?.close();
    release?.();
    res.end();
  }
}

async function follow(feeds: BuildFeeds, id: number, cursor: RingCursor, ring: EventRing, res: ServerResponse, signal: AbortSignal): Promise<void> {
  const converters = new Map<number, ReturnType<typeof ansiConverter>>();
  while (!signal.aborted && !res.destroyed) {
    const e = cursor.next();
    if (e === "behind") {
      if (!(await catchUp(feeds, id, cursor, converters, res))) return;
      cursor.join();
    } else if (e) {
      // The ring uses the event's buffer again only once this write is done with it.
      ring.writing(e);
      await writeDrained(res, e.bytes, () => ring.written(e));
      if (e.kind === "end") return;
    } else if (ring.closed) return;
    else await ring.changed(cursor.waitingFor, signal);
  }
}

/**
 * Writes the next few rows after the cursor's from the database, rendered for this viewer alone;
 * false when there are none (the build is gone). Viewers take turns at the database.
 */
async function catchUp(feeds: BuildFeeds, id: number, cursor: RingCursor, converters: Map<number, ReturnType<typeof ansiConverter>>, res: ServerResponse): Promise<boolean> {
  const rows = await feeds.catchUp.run(() => readOutput(feeds.pool, id, cursor.row, CATCH_UP_ROWS));
  for (const row of rows) {
    let ansi = converters.get(row.jobId);
    if (!ansi) converters.set(row.jobId, (ansi = ansiConverter()));
    await writeDrained(res, sseEvent("output", row.id, { job: row.jobId, html: ansi.ansi_to_html(row.data) }));
    cursor.row = row.id;
    if (res.destroyed) break;
  }
  return rows.length > 0;
}
