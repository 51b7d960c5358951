// What the docker suites share: is an engine answering, a busybox test image built offline (never
// pulled), and a look through the API at what a build left behind.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import Docker from "dockerode";
import type { DockerConfig } from "../../internal/config/config.js";
import { dockerClient, LABEL_BUILD, LABEL_RUN } from "../../internal/driver/docker/docker.js";
import { requireService, which } from "./env.js";

/** The engine the suites use; DJINN_TEST_DOCKER_HOST overrides the default socket. */
export const dockerHost = process.env.DJINN_TEST_DOCKER_HOST ?? "unix:///var/run/docker.sock";

export function dockerTestConfig(overrides: Partial<DockerConfig> = {}): DockerConfig {
  return { host: dockerHost, pull: "if-not-present", network: "bridge", pull_timeout: 30_000, ...overrides };
}

export const docker: Docker = dockerClient(dockerTestConfig());

const BUSYBOX = "/bin/busybox";

async function missingReason(): Promise<string | undefined> {
  try {
    await (docker as unknown as { ping(o: object): Promise<unknown> }).ping({ abortSignal: AbortSignal.timeout(5000) });
  } catch (err) {
    return `no Docker engine answers at ${dockerHost} (${(err as Error).message}); start dockerd`;
  }
  if (!which("docker")) return "the docker CLI is not installed (package docker.io)";
  if (!existsSync(BUSYBOX)) return `${BUSYBOX} not found (package busybox-static)`;
  if (spawnSync("ldd", [BUSYBOX]).status === 0) return `${BUSYBOX} is dynamically linked: install busybox-static`;
  return undefined;
}

/** The `skip` option for a docker suite (throws under DJINN_TEST_REQUIRE=all when the engine is missing). */
export const dockerSkip = requireService("docker", await missingReason());

function run(cmd: string, args: string[], input?: Buffer, env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { input, env, encoding: "utf8", maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/**
 * A busybox image imported from a rootfs made here (busybox-static and a link per applet, /tmp,
 * /etc/passwd): no registry. Tagged by the busybox binary's hash, so it is built once per engine.
 * `engine` and `host` name another engine speaking Docker's API (Podman) than the suites' own.
 */
export async function busyboxImage(engine: Docker = docker, host: string = dockerHost): Promise<string> {
  const hash = createHash("sha256").update(readFileSync(BUSYBOX)).digest("hex").slice(0, 12);
  const tag = `djinn-test/busybox:${hash}`;
  try {
    await engine.getImage(tag).inspect();
    return tag;
  } catch {
    // Not built yet.
  }
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-busybox-"));
  try {
    for (const dir of ["bin", "etc", "root", "tmp", "proc", "sys", "dev"]) await fs.mkdir(path.join(root, dir));
    await fs.chmod(path.join(root, "tmp"), 0o1777);
    await fs.copyFile(BUSYBOX, path.join(root, "bin", "busybox"));
    await fs.chmod(path.join(root, "bin", "busybox"), 0o755);
    const applets = run(BUSYBOX, ["--list"]).split("\n").filter((a) => /^[\w.[-]+$/.test(a) && a !== "busybox");
    for (const applet of applets) await fs.symlink("busybox", path.join(root, "bin", applet));
    await fs.writeFile(path.join(root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    await fs.writeFile(path.join(root, "etc", "group"), "root:x:0:\n");
    const tar = spawnSync("tar", ["-C", root, "--numeric-owner", "--owner=0", "--group=0", "-c", "."], { maxBuffer: 64 << 20 });
    if (tar.status !== 0) throw new Error(`tar: ${tar.stderr}`);
    run("docker", ["import", "--change", "ENV PATH=/bin", "-", tag], tar.stdout, { ...process.env, DOCKER_HOST: host });
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
  return tag;
}

/** Containers and volumes still labelled with `buildId` (and `run`, when given), by id/name. */
export async function leftovers(buildId: string, run?: string, engine: Docker = docker): Promise<{ containers: string[]; volumes: string[] }> {
  const filters = JSON.stringify({ label: [`${LABEL_BUILD}=${buildId}`, ...(run ? [`${LABEL_RUN}=${run}`] : [])] });
  const containers = await engine.listContainers({ all: true, filters });
  const { Volumes } = await engine.listVolumes({ filters });
  // Podman lists a volume with any of the labels, Docker one with all of them.
  const own = (Volumes ?? []).filter((v) => v.Labels?.[LABEL_BUILD] === buildId && (!run || v.Labels?.[LABEL_RUN] === run));
  return { containers: containers.map((c) => c.Id), volumes: own.map((v) => v.Name) };
}

/** Removes an image tag quietly (tests that must not find an image). */
export async function removeImage(name: string): Promise<void> {
  await docker.getImage(name).remove({ force: true }).catch(() => undefined);
}
