// Commit statuses without a database: each forge's request as its API documents it, the states a
// build's status maps to, the [[providers]] keys that configure it, and the retries against a
// stand-in HTTP server on 127.0.0.1.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { ConfigError, loadWorkerConfig } from "../internal/config/config.js";
import { sendStatus } from "../internal/forgestatus/reporter.js";
import { forgeState, RepositoryNameError, statusRequest, worthRetrying, type CommitStatus } from "../internal/forgestatus/requests.js";
import { cliPath } from "./helpers/env.js";

const SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const build = (over: Partial<CommitStatus>): CommitStatus => ({ provider: "github", repository: "octo/hello", commit: SHA, manifest: ".djinn/lint.yml", buildId: 42, status: "queued", ...over });

describe("the request each forge is sent", () => {
  test("GitHub: POST /repos/{owner}/{repo}/statuses/{sha}, a Bearer token, state, target_url, description and context", () => {
    const r = statusRequest(build({ status: "running" }), { url: "https://api.github.com/", token: "ghp_tok" }, "https://ci.example.com/");
    assert.equal(r.method, "POST");
    assert.equal(r.url, `https://api.github.com/repos/octo/hello/statuses/${SHA}`);
    assert.equal(r.headers.authorization, "Bearer ghp_tok");
    assert.equal(r.headers.accept, "application/vnd.github+json");
    assert.equal(r.headers["x-github-api-version"], "2022-11-28");
    assert.equal(r.headers["content-type"], "application/json");
    assert.deepEqual(r.body, { state: "pending", target_url: "https://ci.example.com/builds/42", description: "build running", context: "djinn-worker/.djinn/lint.yml" });
  });

  test("GitLab: POST /projects/{url-encoded path}/statuses/{sha}, PRIVATE-TOKEN, state and name", () => {
    const r = statusRequest(build({ provider: "gitlab", repository: "group/sub/project", status: "killed", manifest: ".djinn.yml" }), { url: "https://gitlab.example.com/api/v4", token: "glpat-tok" }, undefined);
    assert.equal(r.url, `https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fproject/statuses/${SHA}`);
    assert.equal(r.headers["private-token"], "glpat-tok");
    assert.equal(r.headers.authorization, undefined);
    assert.deepEqual(r.body, { state: "canceled", description: "build killed", name: "djinn-worker/.djinn.yml" }, "no target_url without [web] url");
  });

  test("Gitea and Forgejo: POST /repos/{owner}/{repo}/statuses/{sha} with `Authorization: token`", () => {
    for (const provider of ["gitea", "forgejo"] as const) {
      const r = statusRequest(build({ provider, status: "timed_out" }), { url: "https://git.example.com/api/v1", token: "gt-tok" }, "https://ci.example.com");
      assert.equal(r.url, `https://git.example.com/api/v1/repos/octo/hello/statuses/${SHA}`);
      assert.equal(r.headers.authorization, "token gt-tok");
      assert.deepEqual(r.body, { state: "failure", target_url: "https://ci.example.com/builds/42", description: "build timed out", context: "djinn-worker/.djinn/lint.yml" });
    }
  });

  test("a repository name never adds or climbs a path segment", () => {
    const r = statusRequest(build({ repository: "octo/../admin?x" }), { url: "https://api.github.com", token: "t" }, undefined);
    assert.equal(r.url, `https://api.github.com/repos/octo/..%2Fadmin%3Fx/statuses/${SHA}`);
    assert.equal(new URL(r.url).pathname, `/repos/octo/..%2Fadmin%3Fx/statuses/${SHA}`);
    for (const repository of ["octo/..", "../x", "noslash"]) {
      assert.throws(() => statusRequest(build({ repository }), { url: "https://api.github.com", token: "t" }, undefined), RepositoryNameError, repository);
    }
    assert.throws(() => statusRequest(build({ provider: "gitlab", repository: ".." }), { url: "https://gitlab.com/api/v4", token: "t" }, undefined), RepositoryNameError);
  });

  test("each build status maps to a state the forge knows", () => {
    const statuses = ["queued", "running", "passed", "passed_with_failures", "failed", "killed", "timed_out"] as const;
    assert.deepEqual(statuses.map((s) => forgeState("github", s)), ["pending", "pending", "success", "success", "failure", "error", "failure"]);
    assert.deepEqual(statuses.map((s) => forgeState("gitea", s)), ["pending", "pending", "success", "success", "failure", "error", "failure"]);
    assert.deepEqual(statuses.map((s) => forgeState("gitlab", s)), ["pending", "running", "success", "success", "failed", "canceled", "failed"]);
  });

  test("a busy or absent forge is tried again; a refusal is not", () => {
    assert.deepEqual([500, 502, 503, 429, 408].map(worthRetrying), [true, true, true, true, true]);
    assert.deepEqual([400, 401, 403, 404, 422].map(worthRetrying), [false, false, false, false, false]);
  });
});

describe("sending against a stand-in server", () => {
  async function server(answers: number[]): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
    let hits = 0;
    const s = http.createServer((req, res) => {
      req.resume();
      const code = answers[Math.min(hits++, answers.length - 1)];
      res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify({ message: code === 401 ? "Bad credentials" : "busy" }));
    });
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    const port = (s.address() as { port: number }).port;
    return { url: `http://127.0.0.1:${port}`, hits: () => hits, close: () => new Promise((r) => s.close(() => r())) };
  }
  const req = (url: string) => statusRequest(build({}), { url, token: "secret-token-xyz" }, undefined);

  test("5xx then 201: tried again until it is posted", async (ctx) => {
    const s = await server([503, 502, 201]);
    ctx.after(() => s.close());
    assert.deepEqual(await sendStatus(req(s.url), new AbortController().signal, 4, 1), { posted: true });
    assert.equal(s.hits(), 3);
  });

  test("always 503: the tries are bounded, and the reason says neither header nor token", async (ctx) => {
    const s = await server([503]);
    ctx.after(() => s.close());
    const out = await sendStatus(req(s.url), new AbortController().signal, 3, 1);
    assert.deepEqual(out, { posted: false, permanent: false, why: "HTTP 503: busy (3 tries)" });
    assert.equal(s.hits(), 3);
  });

  test("401 is a refusal, not tried again", async (ctx) => {
    const s = await server([401]);
    ctx.after(() => s.close());
    const out = await sendStatus(req(s.url), new AbortController().signal, 4, 1);
    assert.deepEqual(out, { posted: false, permanent: true, why: "HTTP 401: Bad credentials" });
    assert.equal(s.hits(), 1);
  });

  test("nothing listening: a connection refused, tried again, then given up", async (ctx) => {
    const s = await server([201]);
    await s.close();
    const out = await sendStatus(req(s.url), new AbortController().signal, 2, 1);
    assert.deepEqual(out, { posted: false, permanent: false, why: "ECONNREFUSED (2 tries)" });
  });
});

describe("[[providers]] token and api_url, [web] url", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-forge-status-"));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const write = (text: string) => {
    const p = path.join(dir, `w${++n}.toml`);
    fs.writeFileSync(p, text);
    return p;
  };
  const refused = (text: string): string => {
    try {
      loadWorkerConfig(write(text));
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.message;
    }
    assert.fail("expected a refusal");
  };

  test("github and gitlab default to their public APIs; a trailing slash is dropped", () => {
    const cfg = loadWorkerConfig(write('[[providers]]\nname = "github"\nsecret = "s"\ntoken = "t1"\n[[providers]]\nname = "gitlab"\nsecret = "s"\ntoken = "t2"\n[[providers]]\nname = "gitea"\nsecret = "s"\ntoken = "t3"\napi_url = "https://git.example.com/api/v1/"\n'));
    assert.deepEqual(cfg.providers.map((p) => [p.name, p.token, p.apiUrl]), [
      ["github", "t1", "https://api.github.com"],
      ["gitlab", "t2", "https://gitlab.com/api/v4"],
      ["gitea", "t3", "https://git.example.com/api/v1"],
    ]);
    assert.ok(cfg.warnings.some((w) => /token is set but \[web\] url is not/.test(w)), cfg.warnings.join("\n"));
  });

  test("gitea or forgejo with a token needs api_url; git takes no token; api_url is a URL", () => {
    const file = write('[[providers]]\nname = "forgejo"\nsecret = "s"\ntoken = "t"\n');
    assert.match(refused(fs.readFileSync(file, "utf8")), /providers\[0\]\.api_url: required for forgejo with a token/);
    assert.match(refused('[[providers]]\nname = "git"\ntoken = "t"\n'), /:3: providers\[0\]\.token: git has no API/);
    assert.match(refused('[[providers]]\nname = "github"\nsecret = "s"\napi_url = "api.github.com"\n'), /api_url: must be an http:\/\/ or https:\/\/ URL/);
    assert.match(refused('[web]\naddr = ":8080"\nurl = "ci.example.com"\n'), /web\.url: must be an http:\/\/ or https:\/\/ URL/);
  });

  test("check shows the token as ***, from the file token_file names too", () => {
    const tokenFile = path.join(dir, "token");
    fs.writeFileSync(tokenFile, "glpat-from-file-Qw3\n");
    const daemon = '[crypto]\nblock = "0123456789abcdef"\n[database]\naddr = "127.0.0.1:1"\nname = "djinn"\nusername = "w"\n[redis]\naddr = "127.0.0.1:1"\n';
    const worker = write(`${daemon}[web]\naddr = "127.0.0.1:1"\nurl = "https://ci.example.com"\n[[providers]]\nname = "github"\nsecret = "s"\ntoken = "ghp-inline-Zx8"\n[[providers]]\nname = "gitlab"\nsecret = "s"\ntoken_file = "${tokenFile}"\n`);
    const r = spawnSync(process.execPath, [cliPath, "check", "-config", worker, "-driver", write("[os]\n")], { encoding: "utf8" });
    assert.match(r.stdout, /providers\[0\]\.token = \*\*\*/);
    assert.match(r.stdout, /providers\[1\]\.token = \*\*\*/);
    assert.match(r.stdout, /providers\[1\]\.api_url = "https:\/\/gitlab\.com\/api\/v4"/);
    assert.match(r.stdout, /web\.url = "https:\/\/ci\.example\.com"/);
    assert.ok(!(r.stdout + r.stderr).includes("ghp-inline-Zx8") && !(r.stdout + r.stderr).includes("glpat-from-file-Qw3"));
  });
});
