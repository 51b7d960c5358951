// What signed-in users and API clients may do: kill a build, run one again, submit one. Each goes
// through the path the CLI uses (../control/kill.ts, ../submission), never a copy of it.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { killBuild, killLine } from "../control/kill.js";
import type { Logger } from "../log/log.js";
import type { BuildId } from "../queue/build-id.js";
import { isShellName } from "../shell/quote.js";
import { API_FIELDS, checkSubmission, storeAndQueue, type Submission } from "../submission/submission.js";
import { storedSubmission } from "../submission/rerun.js";
import { apiUser, formUser, type Viewer } from "./auth.js";
import { parseId, WebError } from "./params.js";
import type { ActionServices, WebDeps } from "./routes.js";

/** The fields of POST /api/builds: what `submit` takes. */
const FIELDS = ["manifest", "env", "secrets", "keys", "notify"];

/** The services for an action, or a 503 saying which is missing: asked before anything is written. */
function services(deps: WebDeps): ActionServices {
  const a = deps.actions;
  if (!a) throw new WebError(503, `this web process cannot act on builds: ${deps.actionsMissing ?? "no [redis] or [crypto]"}`);
  // The client has no offline queue: while it is away, say so here rather than fail halfway.
  if (a.redis.status !== "ready") throw new WebError(503, `Redis at ${a.redisAddr} is not reachable right now (${a.redis.status}): nothing done, try again`);
  return a;
}

/** A JSON object of string values (env, secrets, keys) as pairs; a wrong one is a 400 naming the field (never a secret's name or value). */
function pairs(body: Record<string, unknown>, field: string, secret: boolean): [string, string][] {
  const v = body[field];
  if (v === undefined) return [];
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new WebError(400, `${field}: expected an object of NAME: "value"`);
  return Object.entries(v).map(([k, value]) => {
    if (typeof value !== "string") throw new WebError(400, `${secret && !isShellName(k) ? field : `${field}.${k}`}: expected a string value`);
    return [k, value];
  });
}

/** The body of POST /api/builds as a submission, or a 400 with one line. */
export function apiSubmission(body: unknown): Submission {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new WebError(400, `expected a JSON object with the fields ${FIELDS.join(", ")}`);
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!FIELDS.includes(k)) throw new WebError(400, `unknown field ${JSON.stringify(k)}: the fields are ${FIELDS.join(", ")}`);
  if (typeof b.manifest !== "string") throw new WebError(400, "manifest: required, the manifest's YAML text as a string");
  const notify = b.notify ?? [];
  if (!Array.isArray(notify) || !notify.every((a) => typeof a === "string")) throw new WebError(400, "notify: expected an array of email addresses");
  return { manifestSource: "manifest", manifest: b.manifest, env: pairs(b, "env", false), secrets: pairs(b, "secrets", true), keys: pairs(b, "keys", true), notify };
}

async function submit(deps: WebDeps, s: Submission, log: Logger, viewer: Viewer, what: string, from?: BuildId): Promise<{ id: BuildId; url: string; warnings: string[] }> {
  const a = services(deps);
  const checked = checkSubmission(s, a.manifestLimit, API_FIELDS);
  const { id, warnings } = await storeAndQueue({ pool: deps.pool, redis: a.redis, crypto: a.crypto, queue: a.queue, manifestLimit: a.manifestLimit }, checked);
  log.info({ user: viewer.user.name, build: id, ...(from ? { from } : {}) }, `web: ${what}`);
  return { id, url: `/builds/${id}`, warnings };
}

async function rerun(deps: WebDeps, req: FastifyRequest, log: Logger, viewer: Viewer) {
  const id = parseId((req.params as Record<string, string>).id, "build") as BuildId;
  const a = services(deps);
  const s = await storedSubmission(deps.pool, a.crypto, id, a.manifestLimit);
  if (!s) throw new WebError(404, `build ${id} not found`);
  return submit(deps, s, log, viewer, "build run again", id);
}

async function kill(deps: WebDeps, req: FastifyRequest, log: Logger, viewer: Viewer) {
  const id = parseId((req.params as Record<string, string>).id, "build") as BuildId;
  const a = services(deps);
  const k = await killBuild(deps.pool, (fn) => fn(a.redis), a.queue, id);
  if (!k) throw new WebError(404, `build ${id} not found`);
  log.info({ user: viewer.user.name, build: id, outcome: k.outcome }, "web: kill");
  if (k.outcome === "unreached") throw new WebError(409, killLine(id, k));
  return { id, ...k, message: killLine(id, k) };
}

function created(reply: FastifyReply, r: { id: BuildId; url: string; warnings: string[] }) {
  return reply.code(201).header("location", r.url).send(r);
}

export function registerActions(app: FastifyInstance, deps: WebDeps, log: Logger): void {
  // A submission carries a manifest (manifest_limit) and its variables and keys.
  const bodyLimit = 2 * (deps.actions?.manifestLimit ?? 1024 * 1024) + 256 * 1024;
  app.post("/api/builds", { bodyLimit }, async (req, reply) => {
    const viewer = apiUser(req);
    return created(reply, await submit(deps, apiSubmission(req.body), log, viewer, "build submitted"));
  });
  app.post("/api/builds/:id/kill", (req) => kill(deps, req, log, apiUser(req)));
  app.post("/api/builds/:id/rerun", async (req, reply) => created(reply, await rerun(deps, req, log, apiUser(req))));

  // The build page's buttons: forms, answered by a redirect to the build (or the new one).
  app.post("/builds/:id/kill", async (req, reply) => {
    const { id } = await kill(deps, req, log, formUser(req));
    return reply.code(303).header("location", `/builds/${id}`).send();
  });
  app.post("/builds/:id/rerun", async (req, reply) => {
    const { url } = await rerun(deps, req, log, formUser(req));
    return reply.code(303).header("location", url).send();
  });
}
