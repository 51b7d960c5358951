// `djinn-worker web`: a separate process that shows what the daemon records. It reads PostgreSQL
// and the artifact store and listens for the daemon's build notifications; it writes only what
// its users do (sessions, and builds killed, run again or submitted the way the CLI does it) and
// the builds a forge's webhook starts (hooks.ts): the daemon works the same with or without it.
import Fastify, { type FastifyInstance } from "fastify";
import { Redis } from "ioredis";
import { classify, describe } from "../cli/failure.js";
import { ConfigError } from "../config/schema.js";
import { Crypto } from "../crypto/crypto.js";
import { InputError } from "../errors/errors.js";
import { redisOptions } from "../queue/queue.js";
import { loadWorkerConfig, requireSections, type WorkerConfig } from "../config/config.js";
import { EnvironmentError } from "../errors/errors.js";
import { createLogger, type Logger } from "../log/log.js";
import { listenAddress } from "../net/address.js";
import { SERVER_NAME } from "../net/listen.js";
import { createPool, probePool, requireCurrentSchema } from "../store/db.js";
import { registerActions } from "./actions.js";
import { waitForServers } from "../worker/startup.js";
import { registerApi } from "./api.js";
import { registerAccess, registerSignIn, type AccessOptions } from "./auth.js";
import { SignInLimiter } from "./limiter.js";
import { BuildFeeds } from "./fanout.js";
import { BuildEvents } from "./live.js";
import { WebError } from "./params.js";
import { webProcess } from "./process.js";
import { errorReply, registerRoutes, type ActionServices, type WebDeps } from "./routes.js";
import { hookServices, registerHooks, type HookDeps } from "./hooks.js";
import { StatusReporter } from "../forgestatus/reporter.js";

/** What every answer carries: no inline script or style, no framing, no guessing of types. */
const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "same-origin",
  "x-frame-options": "DENY",
};

/** The largest form body: the forms hold a token, a name and a password. */
const FORM_LIMIT = 16 * 1024;

/** The web application on `deps`, not yet listening; `hooks` serves the forges' webhooks. */
export function webApp(deps: WebDeps, access: Omit<AccessOptions, "pool" | "log">, log: Logger, hooks?: HookDeps): FastifyInstance {
  const app = Fastify({ logger: false, forceCloseConnections: true, return503OnClosing: true });
  // The pages' forms post urlencoded fields; a field given twice keeps its first value.
  app.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string", bodyLimit: FORM_LIMIT }, (_req, body, done) => {
    const fields: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(body as string)) if (!(k in fields)) fields[k] = v;
    done(null, fields);
  });
  app.addHook("onRequest", async (_req, reply) => {
    reply.headers(SECURITY_HEADERS).header("server", SERVER_NAME);
  });
  app.setErrorHandler((err, req, reply) => {
    if (err instanceof WebError) return errorReply(req, reply, err.statusCode, err.message);
    if (err instanceof InputError) return errorReply(req, reply, 400, err.message);
    // PostgreSQL or Redis away, or refusing: the request may work later; what it did was all or nothing.
    if (classify(err) === "environment") {
      log.warn({ err: describe(err), url: req.url.split("?")[0] }, "web: a service failed");
      return errorReply(req, reply, 503, describe(err));
    }
    const code = (err as { statusCode?: number }).statusCode;
    // Fastify's own 4xx (a malformed URL, a bad header): its message is one line about the request.
    if (code && code >= 400 && code < 500) return errorReply(req, reply, code, (err as Error).message);
    log.error({ err: (err as Error).message, url: req.url }, "web: request failed");
    return errorReply(req, reply, 500, "internal error (see the web process's log)");
  });
  app.setNotFoundHandler((req, reply) => errorReply(req, reply, 404, `nothing at ${req.url.split("?")[0]}`));
  registerAccess(app, { ...access, pool: deps.pool, log });
  registerSignIn(app, { ...access, pool: deps.pool, log });
  registerRoutes(app, deps);
  registerApi(app, deps);
  registerActions(app, deps, log);
  if (hooks) registerHooks(app, hooks);
  return app;
}

/** The [web] section; refused with file and reason when absent. */
export function webSection(cfg: WorkerConfig): NonNullable<WorkerConfig["web"]> {
  if (!cfg.web) throw new ConfigError(cfg.file, undefined, undefined, "[web] section is required by djinn-worker web (addr = \"host:port\")");
  return cfg.web;
}

/**
 * Redis and the key the actions and the webhooks need, when worker.toml has them; otherwise why
 * not. The process's one Redis client fails a command at once while Redis is away (no offline
 * queue), or after 10 s when it stopped answering: an action or a webhook answers 503 with nothing
 * stored rather than wait, and the client reconnects on its own.
 */
async function actionServices(cfg: WorkerConfig, log: Logger): Promise<{ actions?: ActionServices; actionsMissing?: string }> {
  const missing = (["redis", "crypto"] as const).filter((s) => !cfg[s]);
  if (missing.length) return { actionsMissing: `worker.toml has no ${missing.map((s) => `[${s}]`).join(" or ")}` };
  const redis = new Redis(redisOptions(cfg.redis!, { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 5000, commandTimeout: 10_000 }));
  redis.on("error", () => undefined);
  // Connected before the first request when it can be; when not, the client goes on trying.
  await redis.connect().catch((err: Error) => log.warn({ err: err.message }, "web: Redis is not reachable: kill, re-run and submit answer 503 until it is"));
  return { actions: { redis, crypto: new Crypto(cfg.crypto!.block), redisAddr: cfg.redis!.addr, queue: cfg.queue, manifestLimit: cfg.manifestLimit } };
}

export interface RunningWeb {
  /** Resolves with the exit code once the process was told to stop (SIGTERM, SIGINT) and has. */
  done: Promise<number>;
}

export async function startWeb(configFile: string): Promise<RunningWeb> {
  const cfg = loadWorkerConfig(configFile);
  const web = webSection(cfg);
  requireSections(cfg, "database");
  const log = createLogger(cfg);
  for (const w of cfg.warnings) log.warn(w);
  const proc = webProcess(web.pidfile, log);
  const pool = createPool(cfg.database!, 10);
  pool.on("error", () => undefined);
  const events = new BuildEvents(cfg.database!, log);
  try {
    // A machine still booting PostgreSQL: waited for, then exit 75 for the service manager to start it again.
    await waitForServers(() => probePool(pool, cfg.database!.addr), log, { onWait: (why) => proc.state(`waiting: ${why}`) });
    await requireCurrentSchema(pool, cfg.file);
    await events.start();
  } catch (err) {
    await Promise.all([pool.end().catch(() => undefined), events.close()]);
    proc.failed(err);
    throw err;
  }
  const acting = await actionServices(cfg, log);
  const closeRedis = () => acting.actions?.redis.disconnect();
  let hooks: HookDeps;
  try {
    hooks = hookServices(cfg, pool, log, acting.actions);
  } catch (err) {
    await Promise.all([pool.end().catch(() => undefined), events.close()]);
    closeRedis();
    proc.failed(err);
    throw err;
  }
  // Commit statuses for the forges with a token: told by the daemon's notifications and by the hooks.
  const reporter = StatusReporter.create(pool, cfg, log);
  if (reporter) {
    events.subscribe((id) => reporter.changed(id));
    hooks.started = (ids) => ids.forEach((id) => reporter.changed(id));
    reporter.start();
  }
  const access = { public: web.public, cookieSecure: web.cookie_secure, sessionMs: web.session, limiters: { names: new SignInLimiter(5), addresses: new SignInLimiter(20) } };
  const feeds = new BuildFeeds(pool, events, log);
  const app = webApp({ pool, events, feeds, artifactsRoot: cfg.artifacts?.path, ...acting }, access, log, hooks);
  const addr = listenAddress(web.addr)!;
  try {
    await app.listen({ host: addr.host ?? "::", port: addr.port });
  } catch (err) {
    await Promise.all([pool.end().catch(() => undefined), events.close()]);
    closeRedis();
    await reporter?.close();
    const refused = new EnvironmentError(`cannot listen on ${web.addr}: ${(err as Error).message}`);
    proc.failed(refused);
    throw refused;
  }
  const bound = app.server.address();
  log.info({ addr: typeof bound === "object" && bound ? `${bound.address}:${bound.port}` : web.addr }, "web listening");
  proc.state("serving");
  const done = new Promise<number>((resolve) => {
    const stop = async () => {
      log.info("web stopping");
      proc.state("stopping");
      // The connections first: their streams end with them, rather than wake to a closed hub.
      await app.close().catch(() => undefined);
      feeds.close();
      await events.close();
      await reporter?.close();
      closeRedis();
      await pool.end().catch(() => undefined);
      proc.stopped();
      resolve(0);
    };
    process.once("SIGTERM", () => void stop());
    process.once("SIGINT", () => void stop());
  });
  return { done };
}
