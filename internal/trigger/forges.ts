// What each forge's webhook says, in one shape: the headers that name the event and the delivery,
// how the body is signed, and a push or pull request read out of the documented payloads
// (docs/triggers.md lists them). Pure: nothing here touches the network or a service.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { ProviderName } from "../config/config.js";

/** A push (or an opened or updated pull request) that may start builds. */
export interface Push {
  provider: ProviderName;
  /** The delivery's id: a redelivery carries the same one. */
  delivery?: string;
  /** The repository as its forge names it (owner/name), or its URL. */
  repository: string;
  /** The URL the commit is fetched from and the build clones. */
  cloneUrl: string;
  /** The repository's other URLs (SSH, git://), which a manifest's sources may name instead. */
  otherUrls: string[];
  /** The ref shown with the build (refs/heads/main, refs/tags/v1, refs/pull/7/head). */
  ref: string;
  /** The ref that holds the commit in the repository fetched, when the server will not send a commit by its id. */
  fetchRef: string;
  commit: string;
  author: { name: string; email?: string };
  /** The commit's message, or the pull request's title. */
  message: string;
}

/** What a verified webhook asks for. */
export type HookEvent = { push: Push } | { ignored: string };

/** A body that is JSON but not the payload its event promises: answered 400 with this line. */
export class PayloadError extends Error {
  override name = "PayloadError";
}

export type Headers = Record<string, string | string[] | undefined>;

function header(h: Headers, name: string): string | undefined {
  const v = h[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** Equal in time that depends only on the lengths of the digests, never on where they differ. */
function sameDigest(given: Buffer, expected: Buffer): boolean {
  return given.length === expected.length && timingSafeEqual(given, expected);
}

const HEX_SHA256 = /^[0-9a-f]{64}$/i;

/**
 * Why the request's signature does not hold for `body` under `secret`, or undefined when it
 * does: GitHub's `X-Hub-Signature-256: sha256=<hex HMAC>`, Gitea's and Forgejo's
 * `X-Gitea-Signature`/`X-Forgejo-Signature: <hex HMAC>`, GitLab's `X-Gitlab-Token: <secret>`.
 */
export function signatureProblem(route: "github" | "gitlab" | "gitea", h: Headers, body: Buffer, secret: string): string | undefined {
  const hmac = () => createHmac("sha256", secret).update(body).digest();
  if (route === "github") {
    const given = header(h, "x-hub-signature-256");
    if (!given) return "no X-Hub-Signature-256 header (set the webhook's secret)";
    const hex = given.startsWith("sha256=") ? given.slice(7) : "";
    return HEX_SHA256.test(hex) && sameDigest(Buffer.from(hex, "hex"), hmac()) ? undefined : "X-Hub-Signature-256 does not match the body under the secret";
  }
  if (route === "gitea") {
    const name = header(h, "x-forgejo-signature") !== undefined ? "X-Forgejo-Signature" : "X-Gitea-Signature";
    const given = header(h, name);
    if (!given) return "no X-Gitea-Signature or X-Forgejo-Signature header (set the webhook's secret)";
    return HEX_SHA256.test(given) && sameDigest(Buffer.from(given, "hex"), hmac()) ? undefined : `${name} does not match the body under the secret`;
  }
  const token = header(h, "x-gitlab-token");
  if (token === undefined) return "no X-Gitlab-Token header (set the webhook's secret token)";
  // Digests of both, so the comparison takes as long whatever the token's length.
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return sameDigest(digest(token), digest(secret)) ? undefined : "X-Gitlab-Token is not the secret token";
}

/** The event's name as the forge's header gives it. */
export function eventName(route: "github" | "gitlab" | "gitea", h: Headers): string {
  if (route === "github") return header(h, "x-github-event") ?? "";
  if (route === "gitlab") return header(h, "x-gitlab-event") ?? "";
  return header(h, "x-forgejo-event") ?? header(h, "x-gitea-event") ?? "";
}

/**
 * The delivery's id as the forge keeps it across redeliveries (GitHub's X-GitHub-Delivery,
 * Gitea's X-Gitea-Delivery, GitLab's Idempotency-Key); without one, the body's digest: a
 * redelivered body is the same bytes.
 */
export function deliveryId(route: "github" | "gitlab" | "gitea", h: Headers, body: Buffer): string {
  const given =
    route === "github" ? header(h, "x-github-delivery") : route === "gitea" ? (header(h, "x-forgejo-delivery") ?? header(h, "x-gitea-delivery")) : header(h, "idempotency-key");
  return given && given.length <= 200 ? given : `sha256:${createHash("sha256").update(body).digest("hex")}`;
}

const ZERO = /^0+$/;

type Json = Record<string, unknown>;

/** A field's value down `path` when it is an object; undefined otherwise. */
function obj(v: unknown, ...path: string[]): Json | undefined {
  let cur = v;
  for (const p of path) cur = cur && typeof cur === "object" ? (cur as Json)[p] : undefined;
  return cur && typeof cur === "object" && !Array.isArray(cur) ? (cur as Json) : undefined;
}

/** A string field down `path`, or undefined. */
function str(v: unknown, ...path: string[]): string | undefined {
  const parent = obj(v, ...path.slice(0, -1));
  const leaf = parent?.[path[path.length - 1]];
  return typeof leaf === "string" ? leaf : undefined;
}

/** A string the payload must have, or a PayloadError naming it. */
function need(v: unknown, event: string, ...path: string[]): string {
  const s = str(v, ...path);
  if (s === undefined || s === "") throw new PayloadError(`${event} payload has no ${path.join(".")}`);
  return s;
}

const COMMIT = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

function commitId(event: string, id: string): string {
  if (!COMMIT.test(id)) throw new PayloadError(`${event} payload: ${JSON.stringify(id.slice(0, 80))} is not a commit id`);
  return id;
}

/** The first line of a commit message. */
function subject(message: string): string {
  return message.split("\n")[0].trim();
}

/** The commit of `commits` (GitHub, Gitea, GitLab push payloads) with id `id`. */
function commitIn(payload: unknown, id: string): Json | undefined {
  const commits = (payload as Json).commits;
  return Array.isArray(commits) ? (commits.find((c) => obj(c)?.id === id) as Json | undefined) : undefined;
}

/** What a GitHub or Gitea/Forgejo webhook (the same payload shapes) asks for. */
function githubLike(provider: ProviderName, event: string, p: unknown): HookEvent {
  if (event === "ping") return { ignored: "ping" };
  if (event === "push") {
    const after = str(p, "after") ?? "";
    if ((p as Json).deleted === true || ZERO.test(after)) return { ignored: "a deleted branch or tag starts nothing" };
    const head = obj(p, "head_commit") ?? commitIn(p, after);
    const commit = commitId(event, str(head, "id") ?? after);
    const ref = need(p, event, "ref");
    return {
      push: {
        provider,
        repository: need(p, event, "repository", "full_name"),
        cloneUrl: need(p, event, "repository", "clone_url"),
        otherUrls: [str(p, "repository", "ssh_url"), str(p, "repository", "git_url")].filter((u): u is string => !!u),
        ref,
        fetchRef: ref,
        commit,
        author: { name: str(head, "author", "name") ?? str(p, "pusher", "name") ?? str(p, "pusher", "login") ?? "", email: str(head, "author", "email") },
        message: subject(str(head, "message") ?? ""),
      },
    };
  }
  if (event === "pull_request") {
    const action = str(p, "action") ?? "";
    // GitHub says synchronize, Gitea and Forgejo synchronized, when commits are pushed to it.
    if (!["opened", "reopened", "synchronize", "synchronized"].includes(action)) return { ignored: `pull_request ${action || "without an action"}` };
    const pr = obj(p, "pull_request");
    const number = (pr?.number ?? (p as Json).number) as unknown;
    const headRef = need(pr, event, "head", "ref");
    return {
      push: {
        provider,
        repository: need(pr, event, "head", "repo", "full_name"),
        cloneUrl: need(pr, event, "head", "repo", "clone_url"),
        otherUrls: [str(pr, "head", "repo", "ssh_url"), str(pr, "head", "repo", "git_url")].filter((u): u is string => !!u),
        ref: typeof number === "number" ? `refs/pull/${number}/head` : `refs/heads/${headRef}`,
        fetchRef: `refs/heads/${headRef}`,
        commit: commitId(event, need(pr, event, "head", "sha")),
        author: { name: str(pr, "user", "login") ?? "", email: str(pr, "user", "email") || undefined },
        message: str(pr, "title") ?? "",
      },
    };
  }
  return { ignored: `event ${JSON.stringify(event)} starts nothing` };
}

/** What a GitLab webhook asks for: Push Hook, Tag Push Hook, Merge Request Hook. */
function gitlab(event: string, p: unknown): HookEvent {
  if (event === "Push Hook" || event === "Tag Push Hook") {
    const after = str(p, "after") ?? "";
    const checkout = str(p, "checkout_sha");
    if (ZERO.test(after) || !checkout) return { ignored: "a deleted branch or tag starts nothing" };
    const commit = commitId(event, checkout);
    const c = commitIn(p, commit);
    const ref = need(p, event, "ref");
    return {
      push: {
        provider: "gitlab",
        repository: need(p, event, "project", "path_with_namespace"),
        cloneUrl: need(p, event, "project", "git_http_url"),
        otherUrls: [str(p, "project", "git_ssh_url")].filter((u): u is string => !!u),
        ref,
        fetchRef: ref,
        commit,
        author: { name: str(c, "author", "name") ?? str(p, "user_name") ?? "", email: str(c, "author", "email") ?? str(p, "user_email") },
        message: subject(str(c, "title") ?? str(c, "message") ?? ""),
      },
    };
  }
  if (event === "Merge Request Hook") {
    const mr = obj(p, "object_attributes");
    const action = str(mr, "action") ?? "";
    // An update without oldrev changed the title or labels, not the code.
    if (!["open", "reopen", "update"].includes(action) || (action === "update" && !str(mr, "oldrev"))) return { ignored: `merge request ${action || "without an action"}` };
    const iid = mr?.iid;
    const last = obj(mr, "last_commit");
    return {
      push: {
        provider: "gitlab",
        repository: need(mr, event, "source", "path_with_namespace"),
        cloneUrl: need(mr, event, "source", "git_http_url"),
        otherUrls: [str(mr, "source", "git_ssh_url")].filter((u): u is string => !!u),
        ref: typeof iid === "number" ? `refs/merge-requests/${iid}/head` : `refs/heads/${need(mr, event, "source_branch")}`,
        fetchRef: `refs/heads/${need(mr, event, "source_branch")}`,
        commit: commitId(event, need(last, event, "id")),
        author: { name: str(last, "author", "name") ?? str(p, "user", "name") ?? "", email: str(last, "author", "email") },
        message: str(mr, "title") ?? "",
      },
    };
  }
  return { ignored: `event ${JSON.stringify(event)} starts nothing` };
}

/** What the webhook asks for, read from its (verified, parsed) payload. */
export function readEvent(route: "github" | "gitlab" | "gitea", h: Headers, payload: unknown): HookEvent {
  const event = eventName(route, h);
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) throw new PayloadError("the payload is not a JSON object");
  if (route === "gitlab") return gitlab(event, payload);
  const provider: ProviderName = route === "gitea" && header(h, "x-forgejo-event") !== undefined ? "forgejo" : route;
  return githubLike(provider, event, payload);
}
