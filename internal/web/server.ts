// `djinn-worker web`: a separate process that shows what the daemon records. It reads PostgreSQL
// and the artifact store, listens for the daemon's build notifications, and writes nothing but the
// builds a forge's webhook starts (hooks.ts): the daemon works the same with or without it.
import Fastify, { type FastifyInstance } from "fastify";
import { ConfigError, lineInFile } from "../config/schema.js";
import { loadWorkerConfig, requireSections, type WorkerConfig } from "../config/config.js";
import { EnvironmentError } from "../errors/errors.js";
import { createLogger, type Logger } from "../log/log.js";
import { listenAddress } from "../net/address.js";
import { createPool, probePool, requireCurrentSchema } from "../store/db.js";
import { registerApi } from "./api.js";
import { BuildEvents } from "./live.js";
import { WebError } from "./params.js";
import { errorReply, registerRoutes, type WebDeps } from "./routes.js";
import { hookServices, registerHooks, type HookDeps } from "./hooks.js";

/** What every answer carries: no inline script or style, no framing, no guessing of types. */
const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "same-origin",
  "x-frame-options": "DENY",
};

/** The web application on `deps`, not yet listening; `hooks` serves the forges' webhooks. */
export function webApp(deps: WebDeps, log: Logger, hooks?: HookDeps): FastifyInstance {
  const app = Fastify({ logger: false, forceCloseConnections: true, return503OnClosing: true });
  app.addHook("onRequest", async (_req, reply) => {
    reply.headers(SECURITY_HEADERS);
  });
  app.setErrorHandler((err, req, reply) => {
    if (err instanceof WebError) return errorReply(req, reply, err.statusCode, err.message);
    const code = (err as { statusCode?: number }).statusCode;
    // Fastify's own 4xx (a malformed URL, a bad header): its message is one line about the request.
    if (code && code >= 400 && code < 500) return errorReply(req, reply, code, (err as Error).message);
    log.error({ err: (err as Error).message, url: req.url }, "web: request failed");
    return errorReply(req, reply, 500, "internal error (see the web process's log)");
  });
  app.setNotFoundHandler((req, reply) => errorReply(req, reply, 404, `nothing at ${req.url.split("?")[0]}`));
  registerRoutes(app, deps);
  registerApi(app, deps);
  if (hooks) registerHooks(app, hooks);
  return app;
}

/** The [web] section; refused with file, key and line when absent or asking for what is not there yet. */
function webSection(cfg: WorkerConfig): NonNullable<WorkerConfig["web"]> {
  if (!cfg.web) throw new ConfigError(cfg.file, undefined, undefined, "[web] section is required by djinn-worker web (addr = \"host:port\")");
  if (!cfg.web.public) {
    throw new ConfigError(cfg.file, "web.public", lineInFile(cfg.file, "web", "public"), "false needs sign-in, which djinn-worker web does not have yet: leave it out or set it to true");
  }
  return cfg.web;
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
  const pool = createPool(cfg.database!, 10);
  pool.on("error", () => undefined);
  const events = new BuildEvents(cfg.database!, log);
  let hooks: Awaited<ReturnType<typeof hookServices>>;
  try {
    await probePool(pool, cfg.database!.addr);
    await requireCurrentSchema(pool, cfg.file);
    await events.start();
    hooks = await hookServices(cfg, pool, log);
  } catch (err) {
    await Promise.all([pool.end().catch(() => undefined), events.close()]);
    throw err;
  }
  const app = webApp({ pool, events, artifactsRoot: cfg.artifacts?.path }, log, hooks.deps);
  const addr = listenAddress(web.addr)!;
  try {
    await app.listen({ host: addr.host ?? "::", port: addr.port });
  } catch (err) {
    await Promise.all([pool.end().catch(() => undefined), events.close()]);
    hooks.close();
    throw new EnvironmentError(`cannot listen on ${web.addr}: ${(err as Error).message}`);
  }
  const bound = app.server.address();
  log.info({ addr: typeof bound === "object" && bound ? `${bound.address}:${bound.port}` : web.addr }, "web listening");
  const done = new Promise<number>((resolve) => {
    const stop = async () => {
      log.info("web stopping");
      // The connections first: their streams end with them, rather than wake to a closed hub.
      await app.close().catch(() => undefined);
      await events.close();
      hooks.close();
      await pool.end().catch(() => undefined);
      resolve(0);
    };
    process.once("SIGTERM", () => void stop());
    process.once("SIGINT", () => void stop());
  });
  return { done };
}
