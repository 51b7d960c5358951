// The routes of `djinn-worker web` that read: pages, raw logs, downloads, live events, badges and
// the JSON API's reads. Everything is read from the daemon's tables and artifact store; what
// writes (sign-in, kill, re-run, submit) is in auth.ts and actions.ts.
import { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type pg from "pg";
import { badgeSvg } from "./badge.js";
import { contentDisposition, openStored, parseRange } from "./download.js";
import { streamEvents } from "./events.js";
import { html, page } from "./html.js";
import type { BuildFeeds } from "./fanout.js";
import type { BuildEvents } from "./live.js";
import { jobText } from "./output.js";
import { buildPage, listPage } from "./pages.js";
import { parseCursor, parseFilter, parseId, WebError } from "./params.js";
import { artifact, buildDetail, jobOfBuild, latestBuild, listBuilds } from "./queries.js";
import { SCRIPT, STYLE } from "./assets.js";
import type { Redis } from "ioredis";
import type { Crypto } from "../crypto/crypto.js";
import { pageViewer } from "./auth.js";

/** What the actions need beyond the database: [redis] to queue and kill, [crypto] to store and re-read masked values. */
export interface ActionServices {
  redis: Redis;
  crypto: Crypto;
  /** [redis] addr, for the line that says it is away. */
  redisAddr: string;
  /** [redis] queue prefix (worker.toml `queue`). */
  queue: string;
  manifestLimit: number;
}

export interface WebDeps {
  pool: pg.Pool;
  events: BuildEvents;
  /** One reader per watched build, its events shared by every viewer. */
  feeds: BuildFeeds;
  /** `[artifacts] path`; downloads answer 404 without it. */
  artifactsRoot?: string;
  /** Redis and the key for kill, re-run and submit; without them those answer 503 saying why (`actionsMissing`). */
  actions?: ActionServices;
  actionsMissing?: string;
}

type Params = Record<string, string>;

/** A signal that aborts when the client goes away (the response closes before it ended). */
export function clientGone(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  reply.raw.once("close", () => ac.abort());
  return ac.signal;
}

/** The build `text` names, or a 404. */
export async function existingBuild(pool: pg.Pool, text: string) {
  const id = parseId(text, "build");
  const b = await buildDetail(pool, id);
  if (!b) throw new WebError(404, `build ${id} not found`);
  return b;
}

/** A job's output as text/plain: followed while it runs (`follow`), from job_output a batch at a time. */
export async function sendJobText(deps: WebDeps, req: FastifyRequest, reply: FastifyReply, follow: boolean): Promise<FastifyReply> {
  const { id, job } = req.params as Params;
  const buildId = parseId(id, "build");
  const jobId = parseId(job, "job");
  if (!(await jobOfBuild(deps.pool, buildId, jobId))) throw new WebError(404, `build ${buildId} has no job ${jobId}`);
  reply.type("text/plain; charset=utf-8").header("cache-control", "no-store");
  return reply.send(Readable.from(jobText(deps.pool, deps.events, buildId, jobId, follow, clientGone(reply))));
}

export function registerRoutes(app: FastifyInstance, deps: WebDeps): void {
  const { pool } = deps;

  app.get("/static/web.js", (_req, reply) => reply.type("text/javascript; charset=utf-8").header("cache-control", "no-cache").send(SCRIPT));
  app.get("/static/web.css", (_req, reply) => reply.type("text/css; charset=utf-8").header("cache-control", "no-cache").send(STYLE));

  app.get("/", async (req, reply) => {
    const f = parseFilter(req.query);
    const { builds, next } = await listBuilds(pool, f);
    return reply.type("text/html; charset=utf-8").send(listPage(builds, f, next, pageViewer(req)).text);
  });

  app.get("/builds/:id", async (req, reply) => {
    const b = await existingBuild(pool, (req.params as Params).id);
    return reply.type("text/html; charset=utf-8").header("cache-control", "no-store").send(Readable.from(buildPage(pool, b, pageViewer(req))));
  });

  app.get("/builds/:id/jobs/:job/raw", (req, reply) => sendJobText(deps, req, reply, true));

  app.get("/builds/:id/events", async (req, reply) => {
    const b = await existingBuild(pool, (req.params as Params).id);
    const after = parseCursor(req.headers["last-event-id"], (req.query as Record<string, unknown>).after);
    const signal = clientGone(reply);
    reply.hijack();
    await streamEvents(deps.feeds, b.id, after, reply.raw, signal);
  });

  app.get("/builds/:id/artifacts/:artifact", async (req, reply) => {
    const { id, artifact: aid } = req.params as Params;
    const buildId = parseId(id, "build");
    const artifactId = parseId(aid, "artifact");
    const row = await artifact(pool, buildId, artifactId);
    if (!row) throw new WebError(404, `build ${buildId} has no artifact ${artifactId}`);
    const file = deps.artifactsRoot ? await openStored(deps.artifactsRoot, row.path) : undefined;
    if (!file) throw new WebError(404, `artifact ${artifactId} of build ${buildId} is not in the artifact store`);
    const range = parseRange(req.headers.range, file.size);
    reply.header("content-type", "application/octet-stream").header("content-disposition", contentDisposition(row.name)).header("accept-ranges", "bytes");
    if (range === "unsatisfiable") {
      await file.handle.close();
      return reply.code(416).header("content-range", `bytes */${file.size}`).send();
    }
    if (range === "whole") return reply.header("content-length", file.size).send(file.handle.createReadStream());
    const { start, end } = range;
    return reply
      .code(206)
      .header("content-range", `bytes ${start}-${end}/${file.size}`)
      .header("content-length", end - start + 1)
      .send(file.handle.createReadStream({ start, end }));
  });

  app.get("/badge/*", async (req, reply) => {
    const rest = (req.params as Params)["*"];
    if (!rest.endsWith(".svg")) throw new WebError(404, "a badge is /badge/<namespace>.svg");
    const build = await latestBuild(pool, rest.slice(0, -".svg".length));
    return reply
      .code(build ? 200 : 404)
      .type("image/svg+xml; charset=utf-8")
      .header("cache-control", "no-cache")
      .send(badgeSvg(build?.status ?? "unknown"));
  });
}

/** One line for an error, as JSON under /api/ and as a small page elsewhere; never a stack trace. */
export function errorReply(req: FastifyRequest, reply: FastifyReply, statusCode: number, message: string): FastifyReply {
  reply.code(statusCode);
  if (req.url.startsWith("/api/")) return reply.type("application/json; charset=utf-8").send(JSON.stringify({ error: message }) + "\n");
  return reply.type("text/html; charset=utf-8").send(page(`${statusCode}`, html`<main><h1>${statusCode}</h1><p class="error">${message}</p></main>`, pageViewer(req)).text);
}
