// Commit statuses, end to end: builds started by webhooks (a real bare repository served by
// `git daemon`, the real web process and daemon) are reported to a stand-in for each forge's API
// on 127.0.0.1 (./helpers/forge-api.ts), which records exactly what is sent: pending, then the
// result, each once, with the documented method, path, headers and body; the token never in a log
// or a page; a forge that is away is retried, then logged, and caught up on when web starts again.
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import { describe, it } from "node:test";
import { freeLocalPort } from "../internal/net/port.js";
import { daemonSuite, servicesSkip } from "./helpers/daemon-suite.js";
import { startForgeApi, type ApiRequest, type ForgeApi } from "./helpers/forge-api.js";
import { githubPush, giteaPush, gitlabPush, hookRequest } from "./helpers/forges.js";
import { commitAndPush, manifest, post, SECRETS, setup, startWeb } from "./helpers/pushes.js";

const skip = servicesSkip();
const TOKENS = { github: "ghp_statusTokenA1", gitlab: "glpat-statusTokenB2", gitea: "gitea-statusTokenC3" };
const WEB_URL = "https://ci.example.test";
const FAILING = ["driver:", "  type: os", "stages: [test]", "jobs:", "  - stage: test", "    name: broken", '    commands: ["false"]', ""].join("\n");

/** worker.toml with a token and the stand-in's API for each forge, and [web] url. */
function withTokens(api: ForgeApi): (toml: string) => string {
  const apis = { github: `${api.url}/github`, gitlab: `${api.url}/gitlab/api/v4`, gitea: `${api.url}/gitea/api/v1` };
  return (toml) => {
    let out = toml.replace(/(\[web\]\naddr = "[^"]+"\n)/, `$1url = "${WEB_URL}"\n`);
    for (const f of ["github", "gitlab", "gitea"] as const) out = out.replace(`secret = "${SECRETS[f]}"`, `secret = "${SECRETS[f]}"\ntoken = "${TOKENS[f]}"\napi_url = "${apis[f]}"`);
    return out;
  };
}

const forCommit = (commit: string) => (r: ApiRequest) => r.path.endsWith(`/statuses/${commit}`);
const states = (api: ForgeApi, commit: string) => api.requests.filter(forCommit(commit)).map((r) => String(r.body.state));

describe("commit statuses posted to the forge", { skip }, () => {
  const suite = daemonSuite();

  it("a pushed build's commit gets pending, then its result, each once, as GitHub, GitLab and Gitea document it; the token is in no log or page", async (ctx) => {
    const api = await startForgeApi();
    ctx.after(() => api.close());
    const s = await setup(suite, ctx, withTokens(api));
    const passing = await commitAndPush(s.repo.work, { ".djinn/lint.yml": manifest("lint") }, "Lint it");
    // No daemon yet: the builds wait queued, so pending is posted before anything else can be.
    const gh = await post(s.url, "github", hookRequest("github", "push", githubPush({ url: s.gitUrl, commit: passing }), SECRETS.github));
    assert.equal(gh.status, 202, JSON.stringify(gh.json));
    const ghBuild = (gh.json.builds as { id: number }[])[0].id;
    const queued = await api.waitFor(forCommit(passing), "GitHub's pending");
    assert.equal(queued.method, "POST");
    assert.equal(queued.path, `/github/repos/Codertocat/Hello-World/statuses/${passing}`);
    assert.equal(queued.headers.authorization, `Bearer ${TOKENS.github}`);
    assert.equal(queued.headers.accept, "application/vnd.github+json");
    assert.equal(queued.headers["x-github-api-version"], "2022-11-28");
    assert.equal(queued.headers["content-type"], "application/json");
    assert.deepEqual(queued.body, { state: "pending", target_url: `${WEB_URL}/builds/${ghBuild}`, description: "build queued", context: "djinn-worker/.djinn/lint.yml" });

    const failing = await commitAndPush(s.repo.work, { ".djinn.yml": FAILING, ".djinn/lint.yml": null }, "Break it");
    const gl = await post(s.url, "gitlab", hookRequest("gitlab", "Push Hook", gitlabPush({ url: s.gitUrl, commit: failing }), SECRETS.gitlab));
    const glBuild = (gl.json.builds as { id: number }[])[0].id;
    const glQueued = await api.waitFor(forCommit(failing), "GitLab's pending");
    assert.equal(glQueued.path, `/gitlab/api/v4/projects/mike%2Fdiaspora/statuses/${failing}`);
    assert.equal(glQueued.headers["private-token"], TOKENS.gitlab);
    assert.equal(glQueued.headers.authorization, undefined);
    assert.deepEqual(glQueued.body, { state: "pending", target_url: `${WEB_URL}/builds/${glBuild}`, description: "build queued", name: "djinn-worker/.djinn.yml" });

    const d = await s.t.daemon();
    for (const id of [ghBuild, glBuild]) await d.waitForMsg("build finished", { build: id });
    const ghDone = await api.waitFor((r) => forCommit(passing)(r) && r.body.state === "success", "GitHub's success");
    assert.deepEqual(ghDone.body, { state: "success", target_url: `${WEB_URL}/builds/${ghBuild}`, description: "build passed", context: "djinn-worker/.djinn/lint.yml" });
    const glDone = await api.waitFor((r) => forCommit(failing)(r) && r.body.state === "failed", "GitLab's failed");
    assert.deepEqual(glDone.body, { state: "failed", target_url: `${WEB_URL}/builds/${glBuild}`, description: "build failed", name: "djinn-worker/.djinn.yml" });

    // Gitea, with the daemon running: whatever it saw of the run, it ends with the result.
    const tagged = await commitAndPush(s.repo.work, { ".djinn.yml": manifest("main") }, "Fix it");
    const gt = await post(s.url, "gitea", hookRequest("gitea", "push", giteaPush({ url: s.gitUrl, commit: tagged }), SECRETS.gitea));
    const gtBuild = (gt.json.builds as { id: number }[])[0].id;
    await d.waitForMsg("build finished", { build: gtBuild });
    const gtDone = await api.waitFor((r) => forCommit(tagged)(r) && r.body.state === "success", "Gitea's success");
    assert.equal(gtDone.path, `/gitea/api/v1/repos/gitea/webhooks/statuses/${tagged}`);
    assert.equal(gtDone.headers.authorization, `token ${TOKENS.gitea}`);
    assert.deepEqual(gtDone.body, { state: "success", target_url: `${WEB_URL}/builds/${gtBuild}`, description: "build passed", context: "djinn-worker/.djinn.yml" });

    // Each change posted once: pending (queued), perhaps pending (running), the result last.
    for (const [id, state] of [[ghBuild, "success"], [glBuild, "failed"], [gtBuild, "success"]] as const) await s.web.waitForMsg("forge status posted", { build: id, state });
    assert.match(states(api, passing).join(" "), /^pending (pending )?success$/);
    assert.match(states(api, failing).join(" "), /^pending (running )?failed$/);
    assert.match(states(api, tagged).join(" "), /^(pending )*success$/);
    for (const c of [passing, failing, tagged]) {
      const descriptions = api.requests.filter(forCommit(c)).map((r) => r.body.description);
      assert.equal(new Set(descriptions).size, descriptions.length, `no status posted twice: ${descriptions}`);
    }
    const rows = await s.t.pool.query(`SELECT build_id, status FROM forge_statuses ORDER BY build_id`);
    assert.deepEqual(rows.rows, [ghBuild, glBuild, gtBuild].map((id, i) => ({ build_id: String(id), status: ["passed", "failed", "passed"][i] })));

    const seen = [s.web.raw.join("\n"), s.web.stderr, d.raw.join("\n"), d.stderr];
    for (const page of [`/builds/${ghBuild}`, `/api/builds/${glBuild}`, "/", "/metrics"]) seen.push(await (await fetch(`${s.url}${page}`)).text());
    for (const token of Object.values(TOKENS)) assert.ok(!seen.some((text) => text.includes(token)), `${token} shown`);
  });

  it("a forge that is away is tried again, then logged without the token; the build is unaffected, and its status posted when web starts again", async (ctx) => {
    const api = await startForgeApi();
    ctx.after(() => api.close());
    api.answer = 503;
    const s = await setup(suite, ctx, withTokens(api));
    const commit = await commitAndPush(s.repo.work, { ".djinn.yml": manifest("main") }, "Away");
    const r = await post(s.url, "github", hookRequest("github", "push", githubPush({ url: s.gitUrl, commit }), SECRETS.github));
    assert.equal(r.status, 202, "the webhook is answered without waiting on the forge");
    const b = (r.json.builds as { id: number }[])[0].id;
    const d = await s.t.daemon();
    await d.waitForMsg("build finished", { build: b });
    assert.equal((await s.t.build(b)).status, "passed", "the build is unaffected");
    const gaveUp = await s.web.waitForMsg(/^forge status not posted/, { build: b, state: "success" });
    assert.match(String(gaveUp.err), /^HTTP 503: Service Unavailable \(4 tries\)$/);
    assert.equal(gaveUp.level, "warn");
    assert.ok(api.requests.filter(forCommit(commit)).length >= 4, "tried four times");
    assert.ok(!s.web.raw.join("\n").includes(TOKENS.github), "no token in the log");

    // Web stops with the result unposted; started again with the forge back, it catches up.
    const webConfig = `${s.t.dir}/web.toml`;
    // SIGTERM: the post under way is cut short and its claim given back.
    s.web.kill("SIGTERM");
    assert.equal((await s.web.exit).code, 0);
    const before = (await s.t.pool.query(`SELECT status FROM forge_statuses WHERE build_id = $1`, [b])).rows[0];
    assert.notEqual(before?.status, "passed");
    api.answer = 201;
    const again = await startWeb(webConfig, (fn) => ctx.after(fn));
    const done = await api.waitFor((q) => forCommit(commit)(q) && q.body.state === "success", "success after the restart");
    assert.equal(done.headers.authorization, `Bearer ${TOKENS.github}`);
    await again.web.waitForMsg("forge status posted", { build: b, state: "success" });
    assert.equal((await s.t.pool.query(`SELECT status FROM forge_statuses WHERE build_id = $1`, [b])).rows[0].status, "passed");
  });
  it("with two web processes on one database, each change of a build is posted once", async (ctx) => {
    const api = await startForgeApi();
    ctx.after(() => api.close());
    // A slow forge: the two processes' posts would overlap if both sent them.
    api.delayMs = 300;
    const s = await setup(suite, ctx, withTokens(api));
    const second = `${s.t.dir}/web2.toml`;
    const port = await freeLocalPort();
    await fs.writeFile(second, (await fs.readFile(`${s.t.dir}/web.toml`, "utf8")).replace(/(\[web\]\naddr = "127\.0\.0\.1:)\d+"/, `$1${port}"`));
    const other = await startWeb(second, (fn) => ctx.after(fn));
    const commit = await commitAndPush(s.repo.work, { ".djinn.yml": manifest("main"), ".djinn/b.yml": manifest("b") }, "Twice watched");
    const r = await post(s.url, "github", hookRequest("github", "push", githubPush({ url: s.gitUrl, commit }), SECRETS.github));
    const ids = (r.json.builds as { id: number }[]).map((b) => b.id);
    const d = await s.t.daemon();
    for (const id of ids) await d.waitForMsg("build finished", { build: id });
    for (const id of ids) {
      const target = `${WEB_URL}/builds/${id}`;
      await api.waitFor((q) => q.body.target_url === target && q.body.state === "success", `build ${id}'s success`);
      await Promise.any([s.web, other.web].map((w) => w.waitForMsg("forge status posted", { build: id, state: "success" })));
      const posted = api.requests.filter((q) => q.body.target_url === target).map((q) => String(q.body.description));
      assert.match(posted.join(", "), /^(build queued, )?(build running, )?build passed$/, `build ${id}`);
      const logged = [...s.web.lines, ...other.web.lines].filter((l) => l.msg === "forge status posted" && l.build === id);
      assert.equal(logged.length, posted.length, "each post logged once, by the process that sent it");
    }
  });
});
