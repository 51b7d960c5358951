// The docker driver's lifecycle: one long-lived container per build, each job an `exec` in it, the
// workspace a labelled volume. Everything the driver creates carries the build's label, so destroy
// and reap can find and remove it. Settings, images, streams and archives live beside this file.
import { randomBytes } from "node:crypto";
import path from "node:path";
import { Readable, type Writable } from "node:stream";
import type Docker from "dockerode";
import type { DockerConfig } from "./section.js";
import { GLOB_SCRIPT, parseGlobOutput } from "../artifacts.js";
import { CollectError, DriverError, registerDriver, type Driver, type DriverOptions, type ExecResult, type JobRun, type PackedTar, type TarBase } from "../driver.js";
import { existsInContainer, packPaths, unpackInto } from "./archive.js";
import { checkEngine, dockerClient, dockerConfigOf, dockerMessage, pingEngine, statusCode } from "./engine.js";
import { execCapture, execIn } from "./exec.js";
import { ensureImage } from "./images.js";
import { buildLabels, containerOptions, containerSettings, describeLimits, jobCommand, LABEL_BUILD, LABEL_RUN, OOM_KILL_COUNT_SCRIPT, resourceName, RESOLVE_ARTIFACT_SCRIPT, SCRIPT_DIR, type ContainerSettings } from "./settings.js";
import { writeDrained } from "../../stream/write.js";
import { buildBaseEnv, envList } from "../env.js";
import { openFirstEntry, singleFileTar } from "./tar.js";
import { freshRunToken, type RunRef } from "../run.js";

export { checkEngine, dockerClient } from "./engine.js";
export { DEFAULT_WORKSPACE, LABEL_BUILD, LABEL_RUN, LABEL_WORKER } from "./settings.js";

export class DockerDriver implements Driver {
  private readonly docker: Docker;
  private readonly config: DockerConfig;
  private settings?: ContainerSettings;
  private container?: Docker.Container;
  private homeDir?: string;
  private volumeName?: string;
  private oomKills = 0;
  private scripts = 0;
  private destroyed = false;
  private readonly ref: RunRef;

  constructor(private readonly options: DriverOptions) {
    this.config = dockerConfigOf(options.config);
    this.docker = dockerClient(this.config);
    this.ref = { buildId: options.buildId, run: options.run ?? freshRunToken() };
  }

  async create(output: Writable, signal: AbortSignal): Promise<void> {
    const settings = containerSettings(this.options.manifest, this.config);
    this.settings = settings;
    await writeDrained(output, `Running with the docker driver (${this.config.host}): image ${settings.image}, ${describeLimits(settings)}\n`);
    await pingEngine(this.docker, this.config.host);
    await ensureImage({ docker: this.docker, config: this.config, imagesPath: this.options.imagesPath }, settings.image, output, signal);
    if (signal.aborted) throw new DriverError("aborted before the container was created");

    const name = resourceName(this.options.buildId, randomBytes(4).toString("hex"));
    const labels = buildLabels(this.ref);
    try {
      const volume = await this.docker.createVolume({ Name: name, Labels: labels });
      this.volumeName = (volume as unknown as Docker.Volume).name;
      this.container = await this.docker.createContainer(containerOptions(settings, { name, volume: this.volumeName, labels, env: envList(buildBaseEnv(this.options.buildId)) }));
      await this.container.start();
    } catch (err) {
      throw new DriverError(`cannot start a container of ${settings.image}: ${dockerMessage(err)}`);
    } finally {
      // destroy() ran while this was being made (the worker is stopping): nothing may outlive it.
      if (this.destroyed) await this.release();
    }
    if (this.destroyed) throw new DriverError("the build ended while its container was being created");
    await writeDrained(output, `Container ${this.container.id.slice(0, 12)} up, workspace ${settings.workspace} on volume ${this.volumeName}\n`);
  }

  private requireContainer(): { container: Docker.Container; settings: ContainerSettings } {
    if (!this.container || !this.settings || this.destroyed) throw new DriverError("the build container is not running");
    return { container: this.container, settings: this.settings };
  }

  async execute(job: JobRun): Promise<ExecResult> {
    const { container, settings } = this.requireContainer();
    if (job.signal.aborted) return { exitCode: 137 };
    const env = Object.entries(job.env).map(([k, v]) => `${k}=${v}`);
    let exitCode: number;
    try {
      const cmd = await this.jobCommand(container, job.script);
      exitCode = await execIn(container, cmd, { env, workdir: settings.workspace, out: job.output, signal: job.signal, onAbort: () => void this.kill() });
    } catch (err) {
      if (job.signal.aborted) return { exitCode: 137 };
      if (err instanceof DriverError) throw err;
      throw new DriverError(`cannot run ${job.name} in the build container: ${await this.whyDown(dockerMessage(err))}`);
    }
    if (exitCode === 0 || job.signal.aborted) return { exitCode };
    return { exitCode, memoryLimitMb: settings.memoryMb || undefined, ...(await this.outOfMemory()) };
  }

  /** The command of a job; a script too long for an argument is written into the container first. */
  private async jobCommand(container: Docker.Container, script: string): Promise<string[]> {
    const file = `${SCRIPT_DIR}/job-${this.scripts + 1}.sh`;
    const { cmd, inline } = jobCommand(script, file);
    if (inline) return cmd;
    this.scripts++;
    const bytes = Buffer.from(script);
    await container.putArchive(singleFileTar({ dirs: [SCRIPT_DIR.slice(1)], name: file.slice(1), mode: 0o644, size: bytes.length, source: Readable.from([bytes]) }), { path: "/" });
    return cmd;
  }

  /** Why the container is unusable, when it has stopped (the OOM killer took its first process, say). */
  private async whyDown(fallback: string): Promise<string> {
    const state = await this.stoppedState();
    if (state?.oomKilled) return `the container ran out of memory (limit ${this.settings!.memoryMb} MB) and stopped`;
    if (state) return `the container stopped (exit status ${state.exitCode})`;
    return fallback;
  }

  /** How the container ended, when it is no longer running; undefined while it runs or when the engine cannot say. */
  private async stoppedState(): Promise<{ oomKilled: boolean; exitCode: number } | undefined> {
    try {
      const { State: state } = await this.container!.inspect();
      if (state.OOMKilled || !state.Running) return { oomKilled: state.OOMKilled, exitCode: state.ExitCode };
    } catch {
      // Nothing to tell.
    }
    return undefined;
  }

  /**
   * After a failed job: did the kernel's OOM killer act in the container's memory cgroup since the
   * last look? When the counter cannot be read, the container has stopped: how it ended says.
   */
  private async outOfMemory(): Promise<Pick<ExecResult, "oomKilled" | "environmentExitCode">> {
    const { container } = this.requireContainer();
    let text: string;
    try {
      ({ text } = await execCapture(container, ["/bin/sh", "-c", OOM_KILL_COUNT_SCRIPT]));
    } catch {
      const state = await this.stoppedState();
      return state ? { oomKilled: state.oomKilled, environmentExitCode: state.exitCode } : {};
    }
    const count = parseInt(text.trim(), 10);
    if (!Number.isFinite(count) || count <= this.oomKills) return {};
    this.oomKills = count;
    return { oomKilled: true };
  }

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
      await this.putFile(container, target, source, size, mode);
    } catch (err) {
      source.destroy();
      if (err instanceof DriverError) throw err;
      throw new DriverError(`cannot write ${target} in the container: ${dockerMessage(err)}`);
    }
  }

  /** The archive API extracts into an existing directory: find the deepest one, create the rest with the file. */
  private async putFile(container: Docker.Container, target: string, source: Readable, size: number, mode: number): Promise<void> {
    let existing = path.posix.dirname(target);
    const missing: string[] = [];
    while (existing !== "/" && !(await existsInContainer(container, existing))) {
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
  }

  /** The home directory of the image's user, as its jobs see it ($HOME). */
  private async home(container: Docker.Container): Promise<string> {
    if (this.homeDir) return this.homeDir;
    const { code, text: home } = await execCapture(container, ["/bin/sh", "-c", 'printf %s "${HOME:-/}"']);
    if (code !== 0 || !path.posix.isAbsolute(home)) throw new Error(`$HOME is ${JSON.stringify(home)} (exit status ${code})`);
    this.homeDir = home;
    return home;
  }

  async collect(file: string): Promise<Readable> {
    let container: Docker.Container, settings: ContainerSettings;
    try {
      ({ container, settings } = this.requireContainer());
    } catch (err) {
      throw new CollectError("failed", (err as Error).message);
    }
    if (file === "" || file.includes("\0")) throw new CollectError("failed", `invalid artifact path ${JSON.stringify(file)}`);
    // The container is thrown away: any path in it may be collected, as in Djinn.
    let target: string;
    try {
      target = file === "~" || file.startsWith("~/") ? path.posix.join(await this.home(container), file.slice(1)) : path.posix.resolve(settings.workspace, file);
    } catch (err) {
      throw new CollectError("failed", `cannot find the home directory in the container: ${dockerMessage(err)}`);
    }
    const real = await this.resolveArtifact(container, settings.workspace, target, file);
    let archive: Readable;
    try {
      archive = (await container.getArchive({ path: real })) as unknown as Readable;
    } catch (err) {
      if (statusCode(err) === 404) throw new CollectError("missing", `${file} does not exist`);
      throw new CollectError("failed", `cannot read ${file}: ${dockerMessage(err)}`);
    }
    const { entry, body } = await openFirstEntry(archive).catch((err: Error) => {
      throw new CollectError("failed", `cannot read ${file}: ${err.message}`);
    });
    if (entry.type !== "file") {
      body.destroy();
      throw new CollectError("not-a-file", `${file} changed into a ${entry.type} while it was collected`);
    }
    return body;
  }

  /** The paths a shell pattern matches in the container (see artifacts.ts). */
  async glob(pattern: string): Promise<string[]> {
    let container: Docker.Container, settings: ContainerSettings;
    try {
      ({ container, settings } = this.requireContainer());
    } catch (err) {
      throw new CollectError("failed", (err as Error).message);
    }
    let r: { code: number; text: string };
    try {
      r = await execCapture(container, ["/bin/sh", "-c", GLOB_SCRIPT, "sh", settings.workspace, pattern]);
    } catch (err) {
      throw new CollectError("failed", `cannot expand ${pattern} in the container: ${dockerMessage(err)}`);
    }
    if (r.code !== 0) throw new CollectError("failed", `cannot expand ${pattern} in the container (exit status ${r.code})`);
    return parseGlobOutput(r.text);
  }

  /** The artifact's real path, symlinks resolved inside the container where they point. */
  private async resolveArtifact(container: Docker.Container, workspace: string, target: string, file: string): Promise<string> {
    let code: number, text: string;
    try {
      ({ code, text } = await execCapture(container, ["/bin/sh", "-c", RESOLVE_ARTIFACT_SCRIPT, "sh", workspace, target]));
    } catch (err) {
      throw new CollectError("failed", `cannot look at ${file} in the container: ${dockerMessage(err)}`);
    }
    const nl = text.indexOf("\n");
    const real = nl === -1 ? undefined : { workspace: text.slice(0, nl), path: text.slice(nl + 1) };
    if (code === 4) throw new CollectError("missing", `${file} does not exist`);
    if (code === 6) throw new CollectError("not-a-file", `${file} is not a regular file`);
    if (code !== 0 || !real) throw new CollectError("failed", `cannot resolve ${file} in the container (readlink -f exit status ${code})`);
    return real.path;
  }

  /** The directory a cache base is in the container: the workspace, or the image user's home. */
  private async baseDir(base: TarBase): Promise<{ container: Docker.Container; dir: string }> {
    const { container, settings } = this.requireContainer();
    if (base === "workspace") return { container, dir: settings.workspace };
    try {
      return { container, dir: await this.home(container) };
    } catch (err) {
      throw new DriverError(`cannot find the home directory in the container: ${dockerMessage(err)}`);
    }
  }

  async packTar(base: TarBase, paths: string[]): Promise<PackedTar> {
    const { container, dir } = await this.baseDir(base);
    return packPaths(container, dir, paths);
  }

  async unpackTar(base: TarBase, archive: Readable): Promise<void> {
    const { container, dir } = await this.baseDir(base);
    return unpackInto(container, dir, archive);
  }

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

/** Removes every container and volume labelled with the run of the build, whoever made them. */
export async function reapBuild(docker: Docker, dead: RunRef): Promise<{ containers: number; volumes: number }> {
  const buildId = dead.buildId;
  const filters = JSON.stringify({ label: [`${LABEL_BUILD}=${buildId}`, `${LABEL_RUN}=${dead.run}`] });
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
  // Podman (4.x) lists a volume that has ANY of the labels asked for, Docker one that has all:
  // only the run's own are removed.
  const own = (volumes ?? []).filter((v) => v.Labels?.[LABEL_BUILD] === buildId && v.Labels?.[LABEL_RUN] === dead.run);
  for (const v of own) {
    await docker.getVolume(v.Name).remove().catch((err) => {
      if (statusCode(err) !== 404) failures.push(`volume ${v.Name}: ${dockerMessage(err)}`);
    });
  }
  if (failures.length) throw new DriverError(`build ${buildId}: cannot remove ${failures.join("; ")}`);
  return { containers: containers.length, volumes: own.length };
}

registerDriver({
  name: "docker",
  create: (options) => new DockerDriver(options),
  reap: async (dead, config, log) => {
    const removed = await reapBuild(dockerClient(dockerConfigOf(config)), dead);
    if (removed.containers || removed.volumes) log.info({ buildId: dead.buildId, run: dead.run, ...removed }, "removed what the build left in Docker");
  },
  check: checkEngine,
});
