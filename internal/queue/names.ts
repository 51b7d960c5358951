// The names of the queue protocol (docs/queue.md), in one place: the Redis keys and channels built
// from the installation's prefix ([redis] queue in worker.toml), and which queue serves which driver.
import { ConfigError, type DriverConfig, type WorkerConfig } from "../config/config.js";
import { CATALOGUE, configuredDeclarations, DECLARATIONS, declaration } from "../driver/catalogue.js";
import { lineInFile } from "../config/schema.js";
import { asBuildId, type BuildId } from "./delivery.js";

/** The list a driver's builds wait on: `<prefix>_<queue driver>`, e.g. djinn_docker, djinn_qemu-x86_64. */
export const queueList = (prefix: string, queueDriver: string) => `${prefix}_${queueDriver}`;
/** Where unusable payloads go, with the reason. */
export const deadList = (prefix: string) => `${prefix}_dead`;
/** A worker's list of the builds it took from `list` and has not acknowledged yet. */
export const processingList = (list: string, worker: string) => `${list}:processing:${worker}`;
/** A worker's heartbeat, under a lease: gone = the worker is dead. */
export const heartbeatKey = (prefix: string, worker: string) => `${prefix}:worker:${worker}`;
/** Every worker of the installation and the lists it takes from. */
export const registryKey = (prefix: string) => `${prefix}:workers`;
/** Held by the one worker that sweeps for lost payloads, for one interval. */
export const healLockKey = (prefix: string) => `${prefix}:heal`;
/** The channel a kill request for a build is published on (Djinn's: `kill-<id>`). */
export const killChannel = (buildId: number | string) => `kill-${buildId}`;

/** The build a kill channel is for; undefined for any other channel. */
export function buildIdOfKillChannel(channel: string): BuildId | undefined {
  const m = /^kill-(\d+)$/.exec(channel);
  return m ? asBuildId(Number(m[1])) : undefined;
}

/** The queue a manifest's driver type is served on, by the driver's queue rule (qemu → qemu-<this host's arch>). */
export function queueDriverOf(type: string): string {
  return declaration(type)?.queue() ?? type;
}

/** The manifest driver type of a queue name this host serves: qemu-x86_64 → qemu. */
export function driverTypeOfQueue(queueDriver: string): string {
  return CATALOGUE.find((d) => d.queue() === queueDriver)?.section.name ?? queueDriver;
}

/**
 * The queue driver of `key` when it is a queue list of the installation `prefix`: `<prefix>_<queue
 * driver>` for a driver of the catalogue, served here or on another host (qemu-<any arch>). Not
 * the dead list, not a processing list, and not a list of another installation whose prefix
 * begins with this one's (`<prefix>_other_os`).
 */
export function queueDriverOfList(prefix: string, key: string): string | undefined {
  if (!key.startsWith(`${prefix}_`)) return undefined;
  const queue = key.slice(prefix.length + 1);
  return DECLARATIONS.some((d) => d.queue() === queue || d.misnamed?.(queue) !== undefined) ? queue : undefined;
}

/** Driver sections present in driver.toml, by queue name (qemu → qemu-<arch>). */
export function configuredDrivers(drivers: DriverConfig): string[] {
  return configuredDeclarations(drivers).map((d) => d.queue());
}

/** The queue names a worker serves: its `driver` key resolved against driver.toml. */
export function servedDrivers(worker: WorkerConfig, drivers: DriverConfig): string[] {
  const configured = configuredDrivers(drivers);
  if (worker.driver === "*") {
    if (configured.length === 0) throw new ConfigError(drivers.file ?? "driver.toml", undefined, undefined, `driver = "*" but no driver section (${CATALOGUE.map((d) => `[${d.section.name}]`).join(", ")}) is configured`);
    return configured;
  }
  if (!configured.includes(worker.driver)) {
    throw new ConfigError(worker.file, "driver", lineInFile(worker.file, "", "driver"), `driver ${JSON.stringify(worker.driver)} is not configured: add a [${driverTypeOfQueue(worker.driver)}] section to ${drivers.file ?? "the driver file"}`);
  }
  return [worker.driver];
}
