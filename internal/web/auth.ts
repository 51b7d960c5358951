// Who asks: a signed-in user (a session cookie), an API client (Authorization: Bearer <token>),
// or nobody. Sign-in and sign-out, the CSRF token every form carries, and the rule that a
// private installation ([web] public = false) shows nothing to nobody.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type pg from "pg";
import { checkSignIn, closeSession, openSession, sessionUser, tokenUser, userExists, type User } from "../access/store.js";
import { csrfToken, newSessionToken, sameToken } from "../access/secrets.js";
import type { Logger } from "../log/log.js";
import { html, page } from "./html.js";
import type { SignInLimiter } from "./limiter.js";
import { WebError } from "./params.js";

export interface Viewer {
  user: User;
  /** A session's form token; none for an API token, whose requests need none. */
  csrf?: string;
  via: "session" | "token";
}

declare module "fastify" {
  interface FastifyRequest {
    viewer?: Viewer;
  }
}

export interface AccessOptions {
  pool: pg.Pool;
  /** [web] public: viewing needs no sign-in. */
  public: boolean;
  cookieSecure: boolean;
  sessionMs: number;
  /** Failed sign-ins per name, and (more of them) per address. */
  limiters: { names: SignInLimiter; addresses: SignInLimiter };
  log: Logger;
}

const SESSION_COOKIE = "djinn_session";
/** The sign-in form's own token (double submit: the cookie and the form must agree), before there is a session. */
const SIGN_IN_COOKIE = "djinn_sign_in";

/** Paths served to nobody in a private installation: what signing in needs, webhooks (which prove themselves by signature) and the counters a Prometheus scrapes. */
const OPEN_PREFIXES = ["/static/", "/sign-in", "/hooks/", "/metrics"];

export function cookies(req: FastifyRequest): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

function setCookie(reply: FastifyReply, o: AccessOptions, name: string, value: string, maxAgeSeconds: number, path = "/"): void {
  const attrs = [`${name}=${value}`, `Path=${path}`, `Max-Age=${maxAgeSeconds}`, "HttpOnly", "SameSite=Strict", ...(o.cookieSecure ? ["Secure"] : [])];
  const prior = reply.getHeader("set-cookie");
  reply.header("set-cookie", [...(Array.isArray(prior) ? prior : prior ? [String(prior)] : []), attrs.join("; ")]);
}

/** The Bearer token of a request: undefined without an Authorization header, null for one of another scheme. */
function bearer(req: FastifyRequest): string | null | undefined {
  const h = req.headers.authorization;
  if (h === undefined) return undefined;
  const m = /^Bearer +(\S+)\s*$/i.exec(h);
  return m ? m[1] : null;
}

/** Finds who asks, on every request, and turns nobody away from a private installation. */
export function registerAccess(app: FastifyInstance, o: AccessOptions): void {
  app.addHook("onRequest", async (req, reply) => {
    const token = bearer(req);
    if (token !== undefined) {
      const user = token === null ? undefined : await tokenUser(o.pool, token);
      // A wrong token is refused even where nobody may look: a client should learn its token is bad.
      if (!user) throw new WebError(401, "Authorization: expected Bearer and a valid API token (djinn-worker token add USER makes one)");
      req.viewer = { user, via: "token" };
    } else {
      const session = cookies(req).get(SESSION_COOKIE);
      const user = session ? await sessionUser(o.pool, session) : undefined;
      if (user) req.viewer = { user, csrf: csrfToken(session!), via: "session" };
    }
    if (req.viewer || o.public) return;
    const path = req.url.split("?")[0];
    if (OPEN_PREFIXES.some((p) => path.startsWith(p))) return;
    if (path.startsWith("/api/")) throw new WebError(401, "sign-in required: send Authorization: Bearer <token>");
    return reply.code(303).header("location", `/sign-in?next=${encodeURIComponent(req.url)}`).send();
  });
}

/** The signed-in user (by a session) of a form's POST, whose CSRF token it must carry; 403 otherwise. */
export function formUser(req: FastifyRequest): Viewer {
  const v = req.viewer;
  if (!v || v.via !== "session") throw new WebError(403, "sign in first: this form is for signed-in users");
  if (!sameToken((req.body as Record<string, unknown> | undefined)?.csrf, v.csrf!)) throw new WebError(403, "the form's CSRF token is missing or wrong: reload the page and try again");
  return v;
}

/** The API client (by a Bearer token) of an API POST; 401 otherwise. A session cookie does not do: it would need a CSRF token. */
export function apiUser(req: FastifyRequest): Viewer {
  if (req.viewer?.via !== "token") throw new WebError(401, "this needs Authorization: Bearer <token> (djinn-worker token add USER makes one)");
  return req.viewer;
}

/** Where to go after signing in: a path of this site only, never another site. */
function localPath(next: unknown): string {
  // Printable ASCII only (a path as the browser sent it, percent-encoded): it goes into a Location header.
  return typeof next === "string" && /^\/(?![/\\])[\x21-\x7e]*$/.test(next) && !next.includes("\\") ? next : "/";
}

/**
 * The sign-in page. Its form token is the browser's sign-in cookie when it has one: another page
 * opened meanwhile (a second tab, the favicon's redirect) does not make the first form stale.
 */
function signInPage(req: FastifyRequest, reply: FastifyReply, o: AccessOptions, next: string, problem?: string) {
  const prior = cookies(req).get(SIGN_IN_COOKIE);
  const token = prior && /^[A-Za-z0-9_-]{43}$/.test(prior) ? prior : newSessionToken();
  setCookie(reply, o, SIGN_IN_COOKIE, token, 3600, "/sign-in");
  return reply
    .type("text/html; charset=utf-8")
    .header("cache-control", "no-store")
    .send(
      page(
        "Sign in",
        html`<main><h1>Sign in</h1>${problem ? html`<p class="error">${problem}</p>` : ""}
<form class="sign-in" method="post" action="/sign-in"><input type="hidden" name="csrf" value="${token}"><input type="hidden" name="next" value="${next}">
<label>Name <input name="name" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form></main>`,
      ).text,
    );
}

export function registerSignIn(app: FastifyInstance, o: AccessOptions): void {
  app.get("/sign-in", (req, reply) => signInPage(req, reply, o, localPath((req.query as Record<string, unknown>).next)));

  app.post("/sign-in", async (req, reply) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const expected = cookies(req).get(SIGN_IN_COOKIE);
    if (!expected || !sameToken(body.csrf, expected)) throw new WebError(403, "the form's CSRF token is missing or wrong: reload the sign-in page and try again");
    const name = typeof body.name === "string" ? body.name : "";
    const password = typeof body.password === "string" ? body.password : "";
    const next = localPath(body.next);
    const { names, addresses } = o.limiters;
    const wait = Math.max(names.wait(name), addresses.wait(req.ip));
    if (wait > 0) {
      o.log.warn({ address: req.ip }, "web: sign-in refused: too many failures");
      reply.code(429).header("retry-after", Math.ceil(wait / 1000));
      return signInPage(req, reply, o, next, `Too many failed sign-ins: try again in ${Math.ceil(wait / 60_000)} min.`);
    }
    const user = await checkSignIn(o.pool, name, password);
    if (!user) {
      names.fail(name);
      addresses.fail(req.ip);
      // The name only when it is a user's: a password typed into the name field stays out of the log.
      o.log.warn({ user: (await userExists(o.pool, name)) ? name : "(unknown)", address: req.ip }, "web: sign-in failed");
      reply.code(401);
      return signInPage(req, reply, o, next, "Wrong name or password.");
    }
    names.succeed(name);
    const session = await openSession(o.pool, user, o.sessionMs);
    o.log.info({ user: user.name, address: req.ip }, "web: signed in");
    setCookie(reply, o, SIGN_IN_COOKIE, "", 0, "/sign-in");
    setCookie(reply, o, SESSION_COOKIE, session, Math.floor(o.sessionMs / 1000));
    return reply.code(303).header("location", next).send();
  });

  app.post("/sign-out", async (req, reply) => {
    const v = formUser(req);
    await closeSession(o.pool, cookies(req).get(SESSION_COOKIE)!);
    o.log.info({ user: v.user.name }, "web: signed out");
    setCookie(reply, o, SESSION_COOKIE, "", 0);
    return reply.code(303).header("location", "/").send();
  });
}

/** The viewer a page shows (name, sign-out and action buttons): a signed-in user; none for an API client. */
export function pageViewer(req: FastifyRequest): { name: string; csrf: string } | undefined {
  const v = req.viewer;
  return v?.via === "session" ? { name: v.user.name, csrf: v.csrf! } : undefined;
}
