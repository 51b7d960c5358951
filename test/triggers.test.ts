// Pushes start builds, end to end: a real bare repository served by `git daemon` on 127.0.0.1,
// commits with .djinn.yml and .djinn/*.yml pushed to it, webhook requests exactly as GitHub,
// GitLab and Gitea send them (documented headers and example payloads, ./helpers/forges.ts) posted
// to the real `djinn-worker web`, builds run by the real daemon; and dist/post-receive installed
// in a bare repository, starting builds on `git push`.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { describe, it } from "node:test";
import { daemonSuite, servicesSkip, type TestEnv } from "./helpers/daemon-suite.js";
import { cliPath, repoRoot } from "./helpers/env.js";
import { githubPing, githubPush, giteaPush, gitlabPush, hookRequest } from "./helpers/forges.js";
import { AUTHOR, commitAndPush, git, manifest, post, repository, SECRETS, setup } from "./helpers/pushes.js";
import { startSmtp } from "./helpers/smtp.js";

const skip = servicesSkip();

/**
 * The status a POST announcing `bytes` of body is answered with before any of it is sent: a body
 * over the limit is refused on its Content-Length, unread.
 */
function statusBeforeBody(url: string, headers: Record<string, string>, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers: { ...headers, "content-length": String(bytes) } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
      req.destroy();
    });
    req.on("error", reject);
    req.flushHeaders();
  });
}

async function buildIds(t: TestEnv): Promise<number[]> {
  return (await t.pool.query(`SELECT id FROM builds ORDER BY id`)).rows.map((r) => Number(r.id));
}

describe("builds start when code is pushed", { skip }, () => {
  const suite = daemonSuite();

  it("a GitHub push starts a build per manifest, each running the pushed commit; a redelivery or a bad signature adds nothing", async (ctx) => {
    const s = await setup(suite, ctx);
    const d = await s.t.daemon();
    const first = await commitAndPush(s.repo.work, { ".djinn.yml": manifest("main"), ".djinn/lint.yml": manifest("lint"), ".djinn/notes.txt": "not a manifest\n" }, "Add the manifests");
    // The branch moves on before the webhook arrives: the builds still run the commit it names.
    const later = await commitAndPush(s.repo.work, { "README": "later\n" }, "Later work");
    const request = hookRequest("github", "push", githubPush({ url: s.gitUrl, commit: first, authorName: "Pat Pusher", authorEmail: "pat@example.test", message: "Add the manifests" }), SECRETS.github);

    const forged = await post(s.url, "github", hookRequest("github", "push", JSON.parse(request.body), "not-the-secret"));
    assert.equal(forged.status, 401);
    assert.match(String(forged.json.error), /X-Hub-Signature-256 does not match/);
    assert.deepEqual(await buildIds(s.t), [], "a bad signature starts nothing");

    const r = await post(s.url, "github", request);
    assert.equal(r.status, 202, JSON.stringify(r.json));
    const started = r.json.builds as { id: number; manifest: string }[];
    assert.deepEqual(started.map((b) => b.manifest), [".djinn.yml", ".djinn/lint.yml"]);
    for (const b of started) {
      await d.waitForMsg("build finished", { build: b.id });
      assert.equal((await s.t.build(b.id)).status, "passed", await s.t.output(b.id));
      const out = await s.t.output(b.id);
      assert.match(out, new RegExp(`^${first}$`, "m"), "the job printed the pushed commit");
      assert.ok(!out.includes(later), "not the branch's later head");
    }
    const triggers = await s.t.pool.query(`SELECT build_id, provider, repository, ref, commit, author, message FROM build_triggers ORDER BY build_id`);
    assert.deepEqual(triggers.rows[0], { build_id: String(started[0].id), provider: "github", repository: "Codertocat/Hello-World", ref: "refs/heads/master", commit: first, author: "Pat Pusher <pat@example.test>", message: "Add the manifests" });
    const notify = await s.t.pool.query(`SELECT notify FROM builds WHERE id = $1`, [started[0].id]);
    assert.deepEqual(notify.rows[0].notify, ["pat@example.test"], "the commit's author is mailed when it fails");

    const again = await post(s.url, "github", request);
    assert.equal(again.status, 200);
    assert.deepEqual(again.json, { redelivery: true, builds: started.map((b) => b.id) });
    assert.deepEqual(await buildIds(s.t), started.map((b) => b.id), "a redelivery adds nothing");
    // The same delivery arriving three times at once (a forge retrying a slow answer): one set of builds.
    const racing = hookRequest("github", "push", JSON.parse(request.body), SECRETS.github);
    const answers = await Promise.all([1, 2, 3].map(() => post(s.url, "github", racing)));
    assert.deepEqual(answers.map((a) => a.status).sort(), [200, 200, 202], JSON.stringify(answers));
    assert.equal((await buildIds(s.t)).length, 4, "two more builds, not six");
    const status = await s.t.cli(["status", String(started[0].id)]);
    assert.match(status.stdout, new RegExp(`pushed: github Codertocat/Hello-World refs/heads/master ${first.slice(0, 12)} by Pat Pusher <pat@example\\.test>: Add the manifests`));
  });

  it("GitLab and Gitea pushes start their builds; a wrong token, a ping, a deletion, malformed JSON and a huge body start nothing; /metrics counts them", async (ctx) => {
    const s = await setup(suite, ctx);
    const d = await s.t.daemon();
    const commit = await commitAndPush(s.repo.work, { ".djinn/build.yaml": manifest("build") }, "Build it");

    const wrong = await post(s.url, "gitlab", hookRequest("gitlab", "Push Hook", gitlabPush({ url: s.gitUrl, commit }), "wrong-token"));
    assert.equal(wrong.status, 401);
    for (const [forge, event, payload] of [
      ["gitlab", "Push Hook", gitlabPush({ url: s.gitUrl, commit })],
      ["gitea", "push", giteaPush({ url: s.gitUrl, commit })],
    ] as const) {
      const r = await post(s.url, forge, hookRequest(forge, event, payload, SECRETS[forge]));
      assert.equal(r.status, 202, `${forge}: ${JSON.stringify(r.json)}`);
      const [b] = r.json.builds as { id: number }[];
      await d.waitForMsg("build finished", { build: b.id });
      assert.equal((await s.t.build(b.id)).status, "passed", await s.t.output(b.id));
      assert.match(await s.t.output(b.id), new RegExp(`^${commit}$`, "m"));
    }
    const before = await buildIds(s.t);
    const ping = await post(s.url, "github", hookRequest("github", "ping", githubPing(), SECRETS.github));
    assert.deepEqual([ping.status, ping.json], [200, { ignored: "ping" }]);
    const deleted = await post(s.url, "gitea", hookRequest("gitea", "push", giteaPush({ url: s.gitUrl, commit: "0".repeat(40) }), SECRETS.gitea));
    assert.deepEqual([deleted.status, deleted.json], [200, { ignored: "a deleted branch or tag starts nothing" }]);
    const malformed = hookRequest("github", "push", {}, SECRETS.github);
    const signed = hookRequest("github", "push", {}, SECRETS.github);
    malformed.body = "{not json";
    malformed.headers["x-hub-signature-256"] = `sha256=${(await import("node:crypto")).createHmac("sha256", SECRETS.github).update(malformed.body).digest("hex")}`;
    assert.equal((await post(s.url, "github", malformed)).status, 400);
    assert.equal(await statusBeforeBody(`${s.url}/hooks/github`, signed.headers, 6 * 1024 * 1024), 413);
    assert.deepEqual(await buildIds(s.t), before, "nothing started");
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    for (const line of [
      'djinn_webhooks_received_total{provider="gitlab"} 2',
      'djinn_webhooks_received_total{provider="gitea"} 2',
      'djinn_webhooks_received_total{provider="github"} 3',
      'djinn_webhooks_refused_total{provider="gitlab",reason="signature"} 1',
      'djinn_webhooks_refused_total{provider="github",reason="malformed"} 1',
      'djinn_webhooks_refused_total{provider="github",reason="too_large"} 1',
      'djinn_trigger_builds_started_total{provider="gitlab"} 1',
      'djinn_trigger_builds_started_total{provider="gitea"} 1',
    ]) {
      assert.ok(metrics.split("\n").includes(line), `${line} in\n${metrics}`);
    }
  });

  it("a manifest that does not parse is a failed build saying which file and line, mailed to the author; a commit without one starts nothing", async (ctx) => {
    const smtp = await startSmtp();
    ctx.after(() => smtp.stop());
    const s = await setup(suite, ctx, undefined, { smtp: smtp.addr });
    const bare = await commitAndPush(s.repo.work, { "main.c": "int main;\n" }, "No manifest yet");
    const none = await post(s.url, "github", hookRequest("github", "push", githubPush({ url: s.gitUrl, commit: bare }), SECRETS.github));
    assert.deepEqual([none.status, (none.json.builds as unknown[]).length], [200, 0]);
    const commit = await commitAndPush(s.repo.work, { ".djinn.yml": "driver:\n  type: os\nstages: [test]\njobs: oops\n" }, "Broken manifest");
    const r = await post(s.url, "github", hookRequest("github", "push", githubPush({ url: s.gitUrl, commit, authorName: "Pat Pusher", authorEmail: "pat@example.test" }), SECRETS.github));
    assert.equal(r.status, 202);
    const [b] = r.json.builds as { id: number; refused: string }[];
    assert.equal(b.refused, ".djinn.yml: line 4: jobs: expected a list of jobs");
    assert.equal((await s.t.build(b.id)).status, "failed");
    assert.equal(await s.t.output(b.id), ".djinn.yml: line 4: jobs: expected a list of jobs\n");
    // No worker runs it, so the web process mails its failure, as the daemon mails a failed build.
    const mail = (await smtp.next()).replace(/=\r\n/g, "");
    assert.match(mail, /^To: pat@example\.test/m);
    assert.match(mail, new RegExp(`^Subject: Djinn CI - Build #${b.id} failed`, "m"));
    assert.match(mail, /^\.djinn\.yml: line 4: jobs: expected a list of jobs$/m);
  });

  it("a pushed build that fails mails the commit's author, saying which push it was; its page and the API show the push", async (ctx) => {
    const smtp = await startSmtp();
    ctx.after(() => smtp.stop());
    const s = await setup(suite, ctx, undefined, { smtp: smtp.addr });
    const d = await s.t.daemon();
    const failing = ["driver:", "  type: os", "stages: [test]", "jobs:", "  - stage: test", "    commands: [\"echo broken on purpose\", \"false\"]", ""].join("\n");
    const commit = await commitAndPush(s.repo.work, { ".djinn.yml": failing }, "Break the build");
    const facts = { url: s.gitUrl, commit, authorName: "Pat Pusher", authorEmail: "pat@example.test", message: "Break the build" };
    const r = await post(s.url, "gitlab", hookRequest("gitlab", "Push Hook", gitlabPush(facts), SECRETS.gitlab));
    assert.equal(r.status, 202, JSON.stringify(r.json));
    const [b] = r.json.builds as { id: number }[];
    await d.waitForMsg("build finished", { build: b.id });
    assert.equal((await s.t.build(b.id)).status, "failed");
    // Quoted-printable: soft line breaks joined.
    const mail = (await smtp.next()).replace(/=\r\n/g, "");
    assert.match(mail, /^To: pat@example\.test/m);
    assert.match(mail, new RegExp(`^Trigger: +gitlab mike/diaspora refs/heads/master ${commit.slice(0, 12)} by Pat Pusher <pat@example\\.test>: Break the build`, "m"));
    const page = await (await fetch(`${s.url}/builds/${b.id}`)).text();
    assert.match(page, new RegExp(`<dt>Pushed</dt><dd class="trigger">gitlab mike/diaspora refs/heads/master <code title="${commit}">`));
    const api = (await (await fetch(`${s.url}/api/builds/${b.id}`)).json()) as { trigger: Record<string, string> };
    assert.deepEqual(api.trigger, { provider: "gitlab", repository: "mike/diaspora", ref: "refs/heads/master", commit, author: "Pat Pusher <pat@example.test>", message: "Break the build" });
  });

  it("with Redis or PostgreSQL away a webhook gets a 5xx and nothing is stored; the forge's retry starts the builds once", async (ctx) => {
    const relays = { redis: await suite.relay(suite.redis.port), pg: await suite.relay(suite.postgres.port) };
    const s = await setup(suite, ctx, (toml) => toml.replace(`addr = "${suite.redis.addr}"`, `addr = "${relays.redis.addr}"`).replace(`addr = "${suite.postgres.addr}"`, `addr = "${relays.pg.addr}"`));
    const commit = await commitAndPush(s.repo.work, { ".djinn.yml": manifest("main"), ".djinn/b.yml": manifest("b") }, "Two builds");
    const request = hookRequest("github", "push", githubPush({ url: s.gitUrl, commit }), SECRETS.github);
    const deliveries = async () => Number((await s.t.pool.query(`SELECT count(*) FROM deliveries`)).rows[0].count);

    await relays.redis.set("closed");
    const noRedis = await post(s.url, "github", request);
    assert.equal(noRedis.status, 503, JSON.stringify(noRedis.json));
    await relays.redis.set("open");
    await relays.pg.set("closed");
    const noPg = await post(s.url, "github", request);
    assert.equal(noPg.status, 503, JSON.stringify(noPg.json));
    await relays.pg.set("open");
    // Redis answers, but the push of the second build fails (its queue key holds a string): both are withdrawn.
    const redis = suite.redisClient();
    await redis.set(`${s.t.queue}_os`, "not a list");
    // The web process's Redis client reconnects on its own after the outage (within about 2 s);
    // until it has, the answer is a 503 for the connection, which the forge would retry too.
    let half = await post(s.url, "github", request);
    for (let i = 0; i < 100 && /Stream isn't writeable|Connection is closed/.test(String(half.json.error)); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      half = await post(s.url, "github", request);
    }
    assert.equal(half.status, 503, JSON.stringify(half.json));
    assert.match(String(half.json.error), /WRONGTYPE.*nothing stored/);
    assert.deepEqual([await buildIds(s.t), await deliveries()], [[], 0], "nothing half submitted");
    await redis.del(`${s.t.queue}_os`);

    // The forge retries until it is answered: the retry starts the builds, once.
    let ok: { status: number; json: Record<string, unknown> } | undefined;
    for (let i = 0; i < 100 && ok?.status !== 202; i++) ok = await post(s.url, "github", request);
    assert.equal(ok?.status, 202, JSON.stringify(ok?.json));
    assert.equal((await buildIds(s.t)).length, 2);
    assert.equal((await post(s.url, "github", request)).status, 200);
    assert.equal(await redis.llen(`${s.t.queue}_os`), 2, "each build queued once");
  });

  it("dist/post-receive in a bare repository starts the builds on git push and tells the pusher their ids", async (ctx) => {
    const t = await suite.env();
    const d = await t.daemon();
    const repo = await repository(t.dir);
    const bin = path.join(t.dir, "bin");
    await fs.mkdir(bin);
    await fs.writeFile(path.join(bin, "djinn-worker"), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(cliPath)} "$@"\n`, { mode: 0o755 });
    await fs.copyFile(path.join(repoRoot, "dist", "post-receive"), path.join(repo.bare, "hooks", "post-receive"));
    git(repo.bare, "config", "djinn.config", t.cfg.worker);
    // What a push prints on stderr: the remote's lines.
    const push = (args: string[]) => {
      const r = spawnSync("git", ["push", ...args], { cwd: repo.work, encoding: "utf8", timeout: 120_000, env: { ...process.env, ...AUTHOR, PATH: `${bin}:${process.env.PATH}`, DJINN_CONFIG: "" } });
      assert.equal(r.status, 0, r.stderr);
      return r.stderr;
    };
    await fs.mkdir(path.join(repo.work, ".djinn"));
    await fs.writeFile(path.join(repo.work, ".djinn.yml"), manifest("main"));
    await fs.writeFile(path.join(repo.work, ".djinn", "lint.yml"), manifest("lint"));
    git(repo.work, "add", "-A");
    git(repo.work, "commit", "-q", "-m", "Add the manifests");
    const commit = git(repo.work, "rev-parse", "HEAD");
    const said = push(["origin", "HEAD:refs/heads/master", "HEAD:refs/heads/topic"]);
    const lines = [...said.matchAll(/remote: (refs\/heads\/\w+): build (\d+) \((\S+)\) queued/g)];
    assert.deepEqual(lines.map((m) => `${m[1]} ${m[3]}`).sort(), ["refs/heads/master .djinn.yml", "refs/heads/master .djinn/lint.yml", "refs/heads/topic .djinn.yml", "refs/heads/topic .djinn/lint.yml"], said);
    for (const m of lines) {
      const id = Number(m[2]);
      await d.waitForMsg("build finished", { build: id });
      assert.equal((await t.build(id)).status, "passed", await t.output(id));
      assert.match(await t.output(id), new RegExp(`^${commit}$`, "m"));
    }
    const trigger = await t.pool.query(`SELECT provider, repository, ref, author, message FROM build_triggers WHERE build_id = $1`, [Number(lines[0][2])]);
    assert.deepEqual(trigger.rows[0], { provider: "git", repository: repo.bare, ref: lines[0][1], author: "Pat Pusher <pat@example.test>", message: "Add the manifests" });
    const deleted = push(["origin", ":refs/heads/topic"]);
    assert.match(deleted, /remote: refs\/heads\/topic: deleted, nothing to build/);
    assert.equal((await t.pool.query(`SELECT count(*) FROM builds`)).rows[0].count, "4");
  });
});

