// /builds/<id>/events: Server-Sent Events for an open build page. Each output row becomes an
// `output` event whose id is the row's id, so a viewer that reconnects (EventSource sends
// Last-Event-ID) resumes after the last row it got, neither losing nor repeating a line. A
// `status` event carries every status when one changed; `end` says the build is over.
import type { ServerResponse } from "node:http";
import type pg from "pg";
import { TERMINAL_STATUSES } from "../runner/status.js";
import { writeDrained } from "../stream/write.js";
import { runTime } from "./html.js";
import { RECHECK_MS, type BuildEvents } from "./live.js";
import { ansiConverter } from "./output.js";
import { buildDetail, buildStages, OUTPUT_BATCH } from "./queries.js";
import { readOutput } from "../store/output.js";

/** The statuses a build page shows, as its script applies them. */
export async function buildState(pool: pg.Pool, id: number) {
  const [build, stages] = await Promise.all([buildDetail(pool, id), buildStages(pool, id)]);
  if (!build) return undefined;
  return {
    build: { status: build.status, duration: runTime(build.startedAt, build.finishedAt) },
    stages: stages.map((s) => ({ id: s.id, status: s.status })),
    jobs: stages.flatMap((s) => s.jobs.map((j) => ({ id: j.id, status: j.status, exitCode: j.exitCode, duration: runTime(j.startedAt, j.finishedAt) }))),
  };
}

function event(name: string, id: number, data: unknown): string {
  // JSON never holds a raw newline, so the data is one `data:` line.
  return `event: ${name}\nid: ${id}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** Streams the build's events into `res` from output row `after` on, until the build ends or `signal` aborts. */
export async function streamEvents(pool: pg.Pool, events: BuildEvents, id: number, after: number, res: ServerResponse, signal: AbortSignal): Promise<void> {
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no", "x-content-type-options": "nosniff" });
  // Tells EventSource how long to wait before it reconnects.
  await writeDrained(res, "retry: 1000\n\n");
  const converters = new Map<number, ReturnType<typeof ansiConverter>>();
  let shown = "";
  while (!signal.aborted) {
    const waiter = events.waiter(id);
    try {
      // The statuses before the rows: a build seen over has written its last row already.
      const state = await buildState(pool, id);
      if (!state) break;
      for (;;) {
        const rows = await readOutput(pool, id, after, OUTPUT_BATCH);
        for (const row of rows) {
          let ansi = converters.get(row.jobId);
          if (!ansi) converters.set(row.jobId, (ansi = ansiConverter()));
          await writeDrained(res, event("output", row.id, { job: row.jobId, html: ansi.ansi_to_html(row.data) }));
          after = row.id;
        }
        if (rows.length < OUTPUT_BATCH || signal.aborted) break;
      }
      const now = JSON.stringify(state);
      if (now !== shown) {
        await writeDrained(res, event("status", after, state));
        shown = now;
      } else await writeDrained(res, ": still here\n\n");
      if (TERMINAL_STATUSES.includes(state.build.status)) {
        await writeDrained(res, event("end", after, { status: state.build.status }));
        break;
      }
      await waiter.wait(RECHECK_MS, signal);
    } finally {
      waiter.cancel();
    }
  }
  res.end();
}
