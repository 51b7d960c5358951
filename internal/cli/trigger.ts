// `djinn-worker trigger`: the builds of pushed refs on a plain git server, as dist/post-receive
// calls it (the pushed refs on stdin, `<old> <new> <ref>` a line) or by hand (--ref and
// --commit). Each ref's commit is read from the repository the hook runs in (--git-dir) or
// fetched from --repo, and its manifests submitted as a webhook's are (../trigger).
import path from "node:path";
import { createInterface } from "node:readline";
import { loadWorkerConfig, providerConfig, requireSections, type WorkerConfig } from "../config/config.js";
import { createLogger } from "../log/log.js";
import { mailRefusedBuilds } from "../trigger/refusal-mail.js";
import { Crypto } from "../crypto/crypto.js";
import { InputError } from "../errors/errors.js";
import type { SubmissionServices } from "../submission/submission.js";
import { commitInfo, fetchCommit, FetchError, localRepo, resolveCommit, type Repo } from "../trigger/git.js";
import { cloneUrlProblem, providerKey, startBuilds, type Push } from "../trigger/trigger.js";
import { terminalSafe } from "./terminal.js";
import { withPool, withRedis, type Out } from "./services.js";

export interface TriggerOptions {
  configFile: string;
  /** The URL builds clone the repository from; default: the --git-dir path. */
  repo?: string;
  ref?: string;
  commit?: string;
  /** The repository the commits are read from (a hook's own); without it they are fetched from --repo. */
  gitDir?: string;
}

/** One pushed ref: what post-receive reads on stdin. */
interface PushedRef {
  old?: string;
  commit: string;
  ref: string;
}

const OBJECT_ID = /^[0-9a-f]{40}([0-9a-f]{24})?$/;
const ZERO = /^0+$/;

/** `<old> <new> <ref>` lines, as git gives a post-receive hook. */
async function refsFromStdin(input: NodeJS.ReadableStream): Promise<PushedRef[]> {
  const refs: PushedRef[] = [];
  for await (const line of createInterface({ input })) {
    if (line.trim() === "") continue;
    const [old, commit, ref, ...rest] = line.trim().split(/\s+/);
    if (rest.length || !OBJECT_ID.test(old ?? "") || !OBJECT_ID.test(commit ?? "") || !ref) throw new InputError(`stdin: expected "<old> <new> <ref>" lines as git gives a post-receive hook, got ${JSON.stringify(line.slice(0, 200))}`);
    refs.push({ old, commit, ref });
  }
  return refs;
}

function pushedRefs(opts: TriggerOptions, stdin: NodeJS.ReadableStream & { isTTY?: boolean }): Promise<PushedRef[]> {
  if (opts.ref !== undefined || opts.commit !== undefined) {
    if (!opts.ref || !opts.commit) throw new InputError("--ref and --commit go together: give both, or neither and the pushed refs on stdin");
    return Promise.resolve([{ ref: opts.ref, commit: opts.commit }]);
  }
  if (stdin.isTTY) throw new InputError("give --ref and --commit, or the pushed refs on stdin (`<old> <new> <ref>` lines, as post-receive reads them)");
  return refsFromStdin(stdin);
}

/** The push of `r` as its builds record it; the commit read from `repo` (a tag peeled to its commit). */
async function pushOf(repo: Repo, r: PushedRef, url: string): Promise<Push> {
  const commit = await resolveCommit(repo, r.commit);
  const info = await commitInfo(repo, commit);
  return {
    provider: "git",
    // A retried hook run for the same update starts nothing more; a later push of the same commit does.
    delivery: r.old ? `${url} ${r.ref} ${r.old}..${r.commit}` : undefined,
    repository: url,
    cloneUrl: url,
    otherUrls: [],
    ref: r.ref,
    fetchRef: r.ref,
    commit,
    author: { name: info.name, email: info.email || undefined },
    message: info.subject,
  };
}

/** One line for the pusher per ref: the builds started, or why none was. */
async function triggerRef(cfg: WorkerConfig, services: SubmissionServices, opts: TriggerOptions, url: string, key: string | undefined, r: PushedRef): Promise<string> {
  if (ZERO.test(r.commit)) return `${r.ref}: deleted, nothing to build`;
  const repo = opts.gitDir ? localRepo(opts.gitDir) : await fetchCommit(url, r.ref, r.commit, { key, allowFile: true });
  let push: Push;
  try {
    push = await pushOf(repo, r, url);
  } catch (err) {
    await repo.close();
    throw err;
  }
  const started = await startBuilds(services, push, { repo });
  // Once, without retries: the pusher's `git push` waits for this hook.
  await mailRefusedBuilds(cfg, createLogger({ log: { level: "error" } }, { fd: 2 }), push, started, { retries: 0 });
  if (started.redelivery) return `${r.ref}: already triggered: build ${started.builds.join(", ")}`;
  if (started.builds.length === 0) return `${r.ref}: no .djinn.yml or .djinn/*.yml at ${push.commit.slice(0, 12)}, nothing to build`;
  return started.builds
    .map((b) => (b.refused ? `${r.ref}: build ${b.id} (${b.file}) failed: ${b.refused}` : `${r.ref}: build ${b.id} (${b.file}) queued${b.serving === 0 ? ` (no live worker serves ${b.list} yet)` : ""}`))
    .join("\n");
}

/** Runs the trigger; exit 0 when every ref was acted on. */
export async function triggerCommand(opts: TriggerOptions, out: Out, stdin: NodeJS.ReadableStream & { isTTY?: boolean } = process.stdin): Promise<number> {
  const cfg = loadWorkerConfig(opts.configFile);
  const gitDir = opts.gitDir ? path.resolve(opts.gitDir) : undefined;
  const url = opts.repo ?? gitDir;
  if (!url) throw new InputError("give --repo URL (what builds clone), --git-dir DIR (the repository the hook runs in), or both");
  const problem = cloneUrlProblem(url);
  if (problem) throw new InputError(`--repo: ${problem}`);
  const refs = await pushedRefs(opts, stdin);
  requireSections(cfg, "crypto", "database", "redis");
  const git = providerConfig(cfg, "git");
  const key = git && !gitDir ? await providerKey(git, cfg.objects?.path) : undefined;
  const crypto = new Crypto(cfg.crypto!.block);
  return withPool(cfg, (pool) =>
    withRedis(cfg, async (redis) => {
      const services: SubmissionServices = { pool, redis, crypto, queue: cfg.queue, manifestLimit: cfg.manifestLimit };
      let failed = 0;
      for (const r of refs) {
        let said: string;
        try {
          said = await triggerRef(cfg, services, { ...opts, gitDir }, url, key, r);
        } catch (err) {
          // One ref that cannot be read does not keep the others from their builds.
          if (!(err instanceof FetchError || err instanceof InputError)) throw err;
          said = `${r.ref}: not triggered: ${err.message}`;
          failed++;
        }
        for (const line of said.split("\n")) out.write(terminalSafe(line) + "\n");
      }
      return failed === 0 ? 0 : 1;
    }),
  );
}
