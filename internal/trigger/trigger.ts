// From a push to builds: the pushed commit read with git, one build per manifest found at it
// (.djinn.yml, then .djinn/*.yml|*.yaml), the repository pinned as the manifest's source at that
// commit, all submitted through the shared submission path with the push recorded as each
// build's trigger, once per delivery. Webhooks (internal/web/hooks.ts) and `djinn-worker trigger`
// both come here.
import { InputError } from "../errors/errors.js";
import { ObjectStore } from "../fs/store.js";
import { manifestTooLarge } from "../manifest/manifest.js";
import { deliveredBuilds } from "../store/triggers.js";
import type { BuildId } from "../queue/build-id.js";
import { checkManifest, checkSubmission, isEmailAddress, storeAndQueueAll, type BatchItem, type SubmissionServices, type Trigger } from "../submission/submission.js";
import type { Push } from "./forges.js";
import { fetchCommit, manifestFiles, type ManifestFile, type Repo } from "./git.js";
import { pinSource } from "./sources.js";

export type { Push } from "./forges.js";

/** Where the pushed commit is read from: fetched (with an SSH key for a private repository), or a repository that is here. */
export type CommitSource = { fetch: true; key?: string; allowFile?: boolean } | { repo: Repo };

export interface StartedBuild {
  id: BuildId;
  /** The manifest's path in the repository. */
  file: string;
  /** Why the manifest was refused (the build is stored failed, saying so); absent for a queued build. */
  refused?: string;
  /** The queue it waits on and how many live workers served it. */
  list?: string;
  serving?: number;
}

export type TriggerResult = { redelivery: true; builds: BuildId[] } | { redelivery: false; builds: StartedBuild[] };

/** Why `url` cannot be a source a build clones, or undefined. */
export function cloneUrlProblem(url: string): string | undefined {
  if (url === "" || /\s/.test(url) || url.includes("=>")) return `${JSON.stringify(url)} is not a repository URL (empty, or holds a space or =>)`;
  // git would take it for an option.
  if (url.startsWith("-")) return `${JSON.stringify(url)} is not a repository URL (it starts with -)`;
  return undefined;
}

/** The push as its builds record it. */
export function triggerOf(push: Push): Trigger {
  const { name, email } = push.author;
  return { provider: push.provider, repository: push.repository, ref: push.ref, commit: push.commit, author: email ? `${name} <${email}>` : name, message: push.message };
}

/** A manifest file as the item of a batch: checked, pinned to the commit, or refused with the file and line. */
export function manifestItem(push: Push, file: ManifestFile, limit: number): BatchItem {
  const trigger = { ...triggerOf(push), manifest: file.path };
  const notify = push.author.email && isEmailAddress(push.author.email) ? [push.author.email] : [];
  const refuse = (reason: string): BatchItem => ({ refused: { text: file.bytes ? file.bytes.toString("utf8").replace(/\0/g, "") : "", reason, notify }, trigger });
  if (!file.bytes) return refuse(`${file.path}: ${manifestTooLarge(limit, file.size)}`);
  try {
    const { text, manifest } = checkManifest(file.path, file.bytes, limit, []);
    const pinned = pinSource(text, manifest, [push.cloneUrl, ...push.otherUrls], push.commit);
    return { checked: checkSubmission({ manifestSource: file.path, manifest: pinned, env: [], secrets: [], keys: [], notify }, limit), trigger };
  } catch (err) {
    if (err instanceof InputError) return refuse(err.message);
    throw err;
  }
}

/** The private key a provider names: the key itself, or an object in the store. */
export async function providerKey(p: { key?: string; keyObject?: string }, objectsRoot: string | undefined): Promise<string | undefined> {
  if (p.key !== undefined || p.keyObject === undefined) return p.key;
  if (!objectsRoot) throw new InputError(`key_object ${JSON.stringify(p.keyObject)}: worker.toml has no [objects] path to read it from`);
  const { stream, size } = await new ObjectStore(objectsRoot).open(p.keyObject);
  if (size > 64 * 1024) {
    stream.destroy();
    throw new InputError(`key_object ${JSON.stringify(p.keyObject)} is ${size} bytes: not a private key`);
  }
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Starts the builds of `push`: nothing when its delivery was acted on before (the builds it
 * started are answered), none when the commit has no manifest.
 */
export async function startBuilds(services: SubmissionServices, push: Push, source: CommitSource): Promise<TriggerResult> {
  const problem = cloneUrlProblem(push.cloneUrl);
  if (problem) throw new InputError(problem);
  const delivery = push.delivery ? { provider: push.provider, id: push.delivery } : undefined;
  if (delivery) {
    const earlier = await deliveredBuilds(services.pool, delivery.provider, delivery.id);
    if (earlier) return { redelivery: true, builds: earlier };
  }
  const repo = "repo" in source ? source.repo : await fetchCommit(push.cloneUrl, push.fetchRef, push.commit, source);
  let files: ManifestFile[];
  try {
    files = await manifestFiles(repo, push.commit, services.manifestLimit);
  } finally {
    await repo.close();
  }
  if (files.length === 0) return { redelivery: false, builds: [] };
  const items = files.map((f) => manifestItem(push, f, services.manifestLimit));
  const stored = await storeAndQueueAll(services, items, { delivery });
  if (stored.duplicate) return { redelivery: true, builds: stored.builds };
  return {
    redelivery: false,
    builds: stored.builds.map((b, i) => ({ id: b.id, file: files[i].path, refused: items[i].refused?.reason, list: b.list, serving: b.serving })),
  };
}
