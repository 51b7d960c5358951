// The pushed commit, read with the real `git`: fetched shallow (that one commit) into a private
// temporary repository, or read where it already is (a post-receive hook runs inside the
// repository), and the manifests found at it read as blobs, each bounded by manifest_limit.
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EnvironmentError } from "../errors/errors.js";
import { shellQuote } from "../shell/quote.js";

/** The repository could not be fetched or read: the forge is told to try again later (502). */
export class FetchError extends EnvironmentError {
  override name = "FetchError";
}

/** Longest a fetch may take: a forge gives up on a webhook after seconds, and retries it. */
const FETCH_TIMEOUT_MS = 120_000;

/** A repository `git` can read the pushed commit from. */
export interface Repo {
  gitDir: string;
  /** Removes what was fetched (nothing for a repository that was there). */
  close(): Promise<void>;
}

interface GitOptions {
  gitDir?: string;
  env?: NodeJS.ProcessEnv;
  /** Most bytes of standard output kept; more ends git and fails. */
  maxStdout?: number;
  timeoutMs?: number;
}

/** Runs git; its standard output, or a FetchError with the last of what it said. */
function git(args: string[], opts: GitOptions = {}): Promise<Buffer> {
  const full = opts.gitDir ? [`--git-dir=${opts.gitDir}`, ...args] : args;
  const env: NodeJS.ProcessEnv = { ...process.env, GIT_TERMINAL_PROMPT: "0", GIT_ASKPASS: "/bin/false", SSH_ASKPASS: "/bin/false", LC_ALL: "C", ...opts.env };
  // A hook's GIT_DIR (and friends) would point every command at the pushed-to repository.
  for (const k of ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_QUARANTINE_PATH"]) if (!(opts.env && k in opts.env)) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn("git", full, { stdio: ["ignore", "pipe", "pipe"], env });
    const out: Buffer[] = [];
    let size = 0;
    let err = "";
    let problem: string | undefined;
    const timer = setTimeout(() => {
      problem = `took longer than ${(opts.timeoutMs ?? FETCH_TIMEOUT_MS) / 1000} s`;
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? FETCH_TIMEOUT_MS);
    child.stdout.on("data", (d: Buffer) => {
      size += d.length;
      if (opts.maxStdout !== undefined && size > opts.maxStdout) {
        problem ??= `printed more than ${opts.maxStdout} bytes`;
        child.kill("SIGKILL");
      } else out.push(d);
    });
    child.stderr.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new FetchError(`cannot run git: ${(e as Error).message}`));
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      const said = err.trim().split("\n").filter(Boolean).pop() ?? "";
      if (problem || code !== 0) reject(new FetchError(`git ${args[0]}: ${problem ?? (said || `exit ${code}`)}`));
      else resolve(Buffer.concat(out));
    });
  });
}

/** Which transports a fetch may use: never `ext::` (it runs commands), `file` only for `git` triggers. */
function protocolConfig(allowFile: boolean): string[] {
  const allowed = ["http", "https", "git", "ssh", ...(allowFile ? ["file"] : [])];
  return ["-c", "protocol.allow=never", ...allowed.flatMap((p) => ["-c", `protocol.${p}.allow=always`])];
}

/**
 * Fetches `commit` alone (depth 1) from `url` into a fresh private repository. A server that
 * does not send a commit by its id is asked for `ref`, which must still hold that commit.
 */
export async function fetchCommit(url: string, ref: string, commit: string, opts: { key?: string; allowFile?: boolean } = {}): Promise<Repo> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-trigger-"));
  const close = () => fs.rm(dir, { recursive: true, force: true });
  try {
    const gitDir = path.join(dir, "repo.git");
    await git(["init", "-q", "--bare", gitDir]);
    const env: NodeJS.ProcessEnv = {};
    if (opts.key) {
      const keyFile = path.join(dir, "key");
      await fs.writeFile(keyFile, opts.key.endsWith("\n") ? opts.key : `${opts.key}\n`, { mode: 0o600 });
      env.GIT_SSH_COMMAND = `ssh -i ${shellQuote(keyFile)} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new`;
    }
    const fetch = (what: string) => git([...protocolConfig(opts.allowFile ?? false), "fetch", "-q", "--no-tags", "--depth", "1", "--", url, what], { gitDir, env });
    try {
      await fetch(commit);
    } catch {
      await fetch(`+${ref}:refs/djinn/pushed`);
      const at = (await git(["rev-parse", "--verify", "-q", "refs/djinn/pushed^{commit}"], { gitDir })).toString().trim();
      if (at !== commit) throw new FetchError(`${ref} no longer holds ${commit} (it is at ${at}) and the server does not send a commit by its id`);
    }
    return { gitDir, close };
  } catch (err) {
    await close();
    if (err instanceof FetchError) throw new FetchError(`cannot fetch ${commit} from ${url}: ${err.message}`);
    throw err;
  }
}

/** A repository that is already here (the one a post-receive hook runs in): read, never written. */
export function localRepo(gitDir: string): Repo {
  return { gitDir, close: async () => undefined };
}

/** A manifest file at the commit: its bytes, or its size when it is over the limit (not read). */
export interface ManifestFile {
  path: string;
  bytes?: Buffer;
  size: number;
}

/** `.djinn.yml` first, then every `*.yml`/`*.yaml` directly in `.djinn/`, by name. */
export function isManifestPath(p: string): boolean {
  return p === ".djinn.yml" || /^\.djinn\/[^/]+\.ya?ml$/.test(p);
}

/** The manifests at `commit`, in order; each read only when it is within `limit` bytes. */
export async function manifestFiles(repo: Repo, commit: string, limit: number): Promise<ManifestFile[]> {
  const listing = await git(["ls-tree", "-l", "-z", commit, "--", ".djinn.yml", ".djinn/"], { gitDir: repo.gitDir, maxStdout: 16 * 1024 * 1024 });
  const entries: { path: string; oid: string; size: number }[] = [];
  for (const line of listing.toString("utf8").split("\0")) {
    const m = /^(100644|100755) blob ([0-9a-f]+) +(\d+)\t(.*)$/s.exec(line);
    if (m && isManifestPath(m[4])) entries.push({ path: m[4], oid: m[2], size: Number(m[3]) });
  }
  entries.sort((a, b) => (a.path === ".djinn.yml" ? -1 : b.path === ".djinn.yml" ? 1 : a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const out: ManifestFile[] = [];
  for (const e of entries) {
    if (e.size > limit) out.push({ path: e.path, size: e.size });
    else out.push({ path: e.path, size: e.size, bytes: await git(["cat-file", "blob", e.oid], { gitDir: repo.gitDir, maxStdout: limit }) });
  }
  return out;
}

/** The commit's author (`Name <email>` parts) and the first line of its message. */
export async function commitInfo(repo: Repo, commit: string): Promise<{ name: string; email: string; subject: string }> {
  const out = (await git(["log", "-1", "--no-show-signature", "--format=%an%x00%ae%x00%s", commit, "--"], { gitDir: repo.gitDir, maxStdout: 64 * 1024 })).toString("utf8");
  const [name = "", email = "", subject = ""] = out.replace(/\n$/, "").split("\0");
  return { name, email, subject };
}

/** The commit `rev` names in a repository that is here (a tag is peeled to its commit). */
export async function resolveCommit(repo: Repo, rev: string): Promise<string> {
  return (await git(["rev-parse", "--verify", "-q", `${rev}^{commit}`], { gitDir: repo.gitDir })).toString().trim();
}
