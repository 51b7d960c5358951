// POST /hooks/github, /hooks/gitlab, /hooks/gitea: a forge's webhook starts the builds of a
// push. Authenticated by the body's signature (the [[providers]] secret), never by a session:
// the body is read raw, bounded, and its signature checked in constant time before it is parsed.
// Answers: 202 builds started, 200 nothing to do (ping, an ignored event, a redelivery, no
// manifest), 400 malformed, 401 bad signature, 404 no such provider, 413 too large, 502 the
// repository could not be fetched, 503 PostgreSQL or Redis away (nothing stored: the forge retries).
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type pg from "pg";
import { providerConfig, requireSections, type WorkerConfig } from "../config/config.js";
import type { ActionServices } from "./routes.js";
import { InputError } from "../errors/errors.js";
import type { Logger } from "../log/log.js";
import type { SubmissionServices } from "../submission/submission.js";
import { deliveryId, PayloadError, readEvent, signatureProblem } from "../trigger/forges.js";
import { FetchError } from "../trigger/git.js";
import { HookMetrics, type RefusalReason } from "../trigger/metrics.js";
import { providerKey, startBuilds } from "../trigger/trigger.js";
import { mailRefusedBuilds } from "../trigger/refusal-mail.js";

/** Most bytes of a webhook body: a push of many commits is some hundreds of KiB. */
export const HOOK_BODY_LIMIT = 5 * 1024 * 1024;

const ROUTES = ["github", "gitlab", "gitea"] as const;
type Route = (typeof ROUTES)[number];

export interface HookDeps {
  cfg: WorkerConfig;
  metrics: HookMetrics;
  /** The submission services; absent when worker.toml configures no forge (every hook answers 404). */
  services?: SubmissionServices;
  log: Logger;
  /** Told of the builds a webhook started (their commit statuses are posted). */
  started?: (ids: number[]) => void;
}

function answer(reply: FastifyReply, code: number, body: Record<string, unknown>): FastifyReply {
  return reply.code(code).type("application/json; charset=utf-8").send(JSON.stringify(body) + "\n");
}

/** Whether `err` says PostgreSQL or Redis could not be reached or answered: the forge should try again. */
function servicesAway(err: unknown): boolean {
  const e = err as { name?: string; code?: string; message?: string };
  if (e?.name === "QueueError" || e?.name === "DatabaseError") return true;
  if (typeof e?.code === "string" && /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|57P0[1-3]|08\d\d\d)$/.test(e.code)) return true;
  return /Connection terminated|connection timeout|Connection is closed|Stream isn't writeable|Command timed out|timeout exceeded when trying to connect/i.test(e?.message ?? "");
}

async function handle(route: Route, deps: HookDeps, req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const { metrics } = deps;
  const refuse = (code: number, reason: RefusalReason, error: string) => {
    metrics.refused(route, reason);
    return answer(reply, code, { error });
  };
  const provider = providerConfig(deps.cfg, route);
  if (!provider?.secret || !deps.services) return refuse(404, "no_provider", `no [[providers]] entry for ${route} in worker.toml`);
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const bad = signatureProblem(route, req.headers, body, provider.secret);
  if (bad) return refuse(401, "signature", bad);
  let payload: unknown;
  try {
    payload = JSON.parse(body.toString("utf8"));
  } catch {
    return refuse(400, "malformed", "the body is not JSON (set the webhook's content type to application/json)");
  }
  const delivery = deliveryId(route, req.headers, body);
  const log = deps.log.child({ hook: route, delivery });
  let event;
  try {
    event = readEvent(route, req.headers, payload);
  } catch (err) {
    if (err instanceof PayloadError) return refuse(400, "malformed", err.message);
    throw err;
  }
  if ("ignored" in event) {
    log.info({ reason: event.ignored }, "webhook ignored");
    return answer(reply, 200, { ignored: event.ignored });
  }
  const push = { ...event.push, delivery };
  try {
    const key = await providerKey(provider, deps.cfg.objects?.path);
    const started = await startBuilds(deps.services, push, { fetch: true, key });
    if (started.redelivery) {
      log.info({ builds: started.builds }, "webhook redelivered: nothing started");
      return answer(reply, 200, { redelivery: true, builds: started.builds });
    }
    log.info({ repository: push.repository, ref: push.ref, commit: push.commit, builds: started.builds.map((b) => b.id) }, "webhook started builds");
    metrics.started(push.provider, started.builds.length);
    // Not waited for: the forge wants its answer within seconds, and the mail retries on its own.
    void mailRefusedBuilds(deps.cfg, log, push, started);
    deps.started?.(started.builds.map((b) => b.id));
    if (started.builds.length === 0) return answer(reply, 200, { builds: [], message: `no .djinn.yml or .djinn/*.yml at ${push.commit}` });
    return answer(reply, 202, { builds: started.builds.map((b) => ({ id: b.id, manifest: b.file, url: `/builds/${b.id}`, ...(b.refused ? { refused: b.refused } : {}) })) });
  } catch (err) {
    if (err instanceof FetchError) {
      log.warn({ err: err.message }, "webhook: repository not fetched");
      return refuse(502, "fetch", err.message);
    }
    if (err instanceof InputError) return refuse(400, "malformed", err.message);
    if (servicesAway(err)) {
      log.warn({ err: (err as Error).message }, "webhook: PostgreSQL or Redis away, nothing stored");
      return refuse(503, "unavailable", `nothing stored, try again: ${(err as Error).message}`);
    }
    throw err;
  }
}

/** The hook routes, in their own scope: their bodies are read raw and their errors answered as JSON. */
export function registerHooks(app: FastifyInstance, deps: HookDeps): void {
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", { parseAs: "buffer", bodyLimit: HOOK_BODY_LIMIT }, (_req, body, done) => done(null, body));
    scope.addHook("onRequest", async (req) => {
      if (req.method === "POST") deps.metrics.received(req.url.split("?")[0].replace(/^\/hooks\//, ""));
    });
    scope.setErrorHandler((err, _req, reply) => {
      const code = (err as { statusCode?: number }).statusCode;
      if (code === 413) {
        deps.metrics.refused(_req.url.split("?")[0].replace(/^\/hooks\//, ""), "too_large");
        return answer(reply, 413, { error: `the body is over ${HOOK_BODY_LIMIT} bytes` });
      }
      if (code && code >= 400 && code < 500) return answer(reply, code, { error: (err as Error).message });
      deps.log.error({ err: (err as Error).message, url: _req.url }, "webhook failed");
      return answer(reply, 500, { error: "internal error (see the web process's log)" });
    });
    for (const route of ROUTES) scope.post(`/hooks/${route}`, (req, reply) => handle(route, deps, req, reply));
  });
  app.get("/metrics", async (_req, reply) => reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics()));
}

/**
 * What the hooks need when worker.toml names a forge ([[providers]] github, gitlab, gitea or
 * forgejo): [crypto] and [redis] as `submit` needs them, and the web process's one Redis client
 * (`shared`, server.ts), which fails a command at once while Redis is away, so a webhook gets its
 * 503 rather than waiting, and the forge delivers it again later.
 */
export function hookServices(cfg: WorkerConfig, pool: pg.Pool, log: Logger, shared: ActionServices | undefined): HookDeps {
  const metrics = new HookMetrics();
  if (!cfg.providers.some((p) => p.name !== "git")) return { cfg, log, metrics };
  requireSections(cfg, "crypto", "redis");
  const services: SubmissionServices = { pool, redis: shared!.redis, crypto: shared!.crypto, queue: cfg.queue, manifestLimit: cfg.manifestLimit };
  return { cfg, services, log, metrics };
}
