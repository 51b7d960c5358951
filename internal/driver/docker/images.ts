// A build's image: from the engine, a registry (by driver.toml's pull policy, within pull_timeout)
// or a tar under <images.path>/docker/_base, in that order of preference.
import { createReadStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import type Docker from "dockerode";
import type { DockerConfig } from "./section.js";
import { confinedPath, isInside } from "../../fs/confine.js";
import { DriverError } from "../driver.js";
import { deadline } from "../../timers/timers.js";
import { dockerMessage, statusCode } from "./engine.js";
import { repositoryAndTag } from "./settings.js";
import { writeDrained } from "../../stream/write.js";
import { followProgress } from "./streams.js";

const DEFAULT_PULL_TIMEOUT_MS = 5 * 60_000;

/** Where a build's image may come from. */
export interface ImageSources {
  docker: Docker;
  config: DockerConfig;
  /** worker.toml [images] path, when the daemon runs the build. */
  imagesPath?: string;
}

export async function imagePresent(docker: Docker, image: string): Promise<boolean> {
  try {
    await docker.getImage(image).inspect();
    return true;
  } catch (err) {
    if (statusCode(err) === 404) return false;
    throw new DriverError(`cannot inspect image ${image}: ${dockerMessage(err)}`);
  }
}

/** Makes `image` present in the engine, saying where it came from; throws DriverError with every reason it is not available. */
export async function ensureImage(sources: ImageSources, image: string, output: Writable, signal: AbortSignal): Promise<void> {
  const policy = sources.config.pull;
  const present = await imagePresent(sources.docker, image);
  let pullFailure: string | undefined;
  if (policy === "always" || (policy === "if-not-present" && !present)) {
    try {
      await pull(sources, image, output, signal);
      return;
    } catch (err) {
      if (signal.aborted) throw new DriverError(`pull of ${image} aborted`);
      pullFailure = (err as Error).message;
      await writeDrained(output, `Pull of ${image} failed: ${pullFailure}\n`);
    }
  } else if (present) {
    await writeDrained(output, `Using image ${image} from the engine (pull = ${policy})\n`);
    return;
  }
  const loaded = await loadFromImages(sources, image, output, signal);
  if (loaded) return;
  const reasons: string[] = [];
  if (policy === "always") reasons.push(`pull = always and the pull failed (${pullFailure})`);
  else if (pullFailure) reasons.push(`not in the engine and the pull failed (${pullFailure})`);
  else reasons.push("not in the engine and pull = never");
  reasons.push(sources.imagesPath ? `no ${baseTarPath(sources.imagesPath, image) ?? "tar"} to load` : "no images path to load a tar from");
  throw new DriverError(`image ${image} is not available: ${reasons.join("; ")}`);
}

async function pull(sources: ImageSources, image: string, output: Writable, signal: AbortSignal): Promise<void> {
  await writeDrained(output, `Pulling image ${image}\n`);
  const timeoutMs = sources.config.pull_timeout ?? DEFAULT_PULL_TIMEOUT_MS;
  const bound = deadline(timeoutMs, signal);
  let stream: Readable | undefined;
  const cut = () => stream?.destroy(new Error("aborted"));
  bound.signal.addEventListener("abort", cut, { once: true });
  try {
    stream = (await sources.docker.pull(image, { abortSignal: bound.signal })) as Readable;
    if (bound.signal.aborted) cut();
    let digest = "";
    await followProgress(stream, (m) => {
      if (typeof m.status === "string" && m.status.startsWith("Digest:")) digest = m.status.slice(7).trim();
    });
    if (bound.signal.aborted) throw new Error("aborted");
    await writeDrained(output, `Pulled image ${image}${digest ? ` (${digest})` : ""}\n`);
  } catch (err) {
    if (bound.signal.aborted && !signal.aborted) throw new Error(`timed out after ${timeoutMs} ms (pull_timeout)`);
    throw new Error(dockerMessage(err));
  } finally {
    bound.signal.removeEventListener("abort", cut);
    bound.clear();
  }
}

/** `<images.path>/docker/_base/<image>.tar`, or undefined when the name would lead elsewhere. */
export function baseTarPath(imagesPath: string, image: string): string | undefined {
  try {
    return confinedPath(path.join(imagesPath, "docker", "_base"), `${image}.tar`);
  } catch {
    return undefined;
  }
}

/** Loads `image` from its tar under the images path; false when there is no such tar. */
async function loadFromImages(sources: ImageSources, image: string, output: Writable, signal: AbortSignal): Promise<boolean> {
  if (!sources.imagesPath) return false;
  const base = path.join(sources.imagesPath, "docker", "_base");
  const file = baseTarPath(sources.imagesPath, image);
  if (!file) throw new DriverError(`image ${image}: the name leads outside ${base}`);
  let real: string;
  try {
    real = await fs.realpath(file);
  } catch {
    return false;
  }
  if (!isInside(await fs.realpath(base), real)) throw new DriverError(`image ${image}: ${file} links outside ${base}`);
  await writeDrained(output, `Loading image ${image} from ${file}\n`);
  try {
    const stream = (await sources.docker.loadImage(createReadStream(real), { quiet: true, abortSignal: signal })) as unknown as Readable;
    const lines = await followProgress(stream);
    if (!(await imagePresent(sources.docker, image))) {
      // A tar saved under another name: give its one image the name the manifest asked for.
      const loaded = lines.map((l) => /^Loaded image(?: ID)?: (.+)$/.exec(l)?.[1]).filter((x): x is string => !!x);
      if (loaded.length !== 1) throw new Error(`it does not hold ${image} (it holds ${loaded.join(", ") || "nothing"})`);
      await sources.docker.getImage(loaded[0]!).tag(repositoryAndTag(image));
    }
  } catch (err) {
    if (err instanceof DriverError) throw err;
    throw new DriverError(`cannot load ${file}: ${dockerMessage(err)}`);
  }
  await writeDrained(output, `Loaded image ${image}\n`);
  return true;
}
