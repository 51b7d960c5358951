// The pure parts of push triggers, engine-free: each forge's signature and payloads (in their
// documented shapes), a manifest's source pinned to the pushed commit, a refused manifest's line,
// and [[providers]] in worker.toml.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadWorkerConfig } from "../internal/config/config.js";
import { parseManifest } from "../internal/manifest/manifest.js";
import { deliveryId, readEvent, signatureProblem, type Push } from "../internal/trigger/forges.js";
import { pinSource, repositoryKey } from "../internal/trigger/sources.js";
import { manifestItem } from "../internal/trigger/trigger.js";
import { giteaPush, githubPing, githubPullRequest, githubPush, gitlabPush, hookRequest } from "./helpers/forges.js";

const T = { timeout: 10_000 };
const COMMIT = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";
const URL_ = "http://127.0.0.1:9/repo.git";
const SECRET = "it's a secret to everybody";

test("each forge's signature holds for its own body and secret only", T, () => {
  for (const forge of ["github", "gitlab", "gitea"] as const) {
    const r = hookRequest(forge, forge === "gitlab" ? "Push Hook" : "push", githubPush({ url: URL_, commit: COMMIT }), SECRET);
    const body = Buffer.from(r.body);
    assert.equal(signatureProblem(forge, r.headers, body, SECRET), undefined, forge);
    assert.match(signatureProblem(forge, r.headers, body, "another secret") ?? "", /does not match|is not the secret/, forge);
    if (forge !== "gitlab") assert.match(signatureProblem(forge, r.headers, Buffer.from(r.body + " "), SECRET) ?? "", /does not match/, `${forge}: a changed body`);
    const unsigned = Object.fromEntries(Object.entries(r.headers).filter(([k]) => !/signature|token/.test(k)));
    assert.match(signatureProblem(forge, unsigned, body, SECRET) ?? "", /^no X-/, `${forge}: no signature`);
  }
  // Forgejo's own header is read when it is there.
  const r = hookRequest("gitea", "push", {}, SECRET);
  const forgejo = { ...r.headers, "x-forgejo-signature": "0".repeat(64) };
  assert.match(signatureProblem("gitea", forgejo, Buffer.from(r.body), SECRET) ?? "", /X-Forgejo-Signature does not match/);
  // The documented example: GitHub's "Hello, World!" under "It's a Secret to Everybody".
  const doc = { "x-hub-signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17" };
  assert.equal(signatureProblem("github", doc, Buffer.from("Hello, World!"), "It's a Secret to Everybody"), undefined);
});

test("a push from each forge: repository, clone URL, ref, commit, author and message", T, () => {
  const facts = { url: URL_, commit: COMMIT, authorEmail: "dev@example.test", message: "Fix the build" };
  const gh = readEvent("github", { "x-github-event": "push" }, githubPush(facts));
  assert.ok("push" in gh);
  assert.deepEqual(
    { ...gh.push, otherUrls: undefined },
    { provider: "github", repository: "Codertocat/Hello-World", cloneUrl: URL_, otherUrls: undefined, ref: "refs/heads/master", fetchRef: "refs/heads/master", commit: COMMIT, author: { name: "Codertocat", email: "dev@example.test" }, message: "Fix the build" },
  );
  assert.deepEqual(gh.push.otherUrls, ["git@github.com:Codertocat/Hello-World.git", "git://github.com/Codertocat/Hello-World.git"]);
  const gl = readEvent("gitlab", { "x-gitlab-event": "Push Hook" }, gitlabPush(facts));
  assert.ok("push" in gl);
  assert.equal(gl.push.repository, "mike/diaspora");
  assert.equal(gl.push.message, "Fix the build");
  assert.deepEqual(gl.push.author, { name: "Jordi Mallach", email: "dev@example.test" });
  const tag = readEvent("gitlab", { "x-gitlab-event": "Tag Push Hook" }, { ...gitlabPush(facts), object_kind: "tag_push", ref: "refs/tags/v1.0.0" });
  assert.ok("push" in tag && tag.push.ref === "refs/tags/v1.0.0");
  const gt = readEvent("gitea", { "x-gitea-event": "push" }, giteaPush(facts));
  assert.ok("push" in gt);
  assert.deepEqual([gt.push.provider, gt.push.repository, gt.push.ref, gt.push.message], ["gitea", "gitea/webhooks", "refs/heads/develop", "Fix the build"]);
  const fj = readEvent("gitea", { "x-forgejo-event": "push", "x-gitea-event": "push" }, giteaPush(facts));
  assert.ok("push" in fj && fj.push.provider === "forgejo");
});

test("a pull request that is opened or updated builds its head; other actions, pings and deletions start nothing", T, () => {
  const pr = readEvent("github", { "x-github-event": "pull_request" }, githubPullRequest({ url: URL_, commit: COMMIT }));
  assert.ok("push" in pr);
  assert.deepEqual([pr.push.ref, pr.push.fetchRef, pr.push.commit, pr.push.message], ["refs/pull/2/head", "refs/heads/changes", COMMIT, "Update the README with new information."]);
  const sync = readEvent("gitea", { "x-gitea-event": "pull_request" }, githubPullRequest({ url: URL_, commit: COMMIT, action: "synchronized" }));
  assert.ok("push" in sync);
  assert.deepEqual(readEvent("github", { "x-github-event": "pull_request" }, githubPullRequest({ url: URL_, commit: COMMIT, action: "closed" })), { ignored: "pull_request closed" });
  assert.deepEqual(readEvent("github", { "x-github-event": "ping" }, githubPing()), { ignored: "ping" });
  assert.deepEqual(readEvent("github", { "x-github-event": "issues" }, githubPing()), { ignored: 'event "issues" starts nothing' });
  const zero = "0".repeat(40);
  for (const [forge, event, payload] of [
    ["github", "push", githubPush({ url: URL_, commit: zero })],
    ["gitlab", "Push Hook", gitlabPush({ url: URL_, commit: zero })],
    ["gitea", "push", giteaPush({ url: URL_, commit: zero })],
  ] as const) {
    const h = { "x-github-event": event, "x-gitlab-event": event, "x-gitea-event": event };
    assert.deepEqual(readEvent(forge, h, payload), { ignored: "a deleted branch or tag starts nothing" }, forge);
  }
  assert.throws(() => readEvent("github", { "x-github-event": "push" }, { ref: "refs/heads/x", after: "nope" }), /push payload: "nope" is not a commit id/);
  assert.throws(() => readEvent("github", { "x-github-event": "push" }, [1]), /not a JSON object/);
});

test("a redelivery is known by the forge's delivery id, else by the body's digest", T, () => {
  const r = hookRequest("github", "push", {}, SECRET, { delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958" });
  assert.equal(deliveryId("github", r.headers, Buffer.from(r.body)), "72d3162e-cc78-11e3-81ab-4c9367dc0958");
  const gl = hookRequest("gitlab", "Push Hook", {}, SECRET, { delivery: "908a6d9e-45fd-46c8-97e6-c4f350f219dd" });
  assert.equal(deliveryId("gitlab", gl.headers, Buffer.from(gl.body)), "908a6d9e-45fd-46c8-97e6-c4f350f219dd");
  const old = deliveryId("gitlab", { "x-gitlab-event": "Push Hook" }, Buffer.from("{}"));
  assert.equal(old, deliveryId("gitlab", { "x-gitlab-event": "Push Hook" }, Buffer.from("{}")));
  assert.match(old, /^sha256:[0-9a-f]{64}$/);
});

test("the pushed repository becomes the source its manifest names, at the commit, or the first source", T, () => {
  assert.equal(repositoryKey("https://github.com/Codertocat/Hello-World.git"), "github.com/Codertocat/Hello-World");
  assert.equal(repositoryKey("git@github.com:Codertocat/Hello-World.git"), "github.com/Codertocat/Hello-World");
  assert.equal(repositoryKey("ssh://git@GitHub.com:22/Codertocat/Hello-World/"), "github.com/Codertocat/Hello-World");
  const named = "# build it\ndriver: {type: os}\nsources:\n  - https://example.com/lib.git v2 => lib\n  - git@github.com:Codertocat/Hello-World.git main => app  # ours\nstages: [make]\njobs:\n  - stage: make\n    commands: [make]\n";
  const urls = ["https://github.com/Codertocat/Hello-World.git", "git@github.com:Codertocat/Hello-World.git"];
  const pinned = parseManifest(pinSource(named, parseManifest(named).manifest, urls, COMMIT)).manifest;
  assert.deepEqual(pinned.sources, [
    { url: "https://example.com/lib.git", ref: "v2", dir: "lib" },
    { url: "git@github.com:Codertocat/Hello-World.git", ref: COMMIT, dir: "app" },
  ]);
  const none = "driver: {type: os}\nsources:\n  - https://example.com/lib.git\nstages: [make]\njobs:\n  - stage: make\n    commands: [make]\n";
  assert.deepEqual(parseManifest(pinSource(none, parseManifest(none).manifest, urls, COMMIT)).manifest.sources[0], { url: urls[0], ref: COMMIT, dir: "Hello-World" });
  const bare = "driver: {type: os}\nstages: [make]\njobs:\n  - stage: make\n    commands: [make]\n";
  const text = pinSource(bare, parseManifest(bare).manifest, urls, COMMIT);
  assert.deepEqual(parseManifest(text).manifest.sources, [{ url: urls[0], ref: COMMIT, dir: "Hello-World" }]);
});

test("a manifest that does not parse is a refused build saying which file and line; its author is notified", T, () => {
  const push: Push = { provider: "github", repository: "o/r", cloneUrl: URL_, otherUrls: [], ref: "refs/heads/main", fetchRef: "refs/heads/main", commit: COMMIT, author: { name: "Dev", email: "dev@example.test" }, message: "m" };
  const bad = manifestItem(push, { path: ".djinn/lint.yml", size: 40, bytes: Buffer.from("driver: {type: os}\nstages: [a]\njobs: 3\n") }, 1 << 20);
  assert.equal(bad.refused?.reason, ".djinn/lint.yml: line 3: jobs: expected a list of jobs");
  assert.deepEqual(bad.refused?.notify, ["dev@example.test"]);
  assert.equal(bad.trigger?.author, "Dev <dev@example.test>");
  const big = manifestItem(push, { path: ".djinn.yml", size: 5000 }, 100);
  assert.match(big.refused?.reason ?? "", /^\.djinn\.yml: the manifest is 5000 bytes, over the limit of 100 bytes/);
  const good = manifestItem(push, { path: ".djinn.yml", size: 10, bytes: Buffer.from("driver: {type: os}\nstages: [a]\njobs:\n  - stage: a\n    commands: [git rev-parse HEAD]\n") }, 1 << 20);
  assert.equal(good.checked?.manifest.sources[0].ref, COMMIT);
  assert.deepEqual(good.checked?.notify, ["dev@example.test"]);
});

test("[[providers]]: typed, secrets from files, one per name, a forge's with its secret; client_id and client_secret ignored", T, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-providers-"));
  const write = (text: string) => {
    const f = path.join(dir, `w${Math.random().toString(36).slice(2)}.toml`);
    fs.writeFileSync(f, text);
    return f;
  };
  fs.writeFileSync(path.join(dir, "secret"), "from-a-file\n");
  const cfg = loadWorkerConfig(write(`[[providers]]\nname = "github"\nsecret = "s1"\nclient_id = "id"\nclient_secret = "cs"\n\n[[providers]]\nname = "GitLab"\nsecret_file = "${dir}/secret"\nkey_object = "deploy.key"\n`));
  assert.deepEqual(cfg.providers, [{ name: "github", secret: "s1" }, { name: "gitlab", secret: "from-a-file", keyObject: "deploy.key" }]);
  assert.match(cfg.warnings.join("\n"), /:4: providers\[0\]\.client_id is ignored/);
  assert.ok(!JSON.stringify(cfg).includes('"cs"'));
  const refused = (text: string) => {
    try {
      loadWorkerConfig(write(text));
    } catch (err) {
      return (err as Error).message;
    }
    assert.fail("accepted");
  };
  assert.match(refused(`[[providers]]\nname = "gitea"\n`), /:1: providers\[0\]\.secret: required for gitea/);
  assert.match(refused(`[[providers]]\nname = "git"\n\n[[providers]]\nname = "github"\nsecret = "x"\n\n[[providers]]\nname = "github"\nsecret = "y"\n`), /:9: providers\[2\]\.name: a second \[\[providers\]\] table for "github"/);
  assert.match(refused(`[[providers]]\nname = "bitbucket"\n`), /:2: providers\[0\]\.name: must be one of "github"/);
  assert.match(refused(`[[providers]]\nname = "github"\nsecret = "a"\nsecret_file = "/x"\n`), /providers\[0\]\.secret_file: providers\[0\]\.secret is set too/);
});
