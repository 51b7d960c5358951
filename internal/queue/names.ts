// The names of the queue protocol (docs/queue.md), in one place: the Redis keys and channels built
// from the installation's prefix ([redis] queue in worker.toml), and which queue serves which driver.
import { hostQemuArch } from "../config/config.js";

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
export function buildIdOfKillChannel(channel: string): number | undefined {
  const m = /^kill-(\d+)$/.exec(channel);
  return m ? Number(m[1]) : undefined;
}

/** The queue a manifest's driver type is served on: qemu → qemu-<this host's arch>. */
export function queueDriverOf(type: string): string {
  return type === "qemu" ? `qemu-${hostQemuArch()}` : type;
}

/** The manifest driver type of a queue name: qemu-x86_64 → qemu. */
export function driverTypeOfQueue(queueDriver: string): string {
  return queueDriver.startsWith("qemu") ? "qemu" : queueDriver;
}
