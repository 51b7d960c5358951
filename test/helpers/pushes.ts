// What the push suites share: a real bare repository served by `git daemon` on 127.0.0.1, commits
// pushed to it, and `djinn-worker web` with a [[providers]] table per forge, posted webhooks.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { freeLocalPort } from "../../internal/net/port.js";
import type { Suite, TestEnv } from "./daemon-suite.js";
import { cliPath } from "./env.js";
import type { Forge, HookRequest } from "./forges.js";
import { DaemonProcess } from "./services.js";

export const SECRETS = { github: "gh-hook-secret-1", gitlab: "gl-hook-token-2", gitea: "gitea-hook-secret-3" };
export const AUTHOR = { GIT_AUTHOR_NAME: "Pat Pusher", GIT_AUTHOR_EMAIL: "pat@example.test", GIT_COMMITTER_NAME: "Pat Pusher", GIT_COMMITTER_EMAIL: "pat@example.test" };

/** A manifest whose job prints the commit its source was checked out at. */
export function manifest(job: string, dir = "app"): string {
  return ["driver:", "  type: os", "stages: [test]", "jobs:", "  - stage: test", `    name: ${job}`, "    commands:", `      - cd ${dir}`, "      - git rev-parse HEAD", ""].join("\n");
}

export function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, { cwd, encoding: "utf8", env: { ...process.env, ...AUTHOR } }).trim();
}

/** A bare repository `<root>/repos/app.git` and a clone of it to commit in. */
export async function repository(root: string): Promise<{ bare: string; work: string }> {
  const bare = path.join(root, "repos", "app.git");
  const work = path.join(root, "work");
  await fs.mkdir(path.dirname(bare), { recursive: true });
  git(root, "init", "-q", "--bare", "-b", "master", bare);
  git(root, "clone", "-q", bare, work);
  git(work, "checkout", "-q", "-b", "master");
  return { bare, work };
}

/** Writes `files` in the clone, commits and pushes them; the new commit. */
export async function commitAndPush(work: string, files: Record<string, string | null>, message: string, branch = "master"): Promise<string> {
  for (const [name, text] of Object.entries(files)) {
    const file = path.join(work, name);
    if (text === null) await fs.rm(file, { force: true });
    else {
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.writeFile(file, text);
    }
  }
  git(work, "add", "-A");
  git(work, "commit", "-q", "--allow-empty", "-m", message);
  git(work, "push", "-q", "origin", `HEAD:refs/heads/${branch}`);
  return git(work, "rev-parse", "HEAD");
}

/** `git daemon` serving `<root>/repos` on 127.0.0.1; its git:// URL base. */
export async function gitDaemon(root: string, onStop: (fn: () => Promise<unknown>) => void): Promise<string> {
  const port = await freeLocalPort();
  // git-daemon itself: `git daemon` would run it as a child that outlives a kill of `git`.
  const daemon = path.join(execFileSync("git", ["--exec-path"], { encoding: "utf8" }).trim(), "git-daemon");
  const child = spawn(daemon, ["--verbose", "--reuseaddr", "--export-all", `--base-path=${path.join(root, "repos")}`, "--listen=127.0.0.1", `--port=${port}`, path.join(root, "repos")], { stdio: ["ignore", "ignore", "pipe"] });
  onStop(() => stopChild(child));
  await new Promise<void>((resolve, reject) => {
    let said = "";
    child.stderr!.on("data", (d) => {
      said += d;
      if (said.includes("Ready to rumble")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`git daemon exited (${code}): ${said}`)));
  });
  return `git://127.0.0.1:${port}`;
}

export function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const gone = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGKILL");
  return gone;
}

/** `djinn-worker web` on `config`, listening; its base URL. */
export async function startWeb(config: string, onStop: (fn: () => Promise<unknown>) => void): Promise<{ url: string; web: DaemonProcess }> {
  const text = await fs.readFile(config, "utf8");
  const port = /\[web\]\naddr = "127\.0\.0\.1:(\d+)"/.exec(text)![1];
  const web = new DaemonProcess(spawn(process.execPath, [cliPath, "web", "-config", config], { stdio: ["ignore", "pipe", "pipe"] }));
  onStop(() => web.stop());
  await web.waitForMsg("web listening");
  return { url: `http://127.0.0.1:${port}`, web };
}

export interface Setup {
  t: TestEnv;
  url: string;
  web: DaemonProcess;
  repo: { bare: string; work: string };
  gitUrl: string;
}

/** An environment with [web] and a [[providers]] table per forge, a repository served by git daemon, and the web process. */
export async function setup(suite: Suite, ctx: { after(fn: () => Promise<unknown>): void }, rewrite: (toml: string) => string = (t) => t, env: { smtp?: string } = {}): Promise<Setup> {
  const port = await freeLocalPort();
  const providers = (["github", "gitlab", "gitea"] as const).flatMap((name) => ["", "[[providers]]", `name = "${name}"`, `secret = "${SECRETS[name]}"`]);
  const t = await suite.env({ ...env, extra: ["[web]", `addr = "127.0.0.1:${port}"`, ...providers].join("\n") });
  const stops: (() => Promise<unknown>)[] = [];
  ctx.after(async () => {
    for (const s of stops.reverse()) await s();
  });
  const repo = await repository(t.dir);
  const gitUrl = `${await gitDaemon(t.dir, (fn) => stops.push(fn))}/app.git`;
  const webConfig = path.join(t.dir, "web.toml");
  await fs.writeFile(webConfig, rewrite(await fs.readFile(t.cfg.worker, "utf8")));
  const { url, web } = await startWeb(webConfig, (fn) => stops.push(fn));
  return { t, url, web, repo, gitUrl };
}

export async function post(url: string, forge: Forge, r: HookRequest): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}/hooks/${forge}`, { method: "POST", headers: r.headers, body: r.body });
  const text = await res.text();
  return { status: res.status, json: JSON.parse(text) };
}

