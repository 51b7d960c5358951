// The web's access control and actions against real PostgreSQL, Redis and a daemon: users and
// tokens kept as hashes, sign-in (CSRF, cookie flags, slowed failures), a private installation,
// CSRF on every form, kill, re-run and POST /api/builds through the CLI's paths, 503 with a
// server away, and the secrets (passwords, tokens, masked values) nowhere they could be read.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { Crypto } from "../internal/crypto/crypto.js";
import { daemonSuite, osManifest, servicesSkip, type TestEnv } from "./helpers/daemon-suite.js";
import { CRYPTO_BLOCK, runCli } from "./helpers/services.js";
import { webEnv, type WebEnv } from "./helpers/web.js";

const skip = servicesSkip();

const ALICE_PASSWORD = "alice-Pa55word-1";
const BOB_PASSWORD = "bob-Pa55word-22";
const SECRET = "m4sked-Value-9157";

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: () => Record<string, unknown>;
}

/** Everything every answer said, to prove no secret was in any. */
const answered: string[] = [];

async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const r = await fetch(url, { redirect: "manual", ...init });
  const text = await r.text();
  answered.push(text, JSON.stringify([...r.headers]));
  return { status: r.status, headers: r.headers, text, json: () => JSON.parse(text) };
}

const form = (fields: Record<string, string>) => ({ "content-type": "application/x-www-form-urlencoded", body: new URLSearchParams(fields).toString() });

async function post(url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Answer> {
  const { body, ...type } = form(fields);
  return call(url, { method: "POST", headers: { ...type, ...headers }, body });
}

function setCookies(a: Answer): string[] {
  return a.headers.getSetCookie();
}

function cookieValue(a: Answer, name: string): string | undefined {
  for (const c of setCookies(a)) {
    const m = new RegExp(`^${name}=([^;]*)`).exec(c);
    if (m) return m[1];
  }
  return undefined;
}

function csrfOf(page: string): string {
  const m = /name="csrf" value="([^"]+)"/.exec(page);
  assert.ok(m, "the page's form carries a CSRF token");
  return m[1];
}

async function addUser(t: TestEnv, name: string, password: string): Promise<void> {
  const r = await runCli(["user", "add", name, "-config", t.cfg.worker], `${password}\n`);
  assert.equal(r.code, 0, r.stderr);
}

async function addToken(t: TestEnv, user: string): Promise<string> {
  const r = await t.cli(["token", "add", user]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/** Signs in through the form as a browser does; the session cookie ("djinn_session=...") and the answer. */
async function signIn(w: WebEnv, name: string, password: string, next = "/"): Promise<{ answer: Answer; cookie?: string }> {
  const page = await call(`${w.url}/sign-in?next=${encodeURIComponent(next)}`);
  const formCookie = `djinn_sign_in=${cookieValue(page, "djinn_sign_in")}`;
  const answer = await post(`${w.url}/sign-in`, { csrf: csrfOf(page.text), next, name, password }, { cookie: formCookie });
  const session = cookieValue(answer, "djinn_session");
  return { answer, cookie: session ? `djinn_session=${session}` : undefined };
}

/** The build page's CSRF token for a signed-in cookie. */
async function pageCsrf(w: WebEnv, cookie: string): Promise<string> {
  return csrfOf((await call(`${w.url}/`, { headers: { cookie } })).text);
}

async function rowsText(t: TestEnv): Promise<string> {
  const tables = ["builds", "variables", "keys", "stages", "jobs", "job_output", "objects", "web_users", "web_tokens", "web_sessions"];
  const parts = await Promise.all(tables.map(async (tb) => (await t.pool.query(`SELECT coalesce(string_agg(row_to_json(x)::text, E'\\n'), '') AS t FROM ${tb} x`)).rows[0].t as string));
  return parts.join("\n");
}

async function buildCount(t: TestEnv): Promise<number> {
  return Number((await t.pool.query(`SELECT count(*) AS n FROM builds`)).rows[0].n);
}

describe("djinn-worker web: access and actions", { skip }, () => {
  const suite = daemonSuite();

  it("keeps users and tokens as hashes, shows a token once, and ends what a removed user or token opened", async (ctx) => {
    const w = await webEnv(suite, ["public = false"]);
    ctx.after(() => w.stop());
    const t = w.t;
    const added = await runCli(["user", "add", "alice", "-config", t.cfg.worker], `${ALICE_PASSWORD}\n`);
    assert.deepEqual([added.code, added.stdout, added.stderr], [0, "user alice added\n", ""]);
    const pwFile = path.join(t.dir, "bob.password");
    await fs.writeFile(pwFile, `${BOB_PASSWORD}\n`);
    const bob = await t.cli(["user", "add", "bob", "--password-file", pwFile]);
    assert.deepEqual([bob.code, bob.stdout], [0, "user bob added\n"]);
    const short = await runCli(["user", "add", "carol", "-config", t.cfg.worker], "short\n");
    assert.deepEqual([short.code, short.stderr], [2, "djinn-worker: the password must have at least 10 characters\n"]);
    const badName = await runCli(["user", "add", "<carol>", "-config", t.cfg.worker], `${BOB_PASSWORD}\n`);
    assert.equal(badName.code, 2);

    const token = await addToken(t, "alice");
    assert.match(token, /^djw_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    const prefix = token.split("_")[1];
    const listed = await t.cli(["token", "list"]);
    assert.match(listed.stdout, new RegExp(`^${prefix}\\talice\\tadded \\S+\\tlast used never\\n$`));
    const users = await t.cli(["user", "list"]);
    assert.match(users.stdout, /^alice\t1 token\tadded \S+\nbob\t0 tokens\tadded \S+\n$/);
    assert.equal((await t.cli(["token", "add", "nobody"])).stderr, 'djinn-worker: no user "nobody" (djinn-worker user add nobody first)\n');

    const stored = (await t.pool.query(`SELECT password_hash FROM web_users WHERE name = 'alice'`)).rows[0].password_hash;
    assert.match(stored, /^scrypt\$/);
    assert.equal((await t.pool.query(`SELECT token_sha256 FROM web_tokens`)).rows[0].token_sha256, createHash("sha256").update(token).digest("hex"));

    // The token works, until it is removed; a session ends when its user gets a new password.
    assert.equal((await call(`${w.url}/api/builds`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
    const { cookie } = await signIn(w, "alice", ALICE_PASSWORD);
    assert.equal((await call(`${w.url}/`, { headers: { cookie: cookie! } })).status, 200);
    const again = await runCli(["user", "add", "alice", "-config", t.cfg.worker], `${ALICE_PASSWORD}-new\n`);
    assert.equal(again.stdout, "user alice: password changed, its sessions ended\n");
    assert.equal((await call(`${w.url}/`, { headers: { cookie: cookie! } })).status, 303);
    assert.equal((await t.cli(["token", "rm", prefix])).stdout, `token ${prefix} removed\n`);
    const gone = await call(`${w.url}/api/builds`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(gone.status, 401);
    assert.equal((await t.cli(["user", "rm", "bob"])).stdout, "user bob removed, with its tokens and sessions\n");
    assert.equal((await signIn(w, "bob", BOB_PASSWORD)).answer.status, 401);

    const rows = await rowsText(t);
    // The secret is all after the prefix: base64url, which may itself hold "_".
    const secret = token.slice(`djw_${prefix}_`.length);
    for (const s of [ALICE_PASSWORD, BOB_PASSWORD, token, secret]) assert.ok(!rows.includes(s), "no password or token in any row");
  });

  it("shows a private installation to nobody; signs in with a strict cookie and out only with the form's token", async (ctx) => {
    const w = await webEnv(suite, ["public = false"]);
    ctx.after(() => w.stop());
    const t = w.t;
    await addUser(t, "alice", ALICE_PASSWORD);
    const token = await addToken(t, "alice");
    const id = await t.submit(osManifest([["echo hi"]]));

    for (const p of ["/", `/builds/${id}`, `/builds/${id}/jobs/1/raw`, "/badge/x.svg"]) {
      const r = await call(w.url + p);
      assert.equal(r.status, 303, p);
      assert.equal(r.headers.get("location"), `/sign-in?next=${encodeURIComponent(p)}`, p);
    }
    for (const [auth, status] of [[undefined, 401], ["Bearer djw_000000000000_" + "A".repeat(43), 401], ["Basic YWxpY2U6eA==", 401], [`Bearer ${token}`, 200]] as const) {
      const r = await call(`${w.url}/api/builds/${id}`, { headers: auth ? { authorization: auth } : {} });
      assert.equal(r.status, status, auth);
      if (status === 401) assert.match(r.json().error as string, /Bearer/);
    }
    assert.equal((await call(`${w.url}/static/web.css`)).status, 200);

    // The sign-in form's own token: missing or not the cookie's, the form is refused unchecked.
    const page = await call(`${w.url}/sign-in`);
    assert.match(setCookies(page)[0], /^djinn_sign_in=[^;]+; Path=\/sign-in; Max-Age=3600; HttpOnly; SameSite=Strict$/);
    const formCookie = `djinn_sign_in=${cookieValue(page, "djinn_sign_in")}`;
    assert.equal((await post(`${w.url}/sign-in`, { name: "alice", password: ALICE_PASSWORD })).status, 403);
    assert.equal((await post(`${w.url}/sign-in`, { csrf: "forged", name: "alice", password: ALICE_PASSWORD }, { cookie: formCookie })).status, 403);

    const wrong = await signIn(w, "alice", "not-the-password");
    assert.equal(wrong.answer.status, 401);
    assert.match(wrong.answer.text, /Wrong name or password\./);
    assert.equal(wrong.cookie, undefined);
    const logged = await w.web.waitForMsg("web: sign-in failed");
    assert.equal(logged.user, "alice");
    const typo = await signIn(w, ALICE_PASSWORD, ALICE_PASSWORD);
    assert.equal(typo.answer.status, 401);
    assert.equal((await w.web.waitFor((l) => l.msg === "web: sign-in failed" && l.user !== "alice", "second failure")).user, "(unknown)", "a name that may be a password is not logged");

    const ok = await signIn(w, "alice", ALICE_PASSWORD, `/builds/${id}`);
    assert.equal(ok.answer.status, 303);
    assert.equal(ok.answer.headers.get("location"), `/builds/${id}`);
    const sessionCookie = setCookies(ok.answer).find((c) => c.startsWith("djinn_session="))!;
    assert.match(sessionCookie, /^djinn_session=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=43200; HttpOnly; SameSite=Strict$/, "not Secure unless cookie_secure is set");
    assert.equal((await signIn(w, "alice", ALICE_PASSWORD, "//evil.example/")).answer.headers.get("location"), "/", "never sent to another site");
    const home = await call(`${w.url}/`, { headers: { cookie: ok.cookie! } });
    assert.equal(home.status, 200);
    assert.match(home.text, /<span class="who">alice<\/span>/);
    const csrf = csrfOf(home.text);

    // Signing out is a form like any other: without its token it is refused and the session stays.
    assert.equal((await post(`${w.url}/sign-out`, {}, { cookie: ok.cookie! })).status, 403);
    assert.equal((await post(`${w.url}/sign-out`, { csrf: csrf.slice(0, -2) + "xx" }, { cookie: ok.cookie! })).status, 403);
    assert.equal((await call(`${w.url}/`, { headers: { cookie: ok.cookie! } })).status, 200);
    const out = await post(`${w.url}/sign-out`, { csrf }, { cookie: ok.cookie! });
    assert.equal(out.status, 303);
    assert.match(setCookies(out)[0], /^djinn_session=; Path=\/; Max-Age=0;/);
    assert.equal((await call(`${w.url}/`, { headers: { cookie: ok.cookie! } })).status, 303);
    assert.equal((await t.pool.query(`SELECT count(*)::int AS n FROM web_sessions`)).rows[0].n, 1, "only the other sign-in's session is left");
    assert.ok(!w.web.raw.join("\n").includes(ALICE_PASSWORD) && !w.web.raw.join("\n").includes(token), "the log holds no password and no token");
  });

  it("refuses sign-ins after five failures for a name, even with the right password; Secure cookies when configured", async (ctx) => {
    const w = await webEnv(suite, ["cookie_secure = true", 'session = "1h"']);
    ctx.after(() => w.stop());
    await addUser(w.t, "alice", ALICE_PASSWORD);
    await addUser(w.t, "bob", BOB_PASSWORD);
    for (let i = 0; i < 5; i++) assert.equal((await signIn(w, "alice", `wrong-${i}-password`)).answer.status, 401);
    const limited = await signIn(w, "alice", ALICE_PASSWORD);
    assert.equal(limited.answer.status, 429);
    assert.equal(limited.cookie, undefined);
    assert.ok(Number(limited.answer.headers.get("retry-after")) > 0);
    assert.match(limited.answer.text, /Too many failed sign-ins/);
    const other = await signIn(w, "bob", BOB_PASSWORD);
    assert.equal(other.answer.status, 303, "another name is not held up");
    assert.match(setCookies(other.answer).find((c) => c.startsWith("djinn_session="))!, /; Max-Age=3600; HttpOnly; SameSite=Strict; Secure$/);
  });

  it("refuses every form without its session's CSRF token, and the API without a Bearer token", async (ctx) => {
    const w = await webEnv(suite);
    ctx.after(() => w.stop());
    const t = w.t;
    await addUser(t, "alice", ALICE_PASSWORD);
    await addUser(t, "bob", BOB_PASSWORD);
    const id = await t.submit(osManifest([["echo hi"]]));
    const list = `${t.queue}_os`;
    const redis = suite.redisClient();
    assert.equal(await redis.llen(list), 1);

    const alice = (await signIn(w, "alice", ALICE_PASSWORD)).cookie!;
    const bob = (await signIn(w, "bob", BOB_PASSWORD)).cookie!;
    const aliceCsrf = await pageCsrf(w, alice);
    const bobCsrf = await pageCsrf(w, bob);
    assert.notEqual(aliceCsrf, bobCsrf);
    const page = await call(`${w.url}/builds/${id}`, { headers: { cookie: alice } });
    assert.match(page.text, new RegExp(`<form class="kill" method="post" action="/builds/${id}/kill"><input type="hidden" name="csrf" value="${aliceCsrf}">`));
    assert.match(page.text, new RegExp(`<form class="rerun" method="post" action="/builds/${id}/rerun">`));
    assert.doesNotMatch((await call(`${w.url}/builds/${id}`)).text, /class="kill"/, "no buttons for nobody");

    for (const action of ["kill", "rerun"]) {
      for (const [fields, cookie] of [
        [{}, alice],
        [{ csrf: "" }, alice],
        [{ csrf: bobCsrf }, alice],
        [{ csrf: aliceCsrf }, undefined],
      ] as const) {
        const r = await post(`${w.url}/builds/${id}/${action}`, fields, cookie ? { cookie } : {});
        assert.equal(r.status, 403, `${action} ${JSON.stringify(fields)} ${cookie ? "signed in" : "signed out"}`);
      }
      // A session cookie does not do for the API: that would need a CSRF token.
      const api = await call(`${w.url}/api/builds/${id}/${action}`, { method: "POST", headers: { cookie: alice } });
      assert.equal(api.status, 401);
    }
    assert.equal((await t.build(id)).status, "queued", "nothing was killed");
    assert.equal(await buildCount(t), 1, "nothing was run again");

    const killed = await post(`${w.url}/builds/${id}/kill`, { csrf: aliceCsrf }, { cookie: alice });
    assert.equal(killed.status, 303);
    assert.equal(killed.headers.get("location"), `/builds/${id}`);
    assert.equal((await t.build(id)).status, "killed");
    assert.equal(await redis.llen(list), 0, "the queued payload is taken off its queue, as kill does");
    assert.match(await t.output(id), /cancelled before it ran/);
    await w.web.waitForMsg("web: kill", { user: "alice", build: id, outcome: "cancelled" });
  });

  it("submits through POST /api/builds as submit does, refusing bad input with one JSON line and nothing stored", async (ctx) => {
    const w = await webEnv(suite);
    ctx.after(() => w.stop());
    const t = w.t;
    await addUser(t, "alice", ALICE_PASSWORD);
    const token = await addToken(t, "alice");
    const api = (body: string, headers: Record<string, string> = {}) =>
      call(`${w.url}/api/builds`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers }, body });
    const manifest = osManifest([["echo hi"]]);

    assert.equal((await api(JSON.stringify({ manifest }), { authorization: "" })).status, 401);
    const bad = path.join(t.dir, "bad.yml");
    await fs.writeFile(bad, "driver:\n  type: os\nstages: [a]\njobs:\n  - stage: b\n    name: j\n    commands: [true]\n");
    const cli = await t.cli(["submit", bad]);
    assert.equal(cli.code, 2);
    for (const [body, status, error] of [
      ["{", 400, /JSON/],
      ["[1]", 400, /^expected a JSON object with the fields manifest, env, secrets, keys, notify$/],
      [JSON.stringify({ manifest, secret: { S: SECRET } }), 400, /^unknown field "secret": the fields are/],
      [JSON.stringify({ manifest, secrets: { S: "short" } }), 400, /^secrets S: masked variable S is 5 characters long/],
      [JSON.stringify({ manifest, env: { "1A": "x" } }), 400, /^env "1A": expected KEY=value with KEY a shell variable name$/],
      [JSON.stringify({ manifest, notify: ["nobody"] }), 400, /^notify "nobody": not an email address$/],
      [JSON.stringify({ manifest: await fs.readFile(bad, "utf8") }), 400, new RegExp(`^manifest: ${cli.stderr.slice(`djinn-worker: ${bad}: `.length).trim().replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`)],
      [JSON.stringify({ manifest: "x".repeat(3 * 1024 * 1024) }), 413, /too large/],
    ] as const) {
      const r = await api(body);
      assert.equal(r.status, status, body.slice(0, 80));
      assert.match(r.headers.get("content-type") ?? "", /^application\/json/);
      assert.deepEqual(Object.keys(r.json()), ["error"]);
      assert.match(r.json().error as string, error, body.slice(0, 80));
      assert.ok(!(r.json().error as string).includes("\n"));
    }
    assert.equal((await api(JSON.stringify({ manifest }), { "content-type": "text/plain" })).json().error, "expected a JSON object with the fields manifest, env, secrets, keys, notify");
    assert.equal((await api(JSON.stringify({ manifest }), { "content-type": "application/yaml" })).status, 415);
    assert.equal(await buildCount(t), 0, "nothing stored for any of them");

    const ok = await api(JSON.stringify({ manifest: `namespace: api\n${manifest}`, env: { PLAIN: "shown" }, secrets: { TOKEN: SECRET }, notify: ["dev@example.test"] }));
    assert.equal(ok.status, 201);
    const { id, url, warnings } = ok.json() as { id: number; url: string; warnings: string[] };
    assert.deepEqual([url, warnings, ok.headers.get("location")], [`/builds/${id}`, [], `/builds/${id}`]);
    const row = (await t.pool.query(`SELECT namespace, notify, status FROM builds WHERE id = $1`, [id])).rows[0];
    assert.deepEqual(row, { namespace: "api", notify: ["dev@example.test"], status: "queued" });
    assert.equal(await suite.redisClient().llen(`${t.queue}_os`), 1);
    await w.web.waitForMsg("web: build submitted", { user: "alice", build: id });
    assert.ok(!answered.join("\n").includes(SECRET) && !w.web.raw.join("\n").includes(SECRET));
  });

  it("kills a running build and runs it again through the API, the re-run with its masked value, shown nowhere", async (ctx) => {
    const w = await webEnv(suite);
    ctx.after(() => w.stop());
    const t = w.t;
    await addUser(t, "alice", ALICE_PASSWORD);
    const token = await addToken(t, "alice");
    const auth = { authorization: `Bearer ${token}` };
    const d = await t.daemon();
    const go = path.join(t.dir, "go");
    const digest = createHash("sha256").update(SECRET).digest("hex");
    const manifest = osManifest([[`[ "$(printf %s "$TOKEN" | sha256sum | cut -c1-64)" = ${digest} ] && echo token-matches`, 'echo "token=$TOKEN"', `while [ ! -e ${go} ]; do sleep 0.1; done`]]);
    const submitted = await call(`${w.url}/api/builds`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify({ manifest, env: { PLAIN: "shown-value" }, secrets: { TOKEN: SECRET } }) });
    assert.equal(submitted.status, 201);
    const id = submitted.json().id as number;
    await d.waitForMsg("build started", { build: id });

    const killed = await call(`${w.url}/api/builds/${id}/kill`, { method: "POST", headers: auth });
    assert.equal(killed.status, 200);
    assert.deepEqual(killed.json(), { id, outcome: "sent", message: `kill sent for build ${id}` });
    await d.waitForMsg("build finished", { build: id });
    assert.equal((await t.build(id)).status, "killed");
    const over = await call(`${w.url}/api/builds/${id}/kill`, { method: "POST", headers: auth });
    assert.deepEqual(over.json(), { id, outcome: "finished", status: "killed", message: `build ${id} already finished: killed` });
    assert.equal((await call(`${w.url}/api/builds/999999/kill`, { method: "POST", headers: auth })).status, 404);

    await fs.writeFile(go, "");
    const again = await call(`${w.url}/api/builds/${id}/rerun`, { method: "POST", headers: auth });
    assert.equal(again.status, 201);
    const rerun = again.json().id as number;
    assert.notEqual(rerun, id);
    await d.waitForMsg("build finished", { build: rerun });
    assert.equal((await t.build(rerun)).status, "passed");
    const output = await t.output(rerun);
    assert.match(output, /token-matches\n/, "the re-run had the masked value itself");
    assert.match(output, /token=xxxxxx\n/);
    const vars = (await t.pool.query(`SELECT key, value, masked, value_encrypted FROM variables WHERE build_id = $1 ORDER BY position`, [rerun])).rows;
    assert.deepEqual(vars.map((v) => [v.key, v.value, v.masked]), [["PLAIN", "shown-value", false], ["TOKEN", null, true]]);
    assert.equal(new Crypto(CRYPTO_BLOCK).decrypt(vars[1].value_encrypted).toString(), SECRET);
    await w.web.waitForMsg("web: build run again", { build: rerun, from: id });

    // Nowhere to be read: answers, pages, raw logs, the web's and the daemon's logs, rows.
    for (const b of [id, rerun]) {
      await call(`${w.url}/builds/${b}`);
      await call(`${w.url}/api/builds/${b}`);
      for (const job of (await t.pool.query(`SELECT id FROM jobs WHERE build_id = $1`, [b])).rows) await call(`${w.url}/builds/${b}/jobs/${job.id}/raw`);
    }
    await call(`${w.url}/`);
    const everything = [answered.join("\n"), w.web.raw.join("\n"), w.web.stderr, d.raw.join("\n"), d.stderr, await rowsText(t)].join("\n");
    for (const s of [SECRET, token, ALICE_PASSWORD]) assert.ok(!everything.includes(s), "a secret was shown");
    assert.ok(everything.includes("token-matches"), "the check covered the output");
  });

  it("answers 503 with nothing stored while Redis or PostgreSQL is away", async (ctx) => {
    const redisRelay = await suite.relay(suite.redis.port);
    const w = await webEnv(suite, [], { redis: redisRelay.addr });
    ctx.after(() => w.stop());
    await addUser(w.t, "alice", ALICE_PASSWORD);
    const token = await addToken(w.t, "alice");
    const body = JSON.stringify({ manifest: osManifest([["echo hi"]]), secrets: { TOKEN: SECRET } });
    const submit = (url: string) => call(`${url}/api/builds`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body });
    await redisRelay.set("closed");
    const noRedis = await submit(w.url);
    assert.equal(noRedis.status, 503);
    // Seen closed by the client already, or found so by the command sent: one line about Redis either way.
    assert.match(noRedis.json().error as string, /^Redis/);
    assert.equal(await buildCount(w.t), 0);

    const pgRelay = await suite.relay(suite.postgres.port);
    const p = await webEnv(suite, [], { postgres: pgRelay.addr });
    ctx.after(() => p.stop());
    await addUser(p.t, "alice", ALICE_PASSWORD);
    const token2 = await addToken(p.t, "alice");
    await pgRelay.set("closed");
    const noPg = await call(`${p.url}/api/builds`, { method: "POST", headers: { authorization: `Bearer ${token2}`, "content-type": "application/json" }, body });
    assert.equal(noPg.status, 503);
    assert.match(noPg.json().error as string, /connect|ECONNREFUSED|refused/i);
    assert.equal(await buildCount(p.t), 0);
    assert.ok(!answered.join("\n").includes(SECRET));
  });
});
