// What a build's event stream is made of: the statuses a page shows, and one event as the wire
// carries it. Shared by the build's reader (fanout.ts) and each viewer (events.ts).
import type pg from "pg";
import { runTime } from "./html.js";
import { buildDetail, buildStages } from "./queries.js";

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

/** One event; without `id` it leaves the viewer's resume point where it was. */
export function sseEvent(name: string, id: number | undefined, data: unknown): string {
  // JSON never holds a raw newline, so the data is one `data:` line.
  return `event: ${name}\n${id === undefined ? "" : `id: ${id}\n`}data: ${JSON.stringify(data)}\n\n`;
}
