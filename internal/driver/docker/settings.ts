// The pure part of the docker driver: a build's container settings (the manifest's driver map
// checked against driver.toml), image references, labels and the container the engine is asked
// for. Nothing here talks to an engine.
import path from "node:path";
import type Docker from "dockerode";
import { imageReferenceProblem } from "./reference.js";
import { DEFAULT_PIDS, MIN_CPUS, type DockerConfig } from "./section.js";
import type { RunRef } from "../run.js";
import { DriverError } from "../driver.js";

export const LABEL_BUILD = "djinn.build";
export const LABEL_WORKER = "djinn.worker";
/** The run token (../run.ts): reap removes what carries the dead run's token, never another run's. */
export const LABEL_RUN = "djinn.run";
export const DEFAULT_WORKSPACE = "/workspace";

/** The build's container settings: the manifest's driver map checked against driver.toml. */
export interface ContainerSettings {
  image: string;
  workspace: string;
  /** 0 = no limit. */
  cpus: number;
  /** MB; 0 = no limit. */
  memoryMb: number;
  /** Processes the container may have at once; always a limit. */
  pids: number;
  network: string;
}

/** The repository and tag of a reference, as the tag API takes them; no tag means `latest`. */
export function repositoryAndTag(image: string): { repo: string; tag: string } {
  const at = image.lastIndexOf(":");
  const hasTag = at > image.lastIndexOf("/");
  return { repo: hasTag ? image.slice(0, at) : image, tag: hasTag ? image.slice(at + 1) : "latest" };
}

function parseCpus(value: string): number {
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(Number(value) > 0)) throw new DriverError(`driver.cpus: expected a number of CPUs such as "2" or "0.5", got ${JSON.stringify(value)}`);
  // Refused, not raised: below the engine's floor the request would reach it as no limit at all.
  if (Number(value) < MIN_CPUS) throw new DriverError(`driver.cpus: ${value.trim()} is less than the least a container can be given (${MIN_CPUS})`);
  return Number(value);
}

function parsePids(value: string): number {
  if (!/^\d+$/.test(value.trim()) || !(Number(value) > 0)) throw new DriverError(`driver.pids: expected a number of processes such as "512", got ${JSON.stringify(value)}`);
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

function workspaceOf(manifest: Record<string, string>): string {
  const workspace = manifest.workspace ?? DEFAULT_WORKSPACE;
  if (!workspace.startsWith("/") || path.posix.normalize(workspace) !== workspace.replace(/\/+$/, "") || workspace === "/" || /[\0\n]/.test(workspace)) {
    throw new DriverError(`driver.workspace: expected an absolute path other than / such as /workspace, got ${JSON.stringify(workspace)}`);
  }
  return workspace.replace(/\/+$/, "");
}

export function containerSettings(manifest: Record<string, string>, config: DockerConfig): ContainerSettings {
  const image = (manifest.image ?? "").trim();
  if (!image) throw new DriverError("driver.image: required by the docker driver");
  // The manifest refused it already; a build row written by another producer reaches here unread.
  const problem = imageReferenceProblem(image);
  if (problem) throw new DriverError(`driver.image: ${problem}`);
  return {
    image,
    workspace: workspaceOf(manifest),
    cpus: limit(manifest.cpus !== undefined ? parseCpus(manifest.cpus) : undefined, config.cpus, config.max_cpus, "cpus", "max_cpus", ""),
    memoryMb: limit(manifest.memory !== undefined ? parseMemoryMb(manifest.memory) : undefined, config.memory, config.max_memory, "memory", "max_memory", " MB"),
    pids: limit(manifest.pids !== undefined ? parsePids(manifest.pids) : undefined, config.pids ?? DEFAULT_PIDS, config.max_pids, "pids", "max_pids", " processes"),
    network: config.network || "bridge",
  };
}

/** "2 CPUs, 512 MB memory, 1024 processes, network bridge", for the build's output. */
export function describeLimits(settings: ContainerSettings): string {
  return [
    settings.cpus ? `${settings.cpus} CPUs` : "no CPU limit",
    settings.memoryMb ? `${settings.memoryMb} MB memory` : "no memory limit",
    `${settings.pids} processes`,
    `network ${settings.network}`,
  ].join(", ");
}

/** Every container and volume of a run of a build carries these, so destroy and reap can find them. */
export function buildLabels(ref: RunRef): Record<string, string> {
  return { [LABEL_BUILD]: ref.buildId, [LABEL_RUN]: ref.run, [LABEL_WORKER]: "1" };
}

/** The name of a build's container and volume: the build id made safe, and a random part. */
export function resourceName(buildId: string, random: string): string {
  return `djinn-${buildId.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 64)}-${random}`;
}

export interface ContainerNames {
  name: string;
  volume: string;
  labels: Record<string, string>;
  env: string[];
}

/** The container the engine is asked to create: long-lived, idle, limited, unprivileged, with only the build's volume. */
export function containerOptions(settings: ContainerSettings, names: ContainerNames): Docker.ContainerCreateOptions {
  const memory = settings.memoryMb * 1024 * 1024;
  return {
    name: names.name,
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
    Env: names.env,
    Labels: names.labels,
    HostConfig: {
      Mounts: [{ Type: "volume", Source: names.volume, Target: settings.workspace }],
      NanoCpus: Math.round(settings.cpus * 1e9),
      Memory: memory,
      // No swap beyond the limit, so a limit is a limit.
      MemorySwap: memory ? memory : 0,
      // Every container has one, so a fork bomb stops inside it.
      PidsLimit: settings.pids,
      NetworkMode: settings.network,
      Privileged: false,
      Binds: [],
      AutoRemove: false,
    },
  };
}

/** Longest script passed as an argument; the kernel refuses single arguments over 128 KiB. */
export const MAX_INLINE_SCRIPT = 96 * 1024;
/** Where scripts too long for an argument are written, in the container's own filesystem. */
export const SCRIPT_DIR = "/.djinn";

/**
 * The command of a job. One pipe for both streams, so the trace (stderr) and the output keep the
 * order they were written in. A script too long for an argument is run from `scriptFile`, which
 * the caller writes first.
 */
export function jobCommand(script: string, scriptFile: string): { cmd: string[]; inline: boolean } {
  if (Buffer.byteLength(script) <= MAX_INLINE_SCRIPT) return { cmd: ["/bin/sh", "-c", `exec 2>&1\n${script}`], inline: true };
  return { cmd: ["/bin/sh", "-c", 'exec 2>&1; exec /bin/sh "$0"', scriptFile], inline: false };
}

/** Prints the count of OOM kills in the container's memory cgroup (v2 memory.events or v1 memory.oom_control), with shell built-ins only. */
export const OOM_KILL_COUNT_SCRIPT = 'for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do if [ -r "$f" ]; then while read k v; do [ "$k" = oom_kill ] && echo "$v"; done < "$f"; exit 0; fi; done';

/**
 * Resolves the workspace ($1) and an artifact ($2) inside the container, where symlinks point;
 * prints both. Exit 4: missing; 5: cannot resolve; 6: not a regular file.
 */
export const RESOLVE_ARTIFACT_SCRIPT = [
  'w=$(readlink -f -- "$1") || exit 5',
  'if [ ! -e "$2" ]; then p=$(readlink -f -- "$2" 2>/dev/null) || exit 4; [ -n "$p" ] || exit 4; printf "%s\\n%s" "$w" "$p"; exit 4; fi',
  'p=$(readlink -f -- "$2") || exit 5',
  'printf "%s\\n%s" "$w" "$p"',
  '[ -f "$p" ] || exit 6',
].join("\n");
