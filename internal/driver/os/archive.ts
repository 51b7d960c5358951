// Tar streams in and out of the os driver's workspace, by the host's own tar: what goes out is
// confined to the workspace (no absolute path, no `..`, no parent that is a symlink leading out),
// and what comes in is extracted under it (tar refuses absolute and `..` names).
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";
import { PassThrough, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { isInside, resolveInside } from "../../fs/confine.js";
import { DriverError, type PackedTar } from "../driver.js";
import { endedEarly } from "../tar-streams.js";

/** The last bytes of a process's stderr, for its error line. */
function stderrOf(child: ChildProcess): () => string {
  let text = "";
  child.stderr?.on("data", (d: Buffer) => {
    text = (text + d.toString("utf8")).slice(-2048);
  });
  return () => text.trim().split("\n").slice(-3).join("; ");
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });
}

/** The paths of `paths` that exist inside `workspace`, and those that do not; one leading outside is an error. */
async function present(workspace: string, paths: string[]): Promise<{ found: string[]; missing: string[] }> {
  const real = await fs.realpath(workspace);
  const found: string[] = [];
  const missing: string[] = [];
  for (const p of paths) {
    const target = resolveInside(workspace, p);
    if (!target || target === path.resolve(workspace)) throw new DriverError(`cache path ${p} is outside the workspace`);
    const parent = await fs.realpath(path.dirname(target)).catch(() => undefined);
    if (parent && !isInside(real, parent)) throw new DriverError(`cache path ${p} leads outside the workspace`);
    if (parent && (await fs.lstat(target).catch(() => undefined))) found.push(path.relative(workspace, target));
    else missing.push(p);
  }
  return { found, missing };
}

/** A tar stream of `paths` under `workspace`: it ends only when tar exited well, else it fails with tar's reason. */
export async function packWorkspace(workspace: string, paths: string[], signal: AbortSignal): Promise<PackedTar> {
  const { found, missing } = await present(workspace, paths);
  // tar refuses to make an empty archive: two zero blocks are one.
  if (found.length === 0) return { archive: Readable.from([Buffer.alloc(1024)]), missing };
  const child = spawn("tar", ["-c", "-f", "-", "-C", workspace, "--", ...found], { stdio: ["ignore", "pipe", "pipe"], signal });
  const stderr = stderrOf(child);
  const done = exited(child);
  // Awaited below unless the reader stops first: an abort must not become an unhandled rejection.
  done.catch(() => undefined);
  const archive = new PassThrough({ highWaterMark: 1 << 20 });
  pipeline(child.stdout!, archive, { end: false })
    .then(() => done)
    .then(
      (code) => (code === 0 ? archive.end() : archive.destroy(new DriverError(`tar exited ${code}: ${stderr()}`))),
      (err: Error) => archive.destroy(new DriverError(`tar failed: ${err.message}`)),
    );
  archive.once("close", () => child.kill("SIGKILL"));
  return { archive, missing };
}

/** Extracts `archive` under `workspace` by the host's tar. */
export async function unpackWorkspace(workspace: string, archive: Readable, signal: AbortSignal): Promise<void> {
  const child = spawn("tar", ["-x", "-f", "-", "-C", workspace, "--no-same-owner"], { stdio: ["pipe", "ignore", "pipe"], signal });
  const stderr = stderrOf(child);
  const done = exited(child);
  const fed = await pipeline(archive, child.stdin!).then(
    () => undefined,
    (err: NodeJS.ErrnoException) => err,
  );
  // tar may leave once it has read the end of the archive, before the padding after it.
  if (fed && !endedEarly(fed)) child.kill("SIGKILL");
  const code = await done.catch((err: Error) => {
    throw new DriverError(`cannot run tar: ${err.message}`);
  });
  if (fed && !(endedEarly(fed) && code === 0)) throw new DriverError(`cannot unpack: ${fed.message}`);
  if (code !== 0) throw new DriverError(`tar exited ${code}: ${stderr()}`);
}
