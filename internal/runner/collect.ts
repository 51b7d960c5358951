// A job's artifacts as Djinn collects them: a path or a shell pattern (`*`, `?`, `[...]`) in the
// build environment (the driver expands it: ../driver/artifacts.ts), each match streamed into
// the artifact store under its base name or under the destination with `*` replaced by that
// base name; what could not be collected is a line of the job's output.
import path from "node:path";
import { CollectError, type Driver } from "../driver/driver.js";
import { ArtifactStore, ArtifactWriteError, StoreError, type StoredArtifact } from "../fs/store.js";
import { holdsMasked } from "./mask.js";
import type { PlannedJob } from "./plan.js";

/** What collecting uses of a build's run. */
export interface CollectContext {
  driver: Driver;
  /** The store; the caller collects nothing without one. */
  artifacts?: ArtifactStore;
  reporter: { artifactStored?(job: PlannedJob, artifact: StoredArtifact & { source: string }): Promise<void> | void };
  masks: string[];
}

/** True when `source` holds a pattern character of the shell. */
export function isPattern(source: string): boolean {
  return /[*?[]/.test(source);
}

/**
 * The artifact name of `match`, one of `count` matches of `art.source` (Djinn's rule): `*` in the
 * destination becomes the match's base name; a pattern without a destination of its own gives
 * the base name. A destination naming one file while a pattern matched several gives each its
 * base name, and `note` says so. The store confines whatever name comes out.
 */
export function artifactName(art: { source: string; dest: string }, match: string, count: number): { name: string; note?: string } {
  const base = path.posix.basename(match);
  if (!isPattern(art.source)) return { name: art.dest.replaceAll("*", base) };
  // Without "=> dest" the destination is the pattern's own base name ("*.tar.gz"): each match keeps its own.
  if (art.dest === path.posix.basename(art.source)) return { name: base };
  if (art.dest.includes("*")) return { name: art.dest.replaceAll("*", base) };
  if (count > 1) return { name: base, note: `${count} files match ${art.source} but ${art.dest} names one: each is collected under its base name (write * in the destination to place them)` };
  return { name: art.dest };
}

/**
 * Whether a failed collection lost something that was there: the transfer (a refused channel, a
 * dropped connection) or the store failed. A file that is missing, outside or not a file is the
 * build's own doing, a line of output as in Djinn.
 */
function lostArtifact(err: unknown): boolean {
  if (err instanceof ArtifactWriteError) return true;
  if (err instanceof CollectError) return err.reason === "failed";
  // The store refusing a name the build chose is the build's doing; any other error broke the transfer.
  return !(err instanceof StoreError);
}

/**
 * Collects a job's artifacts; returns how many were lost (see lostArtifact) or refused (a matched
 * file's name holds a masked value), each of which fails the job; every failure is a line of output.
 */
export async function collectArtifacts(opts: CollectContext, job: PlannedJob, note: (l: string) => Promise<void>): Promise<number> {
  let lost = 0;
  for (const art of job.artifacts) {
    let sources = [art.source];
    if (isPattern(art.source)) {
      if (!opts.driver.glob) {
        await note(`artifact ${art.source} not collected: this driver takes no patterns`);
        continue;
      }
      try {
        sources = await opts.driver.glob(art.source);
      } catch (err) {
        await note(`artifact ${art.source} not collected: ${(err as Error).message}`);
        if (lostArtifact(err)) lost++;
        continue;
      }
      if (sources.length === 0) {
        await note(`artifact ${art.source}: the pattern matches nothing, nothing collected`);
        continue;
      }
    }
    let noted = false;
    for (const source of sources) {
      const { name, note: why } = artifactName(art, source, sources.length);
      // An artifact's source and name are stored and used for files as they are (secretInNames).
      if (holdsMasked(source, opts.masks) || holdsMasked(name, opts.masks)) {
        lost++;
        await note(`artifact ${art.source}: a matching file's name holds a masked value: not collected (artifact names are stored as they are); the job fails`);
        continue;
      }
      if (why && !noted) {
        noted = true;
        await note(why);
      }
      if (!(await collectOne(opts, job, source, name, note))) lost++;
    }
  }
  return lost;
}

/**
 * Streams one file of the environment into the store under `name`; a failure is a line of the
 * job's output. False when the artifact was lost (the job fails for that).
 */
async function collectOne(opts: CollectContext, job: PlannedJob, source: string, name: string, note: (l: string) => Promise<void>): Promise<boolean> {
  try {
    const stream = await opts.driver.collect(source);
    const stored = await opts.artifacts!.put(name, stream);
    await opts.reporter.artifactStored?.(job, { ...stored, source });
    const renamed = stored.requested === undefined ? "" : `: ${stored.requested} was collected earlier in this build, so this one is kept as ${stored.name}`;
    if (stored.truncated) await note(`artifact ${source} => ${stored.name}: cut to ${stored.size} bytes (the artifact limit)${renamed}`);
    else await note(`Collected artifact ${source} => ${stored.name} (${stored.size} bytes)${renamed}`);
  } catch (err) {
    const why = err instanceof CollectError ? err.message : (err as Error).message;
    await note(`artifact ${source} not collected: ${why}`);
    return !lostArtifact(err);
  }
  return true;
}
