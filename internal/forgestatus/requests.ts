// The commit status of a pushed build as each forge's API takes it: the request (method, URL,
// headers, JSON body) that sets it, as the forges document it (docs/triggers.md). Pure: nothing
// here touches the network or a service.
import type { ProviderName } from "../config/config.js";
import type { Status } from "../runner/status.js";

/** A pushed build's status as a forge is told it. */
export interface CommitStatus {
  provider: ProviderName;
  /** owner/name (GitLab: the project's path with its namespace). */
  repository: string;
  commit: string;
  /** The manifest's path in the repository: the status's context. */
  manifest: string;
  buildId: number;
  status: Status;
}

export interface StatusRequest {
  method: "POST";
  url: string;
  headers: Record<string, string>;
  body: Record<string, string>;
}

/** What tells one build's statuses from another's and from other systems' on the same commit. */
export function statusContext(manifest: string): string {
  return manifest ? `djinn-worker/${manifest}` : "djinn-worker";
}

/** GitHub's, Gitea's and Forgejo's states: pending, success, failure, error. */
function githubState(s: Status): string {
  if (s === "queued" || s === "running") return "pending";
  if (s === "passed" || s === "passed_with_failures") return "success";
  if (s === "failed" || s === "timed_out") return "failure";
  return "error";
}

/** GitLab's: pending, running, success, failed, canceled. */
function gitlabState(s: Status): string {
  if (s === "queued") return "pending";
  if (s === "running") return "running";
  if (s === "passed" || s === "passed_with_failures") return "success";
  if (s === "killed") return "canceled";
  return "failed";
}

/** The state word `provider` is sent for a build whose status is `s`. */
export function forgeState(provider: ProviderName, s: Status): string {
  return provider === "gitlab" ? gitlabState(s) : githubState(s);
}

/** The status's description: what a reader of the forge's page sees beside the state. */
export function statusDescription(s: Status): string {
  const words: Partial<Record<Status, string>> = {
    queued: "queued",
    running: "running",
    passed: "passed",
    passed_with_failures: "passed, with failures allowed to fail",
    failed: "failed",
    killed: "killed",
    timed_out: "timed out",
  };
  return `build ${words[s] ?? s}`;
}

/** The link to the build's page, when the pages' public URL is known. */
export function buildPage(webUrl: string | undefined, buildId: number): string | undefined {
  return webUrl ? `${webUrl.replace(/\/+$/, "")}/builds/${buildId}` : undefined;
}

/** A repository name that cannot be a status's address: answered as a refusal, never sent. */
export class RepositoryNameError extends Error {
  override name = "RepositoryNameError";
}

/** `segment` escaped whole, so it stays one segment of the URL (a dot segment would move up one). */
function segment(s: string, repository: string): string {
  if (s === "" || s === "." || s === "..") throw new RepositoryNameError(`${JSON.stringify(repository)} is not owner/name`);
  return encodeURIComponent(s);
}

/** owner/name as two path segments: a repository name never adds one to the URL. */
function ownerRepo(repository: string): string {
  const slash = repository.indexOf("/");
  if (slash < 0) throw new RepositoryNameError(`${JSON.stringify(repository)} is not owner/name`);
  return `${segment(repository.slice(0, slash), repository)}/${segment(repository.slice(slash + 1), repository)}`;
}

/**
 * The request that sets `st` on its commit: GitHub `POST /repos/{owner}/{repo}/statuses/{sha}`
 * (Bearer token), Gitea and Forgejo the same path (`token` scheme), GitLab `POST
 * /projects/{id}/statuses/{sha}` with the URL-encoded project path as its id (PRIVATE-TOKEN).
 */
export function statusRequest(st: CommitStatus, api: { url: string; token: string }, webUrl: string | undefined): StatusRequest {
  const base = api.url.replace(/\/+$/, "");
  const sha = encodeURIComponent(st.commit);
  const target = buildPage(webUrl, st.buildId);
  const common = { state: forgeState(st.provider, st.status), ...(target ? { target_url: target } : {}), description: statusDescription(st.status) };
  const json = { "content-type": "application/json", "user-agent": "djinn-worker" };
  if (st.provider === "gitlab") {
    return {
      method: "POST",
      url: `${base}/projects/${segment(st.repository, st.repository)}/statuses/${sha}`,
      headers: { ...json, accept: "application/json", "private-token": api.token },
      body: { ...common, name: statusContext(st.manifest) },
    };
  }
  const body = { ...common, context: statusContext(st.manifest) };
  const url = `${base}/repos/${ownerRepo(st.repository)}/statuses/${sha}`;
  if (st.provider === "github") {
    return { method: "POST", url, headers: { ...json, accept: "application/vnd.github+json", "x-github-api-version": "2022-11-28", authorization: `Bearer ${api.token}` }, body };
  }
  return { method: "POST", url, headers: { ...json, accept: "application/json", authorization: `token ${api.token}` }, body };
}

/**
 * Whether an answer with HTTP status `code` is worth trying again: the forge busy or away (5xx),
 * rate-limited (429), or the request timed out (408). Any other refusal (a wrong token, no such
 * repository or commit) would be refused again.
 */
export function worthRetrying(code: number): boolean {
  return code >= 500 || code === 429 || code === 408;
}
