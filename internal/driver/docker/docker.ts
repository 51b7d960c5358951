// The docker driver: one long-lived container per build, each job an `exec` in it, the workspace
// a labelled volume. Images come from the engine, a registry (by the pull policy) or a tar under
// <images.path>/docker/_base; everything the driver creates carries the build's label, so destroy
// and reap can find and remove it.
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { Readable, Transform, type TransformCallback, type Writable } from "node:stream";
import Docker from "dockerode";
import type { DockerConfig, DriverConfig } from "../../config/config.js";
import { confinedPath, isInside } from "../../fs/store.js";
import { CollectError, DriverError, registerDriver, type Driver, type DriverOptions, type JobRun } from "../driver.js";
import { openFirstEntry, singleFileTar } from "./tar.js";

export const LABEL_BUILD = "djinn.build";
export const LABEL_WORKER = "djinn.worker";
export const DEFAULT_WORKSPACE = "/workspace";
const DEFAULT_PULL_TIMEOUT_MS = 5 * 60_000;
/** Longest script passed as an argument; the kernel refuses single arguments over 128 KiB. */
const MAX_INLINE_SCRIPT = 96 * 1024;
/** Where scripts too long for an argument are written, in the container's own filesystem. */
const SCRIPT_DIR = "/.djinn";
const CHECK_TIMEOUT_MS = 5000;

/** A Docker client for driver.toml's `host` (unix:///path, tcp://host:port, http(s)://host:port). */
export function dockerClient(config: DockerConfig): Docker {
  const url = new URL(config.host);
  const version = config.version ? (config.version.startsWith("v") ? config.version : `v${config.version}`) : undefined;
  if (url.protocol === "unix:") return new Docker({ socketPath: url.pathname, version });
  const protocol = url.protocol === "https:" ? "https" : "http";
  return new Docker({ host: url.hostname, port: Number(url.port) || (protocol === "https" ? 2376 : 2375), protocol, version });
}

/**
 * A signal aborted after `ms` or with `parent`. A plain timer rather than AbortSignal.timeout
 * composed with AbortSignal.any, whose timeout can be collected before it fires.
 */
function deadline(ms: number, parent?: AbortSignal): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const abort = () => controller.abort();
  const timer = setTimeout(abort, ms);
  parent?.addEventListener("abort", abort, { once: true });
  if (parent?.aborted) abort();
  return {
    signal: controller.signal,
    clear: () => {
      clearTimeout(timer);
      parent?.removeEventListener("abort", abort);
    },
  };
}

/** dockerode takes an abortSignal option where its types do not say so. */
interface Abortable {
  ping(opts: { abortSignal: AbortSignal }): Promise<unknown>;
  version(opts: { abortSignal: AbortSignal }): Promise<Docker.DockerVersion>;
}

function dockerConfigOf(config: DriverConfig): DockerConfig {
  if (!config.docker) throw new DriverError("the docker driver is not configured: add a [docker] section to the driver file");
  return config.docker;
}

/** The build's container settings: the manifest's driver map checked against driver.toml. */
export interface ContainerSettings {
  image: string;
  workspace: string;
  /** 0 = no limit. */
  cpus: number;
  /** MB; 0 = no limit. */
  memoryMb: number;
  network: string;
}

// Docker's reference grammar: [domain[:port]/]component(/component)*[:tag][@digest]. Nothing else
// reaches the API (a name is part of request paths) or the images directory.
const DOMAIN = "(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?/)";
const COMPONENT = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
const IMAGE_REFERENCE = new RegExp(`^${DOMAIN}?${COMPONENT}(?:/${COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,})?$`);

function parseCpus(value: string): number {
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(Number(value) > 0)) throw new DriverError(`driver.cpus: expected a number of CPUs such as "2" or "0.5", got ${JSON.stringify(value)}`);
  return Number(value);
}

function parseMemoryMb(value: string): number {
  const m = /^(\d+)\s*([mg]b?)?$/i.exec(value.trim());
  if (!m || Number(m[1]) === 0) throw new DriverError(`driver.memory: expected megabytes such as "512", "512m" or "2g", got ${JSON.stringify(value)}`);
  return Number(m[1]) * (m[2]?.[0]?.toLowerCase() === "g" ? 1024 : 1);
}

/** A limit for one resource: the request (or the default) must not pass the maximum; with no request, the default capped at the maximum. */
function limit(requested: number | undefined, byDefault: number | undefined, max: number | undefined, key: string, maxKey: string, unit: string): number {
  const ceiling = max && max > 0 ? max : 0;
  if (requested !== undefined) {
    if (ceiling && requested > ceiling) throw new DriverError(`driver.${key}: ${requested}${unit} is more than this worker allows (${maxKey} = ${ceiling}${unit})`);
    return requested;
  }
  const base = byDefault && byDefault > 0 ? byDefault : 0;
  if (!ceiling) return base;
  return base ? Math.min(base, ceiling) : ceiling;
}

export function containerSettings(manifest: Record<string, string>, config: DockerConfig): ContainerSettings {
  const image = (manifest.image ?? "").trim();
  if (!image) throw new DriverError("driver.image: required by the docker driver");
  if (!IMAGE_REFERENCE.test(image) || image.length > 255) throw new DriverError(`driver.image: ${JSON.stringify(image)} is not an image reference such as debian:bookworm or registry:5000/team/app:1.2`);
  const workspace = manifest.workspace ?? DEFAULT_WORKSPACE;
  if (!workspace.startsWith("/") || path.posix.normalize(workspace) !== workspace.replace(/\/+$/, "") || workspace === "/" || /[\0\n]/.test(workspace)) {
    throw new DriverError(`driver.workspace: expected an absolute path other than / such as /workspace, got ${JSON.stringify(workspace)}`);
  }
  return {
    image,
    workspace: workspace.replace(/\/+$/, ""),
    cpus: limit(manifest.cpus !== undefined ? parseCpus(manifest.cpus) : undefined, config.cpus, config.max_cpus, "cpus", "max_cpus", ""),
    memoryMb: limit(manifest.memory !== undefined ? parseMemoryMb(manifest.memory) : undefined, config.memory, config.max_memory, "memory", "max_memory", " MB"),
    network: config.network || "bridge",
  };
}

function statusCode(err: unknown): number | undefined {
  return (err as { statusCode?: number }).statusCode;
}

/** Docker's error text without dockerode's "(HTTP code 404) no such container - " prefix. */
function dockerMessage(err: unknown): string {
  const e = err as { json?: { message?: string }; message?: string };
  return (e.json?.message ?? e.message ?? String(err)).replace(/^\(HTTP code \d+\)\s*/, "").trim();
}

/** Splits Docker's multiplexed exec stream (8-byte frame headers) into the bytes of stdout and stderr. */
export class Demux extends Transform {
  private pending = Buffer.alloc(0);
  private left = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    while (buf.length) {
      if (this.left > 0) {
        const take = Math.min(this.left, buf.length);
        this.push(buf.subarray(0, take));
        this.left -= take;
        buf = buf.subarray(take);
        continue;
      }
      if (buf.length < 8) {
        this.pending = Buffer.from(buf);
        break;
      }
      this.left = buf.readUInt32BE(4);
      buf = buf.subarray(8);
    }
    done();
  }
}

async function write(out: Writable, text: string): Promise<void> {
  if (out.write(text)) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      out.off("drain", done);
      out.off("close", done);
      out.off("error", done);
      resolve();
    };
    out.on("drain", done);
    out.on("close", done);
    out.on("error", done);
  });
}

/** Pipes a stream into `out` (never ending it) until the stream ends, errors or closes. */
function pumpInto(source: Readable, out: Writable): Promise<void> {
  return new Promise<void>((resolve) => {
    const finish = () => {
      source.unpipe(out);
      resolve();
    };
    source.once("end", finish);
    source.once("close", finish);
    source.once("error", finish);
    source.pipe(out, { end: false });
  });
}

/** Reads a whole small stream (JSON progress, a path). */
async function readAll(stream: Readable, max = 1 << 20): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > max) throw new Error("response too large");
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Consumes a JSON-lines progress stream (pull, load); returns the messages, throws the engine's error. */
async function followProgress(stream: Readable, onMessage?: (m: Record<string, unknown>) => void): Promise<string[]> {
  const lines: string[] = [];
  let rest = "";
  const handle = (line: string) => {
    if (!line.trim()) return;
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    const detail = msg.errorDetail as { message?: string } | undefined;
    if (msg.error || detail) throw new Error(String(detail?.message ?? msg.error));
    if (typeof msg.stream === "string") lines.push(msg.stream.trim());
    onMessage?.(msg);
  };
  for await (const chunk of stream) {
    rest += (chunk as Buffer).toString("utf8");
    const parts = rest.split("\n");
    rest = parts.pop() ?? "";
    for (const line of parts) handle(line);
  }
  handle(rest);
  return lines;
}

export class DockerDriver implements Driver {
  private readonly docker: Docker;
  private readonly config: DockerConfig;
  private settings?: ContainerSettings;
  private container?: Docker.Container;
  private homeDir?: string;
  private volumeName?: string;
  private realWorkspace?: string;
  private oomKills = 0;
  private scripts = 0;
  private destroyed = false;

  constructor(private readonly options: DriverOptions) {
    this.config = dockerConfigOf(options.config);
    this.docker = dockerClient(this.config);
  }

  private labels(): Record<string, string> {
    return { [LABEL_BUILD]: this.options.buildId, [LABEL_WORKER]: "1" };
  }

  async create(output: Writable, signal: AbortSignal): Promise<void> {
    const settings = containerSettings(this.options.manifest, this.config);
    this.settings = settings;
    const limits = [settings.cpus ? `${settings.cpus} CPUs` : "no CPU limit", settings.memoryMb ? `${settings.memoryMb} MB memory` : "no memory limit", `network ${settings.network}`];
    await write(output, `Running with the docker driver (${this.config.host}): image ${settings.image}, ${limits.join(", ")}\n`);
    const bound = deadline(CHECK_TIMEOUT_MS);
    try {
      await (this.docker as unknown as Abortable).ping({ abortSignal: bound.signal });
    } catch (err) {
      throw new DriverError(`the Docker engine at ${this.config.host} does not answer: ${bound.signal.aborted ? `no answer within ${CHECK_TIMEOUT_MS} ms` : dockerMessage(err)}`);
    } finally {
      bound.clear();
    }
    await this.ensureImage(output, signal);
    if (signal.aborted) throw new DriverError("aborted before the container was created");

    const suffix = `${this.options.buildId.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 64)}-${randomBytes(4).toString("hex")}`;
    try {
      const volume = await this.docker.createVolume({ Name: `djinn-${suffix}`, Labels: this.labels() });
      this.volumeName = (volume as unknown as Docker.Volume).name;
      const memory = settings.memoryMb * 1024 * 1024;
      this.container = await this.docker.createContainer({
        name: `djinn-${suffix}`,
        Image: settings.image,
        // Only shell built-ins: `read` blocks on the open stdin for as long as the container lives.
        Entrypoint: ["/bin/sh", "-c", "read _"],
        Cmd: [],
        OpenStdin: true,
        StdinOnce: false,
        AttachStdin: false,
        AttachStdout: false,
        AttachStderr: false,
        Tty: false,
        WorkingDir: settings.workspace,
        Env: this.baseEnv(),
        Labels: this.labels(),
        HostConfig: {
          Mounts: [{ Type: "volume", Source: this.volumeName, Target: settings.workspace }],
          NanoCpus: Math.round(settings.cpus * 1e9),
          Memory: memory,
          // No swap beyond the limit, so a limit is a limit.
          MemorySwap: memory ? memory : 0,
          NetworkMode: settings.network,
          Privileged: false,
          Binds: [],
          AutoRemove: false,
        },
      });
      await this.container.start();
    } catch (err) {
      throw new DriverError(`cannot start a container of ${settings.image}: ${dockerMessage(err)}`);
    } finally {
      // destroy() ran while this was being made (the worker is stopping): nothing may outlive it.
      if (this.destroyed) await this.release();
    }
    if (this.destroyed) throw new DriverError("the build ended while its container was being created");
    await write(output, `Container ${this.container.id.slice(0, 12)} up, workspace ${settings.workspace} on volume ${this.volumeName}\n`);
  }

  private baseEnv(): string[] {
    return ["CI=true", `DJINN_BUILD=${this.options.buildId}`];
  }

  private requireContainer(): { container: Docker.Container; settings: ContainerSettings } {
    if (!this.container || !this.settings || this.destroyed) throw new DriverError("the build container is not running");
    return { container: this.container, settings: this.settings };
  }

  // ---- images ----

  private async imagePresent(image: string): Promise<boolean> {
    try {
      await this.docker.getImage(image).inspect();
      return true;
    } catch (err) {
      if (statusCode(err) === 404) return false;
      throw new DriverError(`cannot inspect image ${image}: ${dockerMessage(err)}`);
    }
  }

  private async ensureImage(output: Writable, signal: AbortSignal): Promise<void> {
    const image = this.settings!.image;
    const policy = this.config.pull;
    const present = await this.imagePresent(image);
    let pullFailure: string | undefined;
    if (policy === "always" || (policy === "if-not-present" && !present)) {
      try {
        await this.pull(image, output, signal);
        return;
      } catch (err) {
        if (signal.aborted) throw new DriverError(`pull of ${image} aborted`);
        pullFailure = (err as Error).message;
        await write(output, `Pull of ${image} failed: ${pullFailure}\n`);
      }
    } else if (present) {
      await write(output, `Using image ${image} from the engine (pull = ${policy})\n`);
      return;
    }
    const loaded = await this.loadFromImages(image, output, signal);
    if (loaded) return;
    const reasons: string[] = [];
    if (policy === "always") reasons.push(`pull = always and the pull failed (${pullFailure})`);
    else if (pullFailure) reasons.push(`not in the engine and the pull failed (${pullFailure})`);
    else reasons.push("not in the engine and pull = never");
    reasons.push(this.options.imagesPath ? `no ${this.baseTarPath(image) ?? "tar"} to load` : "no images path to load a tar from");
    throw new DriverError(`image ${image} is not available: ${reasons.join("; ")}`);
  }

  private async pull(image: string, output: Writable, signal: AbortSignal): Promise<void> {
    await write(output, `Pulling image ${image}\n`);
    const timeoutMs = this.config.pull_timeout ?? DEFAULT_PULL_TIMEOUT_MS;
    const bound = deadline(timeoutMs, signal);
    let stream: Readable | undefined;
    const cut = () => stream?.destroy(new Error("aborted"));
    bound.signal.addEventListener("abort", cut, { once: true });
    try {
      stream = (await this.docker.pull(image, { abortSignal: bound.signal })) as Readable;
      if (bound.signal.aborted) cut();
      let digest = "";
      await followProgress(stream, (m) => {
        if (typeof m.status === "string" && m.status.startsWith("Digest:")) digest = m.status.slice(7).trim();
      });
      if (bound.signal.aborted) throw new Error("aborted");
      await write(output, `Pulled image ${image}${digest ? ` (${digest})` : ""}\n`);
    } catch (err) {
      if (bound.signal.aborted && !signal.aborted) throw new Error(`timed out after ${timeoutMs} ms (pull_timeout)`);
      throw new Error(dockerMessage(err));
    } finally {
      bound.signal.removeEventListener("abort", cut);
      bound.clear();
    }
  }


  /** `<images.path>/docker/_base/<image>.tar`, or undefined when the name would lead elsewhere. */
  private baseTarPath(image: string): string | undefined {
    if (!this.options.imagesPath) return undefined;
    try {
      return confinedPath(path.join(this.options.imagesPath, "docker", "_base"), `${image}.tar`);
    } catch {
      return undefined;
    }
  }

  private async loadFromImages(image: string, output: Writable, signal: AbortSignal): Promise<boolean> {
    if (!this.options.imagesPath) return false;
    const base = path.join(this.options.imagesPath, "docker", "_base");
    const file = this.baseTarPath(image);
    if (!file) throw new DriverError(`image ${image}: the name leads outside ${base}`);
    let real: string;
    try {
      real = await fs.realpath(file);
    } catch {
      return false;
    }
    if (!isInside(await fs.realpath(base), real)) throw new DriverError(`image ${image}: ${file} links outside ${base}`);
    await write(output, `Loading image ${image} from ${file}\n`);
    try {
      const stream = (await this.docker.loadImage(createReadStream(real), { quiet: true, abortSignal: signal })) as unknown as Readable;
      const lines = await followProgress(stream);
      if (!(await this.imagePresent(image))) {
        // A tar saved under another name: give its one image the name the manifest asked for.
        const loaded = lines.map((l) => /^Loaded image(?: ID)?: (.+)$/.exec(l)?.[1]).filter((x): x is string => !!x);
        if (loaded.length !== 1) throw new Error(`it does not hold ${image} (it holds ${loaded.join(", ") || "nothing"})`);
        const at = image.lastIndexOf(":");
        const hasTag = at > image.lastIndexOf("/");
        await this.docker.getImage(loaded[0]!).tag({ repo: hasTag ? image.slice(0, at) : image, tag: hasTag ? image.slice(at + 1) : "latest" });
      }
    } catch (err) {
      if (err instanceof DriverError) throw err;
      throw new DriverError(`cannot load ${file}: ${dockerMessage(err)}`);
    }
    await write(output, `Loaded image ${image}\n`);
    return true;
  }

  // ---- jobs ----

  /** The command of a job: the script as an argument, or written to a file when too long for one. */
  private async jobCommand(container: Docker.Container, script: string): Promise<string[]> {
    // One pipe for both streams, so the trace (stderr) and the output keep the order they were written in.
    if (Buffer.byteLength(script) <= MAX_INLINE_SCRIPT) return ["/bin/sh", "-c", `exec 2>&1\n${script}`];
    const name = `job-${++this.scripts}.sh`;
    const bytes = Buffer.from(script);
    await container.putArchive(singleFileTar({ dirs: [SCRIPT_DIR.slice(1)], name: `${SCRIPT_DIR.slice(1)}/${name}`, mode: 0o644, size: bytes.length, source: Readable.from([bytes]) }), { path: "/" });
    return ["/bin/sh", "-c", 'exec 2>&1; exec /bin/sh "$0"', `${SCRIPT_DIR}/${name}`];
  }

  /** Runs a command in the container; output into `out`, resolves to its exit code. */
  private async run(container: Docker.Container, cmd: string[], env: string[], workdir: string, out: Writable, signal?: AbortSignal): Promise<number> {
    const exec = await container.exec({ Cmd: cmd, Env: env, WorkingDir: workdir, AttachStdin: false, AttachStdout: true, AttachStderr: true, Tty: false });
    const stream = (await exec.start({ hijack: true, stdin: false })) as unknown as Readable;
    const demux = new Demux();
    const onAbort = () => {
      // Docker cannot signal an exec: kill the container, which ends every process of the build.
      void this.kill();
      stream.destroy();
      demux.destroy();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      if (signal?.aborted) onAbort();
      // A connection that breaks mid-job ends the job too, not only a clean end of stream.
      stream.once("error", () => demux.destroy());
      await pumpInto(stream.pipe(demux), out);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    if (signal?.aborted) return 137;
    // The stream ends once the process has; its exit code may take a moment to be recorded.
    for (let tries = 0; ; tries++) {
      const info = await exec.inspect();
      if (!info.Running && info.ExitCode !== null && info.ExitCode !== undefined) return info.ExitCode;
      if (tries >= 200) throw new DriverError(`the engine did not report how ${cmd[0]} ended`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async execute(job: JobRun): Promise<number> {
    const { container, settings } = this.requireContainer();
    if (job.signal.aborted) return 137;
    const env = Object.entries(job.env).map(([k, v]) => `${k}=${v}`);
    let code: number;
    try {
      const cmd = await this.jobCommand(container, job.script);
      code = await this.run(container, cmd, env, settings.workspace, job.output, job.signal);
    } catch (err) {
      if (job.signal.aborted) return 137;
      if (err instanceof DriverError) throw err;
      throw new DriverError(`cannot run ${job.name} in the build container: ${await this.whyDown(dockerMessage(err))}`);
    }
    if (code !== 0 && !job.signal.aborted) {
      const oom = await this.outOfMemory();
      if (oom) await write(job.output, `${oom}\n`);
    }
    return code;
  }

  /** Why the container is unusable, when it has stopped (the OOM killer took its first process, say). */
  private async whyDown(fallback: string): Promise<string> {
    try {
      const info = await this.container!.inspect();
      if (info.State.OOMKilled) return `the container ran out of memory (limit ${this.settings!.memoryMb} MB) and stopped`;
      if (!info.State.Running) return `the container stopped (exit status ${info.State.ExitCode})`;
    } catch {
      // The fallback says it.
    }
    return fallback;
  }

  /**
   * After a failed job: did the kernel's OOM killer act in the container's memory cgroup since the
   * last look? Read with shell built-ins only, from cgroup v2 memory.events or v1 memory.oom_control.
   */
  private async outOfMemory(): Promise<string | undefined> {
    const { container, settings } = this.requireContainer();
    const script = 'for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do if [ -r "$f" ]; then while read k v; do [ "$k" = oom_kill ] && echo "$v"; done < "$f"; exit 0; fi; done';
    const chunks: Buffer[] = [];
    const sink = new Transform({ transform: (c: Buffer, _e, done) => (chunks.push(c), done()) });
    try {
      await this.run(container, ["/bin/sh", "-c", script], [], "/", sink);
    } catch (err) {
      const why = await this.whyDown("");
      return why || undefined;
    }
    const count = parseInt(Buffer.concat(chunks).toString().trim(), 10);
    if (!Number.isFinite(count) || count <= this.oomKills) return undefined;
    this.oomKills = count;
    return settings.memoryMb
      ? `out of memory (limit ${settings.memoryMb} MB): the kernel killed a process of this job`
      : "out of memory: the kernel killed a process of this job (no memory limit is set; the host ran out)";
  }

  // ---- files ----

  async place(dest: string, source: Readable, size: number, mode = 0o644): Promise<void> {
    let container: Docker.Container, settings: ContainerSettings;
    try {
      ({ container, settings } = this.requireContainer());
    } catch (err) {
      source.destroy();
      throw err;
    }
    if (dest === "" || /[\0]/.test(dest)) {
      source.destroy();
      throw new DriverError(`invalid object destination ${JSON.stringify(dest)}`);
    }
    let target: string;
    try {
      target = dest.startsWith("~/") ? path.posix.join(await this.home(container), dest.slice(2)) : path.posix.resolve(settings.workspace, dest);
    } catch (err) {
      source.destroy();
      throw new DriverError(`cannot find the home directory in the container: ${dockerMessage(err)}`);
    }
    if (target === "/" || dest.endsWith("/")) {
      source.destroy();
      throw new DriverError(`object destination ${dest} names a directory, not a file`);
    }
    try {
      // The archive API extracts into an existing directory: find the deepest one, create the rest.
      let existing = path.posix.dirname(target);
      const missing: string[] = [];
      while (existing !== "/" && !(await this.pathExists(container, existing))) {
        missing.unshift(path.posix.basename(existing));
        existing = path.posix.dirname(existing);
      }
      const dirs = missing.map((_, i) => missing.slice(0, i + 1).join("/"));
      const name = [...missing, path.posix.basename(target)].join("/");
      const tar = singleFileTar({ dirs, name, mode, size, source });
      try {
        await container.putArchive(tar, { path: existing });
      } finally {
        tar.destroy();
      }
    } catch (err) {
      source.destroy();
      if (err instanceof DriverError) throw err;
      throw new DriverError(`cannot write ${target} in the container: ${dockerMessage(err)}`);
    }
  }

  /** The home directory of the image's user, as its jobs see it ($HOME). */
  private async home(container: Docker.Container): Promise<string> {
    if (this.homeDir) return this.homeDir;
    const chunks: Buffer[] = [];
    const sink = new Transform({ transform: (c: Buffer, _e, done) => (chunks.push(c), done()) });
    const code = await this.run(container, ["/bin/sh", "-c", 'printf %s "${HOME:-/}"'], [], "/", sink);
    const home = Buffer.concat(chunks).toString("utf8");
    if (code !== 0 || !path.posix.isAbsolute(home)) throw new Error(`$HOME is ${JSON.stringify(home)} (exit status ${code})`);
    this.homeDir = home;
    return home;
  }

  private async pathExists(container: Docker.Container, p: string): Promise<boolean> {
    try {
      const res = (await container.infoArchive({ path: p })) as unknown as Readable;
      res.resume();
      return true;
    } catch (err) {
      if (statusCode(err) === 404) return false;
      throw err;
    }
  }

  async collect(file: string): Promise<Readable> {
    let container: Docker.Container, settings: ContainerSettings;
    try {
      ({ container, settings } = this.requireContainer());
    } catch (err) {
      throw new CollectError("failed", (err as Error).message);
    }
    if (file === "" || file.includes("\0")) throw new CollectError("failed", `invalid artifact path ${JSON.stringify(file)}`);
    const target = path.posix.resolve(settings.workspace, file);
    if (path.posix.isAbsolute(file) || !isInside(settings.workspace, target)) throw new CollectError("outside", `${file} is outside the workspace`);
    // Symlinks are resolved inside the container, where they point.
    const script = [
      'w=$(readlink -f -- "$1") || exit 5',
      'if [ ! -e "$2" ]; then p=$(readlink -f -- "$2" 2>/dev/null) || exit 4; [ -n "$p" ] || exit 4; printf "%s\\n%s" "$w" "$p"; exit 4; fi',
      'p=$(readlink -f -- "$2") || exit 5',
      'printf "%s\\n%s" "$w" "$p"',
      '[ -f "$p" ] || exit 6',
    ].join("\n");
    const chunks: Buffer[] = [];
    const sink = new Transform({ transform: (c: Buffer, _e, done) => (chunks.push(c), done()) });
    let code: number;
    try {
      code = await this.run(container, ["/bin/sh", "-c", script, "sh", settings.workspace, target], [], "/", sink);
    } catch (err) {
      throw new CollectError("failed", `cannot look at ${file} in the container: ${dockerMessage(err)}`);
    }
    const text = Buffer.concat(chunks).toString("utf8");
    const nl = text.indexOf("\n");
    const real = nl === -1 ? undefined : { workspace: text.slice(0, nl), path: text.slice(nl + 1) };
    if (real && !isInside(real.workspace, real.path) && path.posix.isAbsolute(real.path)) throw new CollectError("outside", `${file} links outside the workspace (to ${real.path})`);
    if (code === 4) throw new CollectError("missing", `${file} does not exist`);
    if (code === 6) throw new CollectError("not-a-file", `${file} is not a regular file`);
    if (code !== 0 || !real) throw new CollectError("failed", `cannot resolve ${file} in the container (readlink -f exit status ${code})`);
    let archive: Readable;
    try {
      archive = (await container.getArchive({ path: real.path })) as unknown as Readable;
    } catch (err) {
      if (statusCode(err) === 404) throw new CollectError("missing", `${file} does not exist`);
      throw new CollectError("failed", `cannot read ${file}: ${dockerMessage(err)}`);
    }
    const { entry, body } = await openFirstEntry(archive).catch((err: Error) => {
      throw new CollectError("failed", `cannot read ${file}: ${err.message}`);
    });
    if (entry.type !== "file") {
      body.destroy();
      throw new CollectError(entry.type === "symlink" ? "outside" : "not-a-file", `${file} changed into a ${entry.type} while it was collected`);
    }
    return body;
  }

  // ---- teardown ----

  private async kill(): Promise<void> {
    await this.container?.kill({ signal: "SIGKILL" }).catch(() => undefined);
  }

  async destroy(): Promise<void> {
    this.destroyed = true;
    await this.release();
  }

  private async release(): Promise<void> {
    // The names are kept: removing twice is harmless (404), and a second call after a racing
    // create must still find what that create made.
    const container = this.container;
    const volume = this.volumeName;
    if (container) {
      await container.remove({ force: true, v: true }).catch((err) => {
        if (statusCode(err) !== 404) this.options.log.warn({ err: dockerMessage(err), container: container.id }, "cannot remove build container");
      });
    }
    if (volume) {
      await this.docker.getVolume(volume).remove().catch((err) => {
        if (statusCode(err) !== 404) this.options.log.warn({ err: dockerMessage(err), volume }, "cannot remove build volume");
      });
    }
  }
}

/** Removes every container and volume labelled with the build, whoever made them. */
export async function reapBuild(docker: Docker, buildId: string): Promise<{ containers: number; volumes: number }> {
  const filters = JSON.stringify({ label: [`${LABEL_BUILD}=${buildId}`] });
  const failures: string[] = [];
  let containers: Docker.ContainerInfo[];
  try {
    containers = await docker.listContainers({ all: true, filters });
  } catch (err) {
    throw new DriverError(`build ${buildId}: cannot list its containers: ${dockerMessage(err)}`);
  }
  for (const c of containers) {
    await docker.getContainer(c.Id).remove({ force: true, v: true }).catch((err) => {
      if (statusCode(err) !== 404) failures.push(`container ${c.Id.slice(0, 12)}: ${dockerMessage(err)}`);
    });
  }
  const { Volumes: volumes } = await docker.listVolumes({ filters }).catch((err) => {
    throw new DriverError(`build ${buildId}: cannot list its volumes: ${dockerMessage(err)}`);
  });
  for (const v of volumes ?? []) {
    await docker.getVolume(v.Name).remove().catch((err) => {
      if (statusCode(err) !== 404) failures.push(`volume ${v.Name}: ${dockerMessage(err)}`);
    });
  }
  if (failures.length) throw new DriverError(`build ${buildId}: cannot remove ${failures.join("; ")}`);
  return { containers: containers.length, volumes: volumes?.length ?? 0 };
}

export async function checkEngine(config: DriverConfig): Promise<string[]> {
  const docker = dockerConfigOf(config);
  const client = dockerClient(docker);
  const bound = deadline(CHECK_TIMEOUT_MS);
  try {
    const version = await (client as unknown as Abortable).version({ abortSignal: bound.signal });
    return [`docker: engine ${version.Version} at ${docker.host}, API ${version.ApiVersion}`];
  } catch (err) {
    throw new DriverError(`docker: the engine at ${docker.host} does not answer: ${bound.signal.aborted ? `no answer within ${CHECK_TIMEOUT_MS} ms` : dockerMessage(err)}`);
  } finally {
    bound.clear();
  }
}

registerDriver({
  name: "docker",
  create: (options) => new DockerDriver(options),
  reap: async (buildId, config, log) => {
    const removed = await reapBuild(dockerClient(dockerConfigOf(config)), buildId);
    if (removed.containers || removed.volumes) log.info({ buildId, ...removed }, "removed what the build left in Docker");
  },
  check: checkEngine,
});
