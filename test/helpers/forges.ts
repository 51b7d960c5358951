// Webhook requests as GitHub, GitLab and Gitea/Forgejo send them: the headers their docs list and
// their documented example payloads (trimmed to the fields a CI reads, plus some it does not),
// with the repository's URL, the ref and the commit those of the test's own repository.
import { createHmac, randomUUID } from "node:crypto";

export interface PushFacts {
  /** The URL the forge gives for cloning (the test's git daemon). */
  url: string;
  commit: string;
  before?: string;
  ref?: string;
  message?: string;
  authorName?: string;
  authorEmail?: string;
}

const ZERO = "0000000000000000000000000000000000000000";

/** GitHub's documented push payload (Codertocat/Hello-World), trimmed. */
export function githubPush(f: PushFacts): Record<string, unknown> {
  const commit = {
    id: f.commit,
    tree_id: "f9d2a07e9488b91af2641b26b9407fe22a451433",
    distinct: true,
    message: f.message ?? "Update README.md",
    timestamp: "2019-05-15T15:20:41Z",
    url: `https://github.com/Codertocat/Hello-World/commit/${f.commit}`,
    author: { name: f.authorName ?? "Codertocat", email: f.authorEmail ?? "21031067+Codertocat@users.noreply.github.com", username: "Codertocat" },
    committer: { name: "GitHub", email: "noreply@github.com", username: "web-flow" },
    added: [],
    removed: [],
    modified: ["README.md"],
  };
  return {
    ref: f.ref ?? "refs/heads/master",
    before: f.before ?? "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    after: f.commit,
    repository: githubRepository(f.url),
    pusher: { name: "Codertocat", email: "21031067+Codertocat@users.noreply.github.com" },
    sender: { login: "Codertocat", id: 21031067, type: "User" },
    created: false,
    deleted: f.commit === ZERO,
    forced: false,
    base_ref: null,
    compare: "https://github.com/Codertocat/Hello-World/compare/6113728f27ae...f95f852bd8fc",
    commits: f.commit === ZERO ? [] : [commit],
    head_commit: f.commit === ZERO ? null : commit,
  };
}

function githubRepository(url: string): Record<string, unknown> {
  return {
    id: 186853002,
    node_id: "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
    name: "Hello-World",
    full_name: "Codertocat/Hello-World",
    private: false,
    owner: { name: "Codertocat", login: "Codertocat", id: 21031067 },
    html_url: "https://github.com/Codertocat/Hello-World",
    git_url: "git://github.com/Codertocat/Hello-World.git",
    ssh_url: "git@github.com:Codertocat/Hello-World.git",
    clone_url: url,
    default_branch: "master",
  };
}

/** GitHub's documented ping payload. */
export function githubPing(): Record<string, unknown> {
  return {
    zen: "Responsive is better than fast.",
    hook_id: 30,
    hook: { type: "Repository", id: 30, name: "web", active: true, events: ["push", "pull_request"], config: { content_type: "json", insecure_ssl: "0", url: "https://example.com/hooks/github" } },
    repository: githubRepository("https://github.com/Codertocat/Hello-World.git"),
    sender: { login: "Codertocat", id: 21031067, type: "User" },
  };
}

/** GitHub's documented pull_request payload (action opened), trimmed. */
export function githubPullRequest(f: PushFacts & { action?: string; branch?: string }): Record<string, unknown> {
  return {
    action: f.action ?? "opened",
    number: 2,
    pull_request: {
      url: "https://api.github.com/repos/Codertocat/Hello-World/pulls/2",
      id: 279147437,
      number: 2,
      state: "open",
      title: f.message ?? "Update the README with new information.",
      user: { login: "Codertocat", id: 21031067, type: "User" },
      body: "This is a pretty simple change that we need to pull into master.",
      head: { label: `Codertocat:${f.branch ?? "changes"}`, ref: f.branch ?? "changes", sha: f.commit, user: { login: "Codertocat" }, repo: githubRepository(f.url) },
      base: { label: "Codertocat:master", ref: "master", sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e", user: { login: "Codertocat" }, repo: githubRepository(f.url) },
    },
    repository: githubRepository(f.url),
    sender: { login: "Codertocat", id: 21031067, type: "User" },
  };
}

/** GitLab's documented Push Hook payload (mike/diaspora), trimmed. */
export function gitlabPush(f: PushFacts): Record<string, unknown> {
  return {
    object_kind: "push",
    event_name: "push",
    before: f.before ?? "95790bf891e76fee5e1747ab589903a6a1f80f22",
    after: f.commit,
    ref: f.ref ?? "refs/heads/master",
    ref_protected: true,
    checkout_sha: f.commit === ZERO ? null : f.commit,
    user_id: 4,
    user_name: "John Smith",
    user_username: "jsmith",
    user_email: "john@example.com",
    project_id: 15,
    project: {
      id: 15,
      name: "Diaspora",
      web_url: "http://example.com/mike/diaspora",
      git_ssh_url: "git@example.com:mike/diaspora.git",
      git_http_url: f.url,
      namespace: "Mike",
      path_with_namespace: "mike/diaspora",
      default_branch: "master",
    },
    repository: { name: "Diaspora", url: "git@example.com:mike/diaspora.git", git_http_url: f.url, git_ssh_url: "git@example.com:mike/diaspora.git" },
    commits:
      f.commit === ZERO
        ? []
        : [
            {
              id: f.commit,
              message: `${f.message ?? "Update Catalan translation to e38cb41."}\n\nSee https://gitlab.com/gitlab-org/gitlab for more information`,
              title: f.message ?? "Update Catalan translation to e38cb41.",
              timestamp: "2011-12-12T14:27:31+02:00",
              url: `http://example.com/mike/diaspora/commit/${f.commit}`,
              author: { name: f.authorName ?? "Jordi Mallach", email: f.authorEmail ?? "jordi@softcatala.org" },
              added: ["CHANGELOG"],
              modified: ["app/controller/application.rb"],
              removed: [],
            },
          ],
    total_commits_count: f.commit === ZERO ? 0 : 1,
  };
}

/** Gitea's documented push payload (gitea/webhooks), trimmed; Forgejo sends the same. */
export function giteaPush(f: PushFacts): Record<string, unknown> {
  const commit = {
    id: f.commit,
    message: `${f.message ?? "Webhooks Yay!"}\n`,
    url: `http://localhost:3000/gitea/webhooks/commit/${f.commit}`,
    author: { name: f.authorName ?? "Gitea", email: f.authorEmail ?? "someone@gitea.io", username: "gitea" },
    committer: { name: "Gitea", email: "someone@gitea.io", username: "gitea" },
    timestamp: "2017-03-13T13:52:11-04:00",
  };
  return {
    ref: f.ref ?? "refs/heads/develop",
    before: f.before ?? "28e1879d029cb852e4844d9c718537df08844e03",
    after: f.commit,
    compare_url: `http://localhost:3000/gitea/webhooks/compare/28e1879d029cb852e4844d9c718537df08844e03...${f.commit}`,
    commits: f.commit === ZERO ? [] : [commit],
    head_commit: f.commit === ZERO ? null : commit,
    repository: {
      id: 140,
      owner: { id: 1, login: "gitea", full_name: "Gitea", email: "someone@gitea.io", username: "gitea" },
      name: "webhooks",
      full_name: "gitea/webhooks",
      description: "",
      private: false,
      fork: false,
      html_url: "http://localhost:3000/gitea/webhooks",
      ssh_url: "ssh://gitea@localhost:2222/gitea/webhooks.git",
      clone_url: f.url,
      default_branch: "master",
    },
    pusher: { id: 1, login: "gitea", full_name: "Gitea", email: "someone@gitea.io", username: "gitea" },
    sender: { id: 1, login: "gitea", full_name: "Gitea", email: "someone@gitea.io", username: "gitea" },
  };
}

export type Forge = "github" | "gitlab" | "gitea";

export interface HookRequest {
  headers: Record<string, string>;
  body: string;
}

/**
 * The request a forge sends for `payload`: its headers as documented, the body signed with
 * `secret` (GitLab: the token sent as it is). `event` is the forge's own event name.
 */
export function hookRequest(forge: Forge, event: string, payload: unknown, secret: string, opts: { delivery?: string } = {}): HookRequest {
  const body = JSON.stringify(payload, null, 2);
  const hmac = (alg: string) => createHmac(alg, secret).update(body).digest("hex");
  const delivery = opts.delivery ?? randomUUID();
  const common = { "content-type": "application/json" };
  if (forge === "github") {
    return {
      body,
      headers: {
        ...common,
        "user-agent": "GitHub-Hookshot/044aadd",
        "x-github-delivery": delivery,
        "x-github-event": event,
        "x-github-hook-id": "292430182",
        "x-github-hook-installation-target-id": "79929171",
        "x-github-hook-installation-target-type": "repository",
        "x-hub-signature": `sha1=${hmac("sha1")}`,
        "x-hub-signature-256": `sha256=${hmac("sha256")}`,
      },
    };
  }
  if (forge === "gitlab") {
    return {
      body,
      headers: {
        ...common,
        "user-agent": "GitLab/17.5.0",
        "x-gitlab-event": event,
        "x-gitlab-token": secret,
        "x-gitlab-instance": "https://gitlab.example.com",
        "x-gitlab-webhook-uuid": randomUUID(),
        "x-gitlab-event-uuid": randomUUID(),
        "idempotency-key": delivery,
      },
    };
  }
  return {
    body,
    headers: {
      ...common,
      "user-agent": "Go-http-client/1.1",
      "x-github-delivery": delivery,
      "x-github-event": event,
      "x-gogs-delivery": delivery,
      "x-gogs-event": event,
      "x-gogs-signature": hmac("sha256"),
      "x-gitea-delivery": delivery,
      "x-gitea-event": event,
      "x-gitea-event-type": event,
      "x-gitea-signature": hmac("sha256"),
      "x-hub-signature": `sha1=${hmac("sha1")}`,
      "x-hub-signature-256": `sha256=${hmac("sha256")}`,
    },
  };
}
