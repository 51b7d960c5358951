// Build caches in and out of a container through the Engine's archive API, streamed both ways:
// GET /containers/{id}/archive for each path (each archive named from the path's own base name),
// renamed on the fly into one tar relative to the workspace or home (./rename.ts); PUT
// /containers/{id}/archive to extract one there.
import path from "node:path";
import { once } from "node:events";
import { PassThrough, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type Docker from "dockerode";
import { DriverError, type PackedTar } from "../driver.js";
import { dockerMessage, statusCode } from "./engine.js";
import { directoryHeaders, TarPrefixer } from "./rename.js";

/** Whether `p` exists in the container (a symlink counts as itself). */
export async function existsInContainer(container: Docker.Container, p: string): Promise<boolean> {
  try {
    const res = (await container.infoArchive({ path: p })) as unknown as Readable;
    res.resume();
    return true;
  } catch (err) {
    if (statusCode(err) === 404) return false;
    throw new DriverError(`cannot look at ${p} in the container: ${dockerMessage(err)}`);
  }
}

/**
 * One tar of `paths` under `dir` in the container, named relative to `dir`: the paths that exist
 * are found first, then each is read from the engine in turn while the archive is consumed, its
 * names prefixed on the fly (./rename.ts).
 */
export async function packPaths(container: Docker.Container, dir: string, paths: string[]): Promise<PackedTar> {
  const found: string[] = [];
  const missing: string[] = [];
  for (const p of paths) ((await existsInContainer(container, path.posix.join(dir, p))) ? found : missing).push(p);
  // One path right under the base: the engine's archive is already named as it should be.
  if (found.length === 1 && path.posix.dirname(found[0]) === ".") return { archive: await getArchive(container, dir, found[0]), missing };
  const archive = new PassThrough({ highWaterMark: 1 << 20 });
  (async () => {
    for (const rel of found) {
      const parent = path.posix.dirname(rel);
      // Its parents, so that extracting needs nothing of the engine but the base directory.
      const parts = parent === "." ? [] : parent.split("/");
      for (const header of directoryHeaders(parts.map((_, i) => `${parts.slice(0, i + 1).join("/")}/`))) {
        if (!archive.write(header)) await once(archive, "drain");
      }
      const source = await getArchive(container, dir, rel);
      // Right under the base, names stay as they are; only the end blocks go.
      await pipeline(source, new TarPrefixer(parent === "." ? "" : parent), archive, { end: false });
    }
    archive.end(Buffer.alloc(2 * 512));
  })().catch((err: Error) => archive.destroy(err instanceof DriverError ? err : new DriverError(`cannot read the container's archive: ${err.message}`)));
  return { archive, missing };
}

async function getArchive(container: Docker.Container, dir: string, rel: string): Promise<Readable> {
  try {
    return (await container.getArchive({ path: path.posix.join(dir, rel) })) as unknown as Readable;
  } catch (err) {
    throw new DriverError(`cannot read ${rel} from the container: ${dockerMessage(err)}`);
  }
}

/** Extracts `archive` under `dir` in the container (made when missing). */
export async function unpackInto(container: Docker.Container, dir: string, archive: Readable): Promise<void> {
  try {
    await container.putArchive(archive, { path: dir });
  } catch (err) {
    archive.destroy();
    throw new DriverError(`cannot unpack into ${dir} in the container: ${dockerMessage(err)}`);
  }
}
