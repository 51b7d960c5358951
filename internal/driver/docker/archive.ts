// Build caches in and out of a container through the Engine's archive API, streamed both ways:
// GET /containers/{id}/archive for each path (each archive named from the path's own base name),
// renamed on the fly into one tar relative to the workspace or home; PUT /containers/{id}/archive
// to extract one there.
import path from "node:path";
import { PassThrough, Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type Docker from "dockerode";
import tar from "tar-stream";
import { DriverError, type PackedTar } from "../driver.js";
import { dockerMessage, statusCode } from "./engine.js";

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

/** `name` of an entry in the archive of `rel` (named from rel's base name), as a name relative to the base. */
function renamed(rel: string, name: string): string {
  const dir = path.posix.dirname(rel);
  return dir === "." ? name : `${dir}/${name}`;
}

/** Copies every entry of `archive` into `pack`, renamed; links inside it too. */
async function copyEntries(archive: Readable, pack: tar.Pack, rel: string): Promise<void> {
  const extract = tar.extract();
  const fed = pipeline(archive, extract as unknown as Writable);
  for await (const entry of extract) {
    const header = { ...entry.header, name: renamed(rel, entry.header.name) };
    if (header.type === "link" && header.linkname) header.linkname = renamed(rel, header.linkname);
    await new Promise<void>((resolve, reject) => {
      const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
      pipeline(entry as unknown as Readable, sink as unknown as Writable).catch(reject);
    });
  }
  await fed;
}

/**
 * One tar of `paths` under `dir` in the container, named relative to `dir`: the paths that exist
 * are found first, then each is read from the engine in turn while the archive is consumed.
 */
export async function packPaths(container: Docker.Container, dir: string, paths: string[]): Promise<PackedTar> {
  const found: string[] = [];
  const missing: string[] = [];
  for (const p of paths) ((await existsInContainer(container, path.posix.join(dir, p))) ? found : missing).push(p);
  // One path right under the base: the engine's archive is already named as it should be.
  if (found.length === 1 && path.posix.dirname(found[0]) === ".") return { archive: await getArchive(container, dir, found[0]), missing };
  const pack = tar.pack();
  const archive = new PassThrough({ highWaterMark: 1 << 20 });
  (async () => {
    for (const rel of found) {
      // Its parents, so that extracting needs nothing of the engine but the base directory.
      const parts = path.posix.dirname(rel) === "." ? [] : path.posix.dirname(rel).split("/");
      for (let i = 1; i <= parts.length; i++) pack.entry({ name: `${parts.slice(0, i).join("/")}/`, type: "directory", mode: 0o755 });
      await copyEntries(await getArchive(container, dir, rel), pack, rel);
    }
    pack.finalize();
  })().catch((err: Error) => pack.destroy(err));
  pipeline(pack as unknown as Readable, archive).catch((err: Error) => archive.destroy(err instanceof DriverError ? err : new DriverError(err.message)));
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
