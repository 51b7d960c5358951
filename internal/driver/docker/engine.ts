// The Docker engine as the driver reaches it: a client for driver.toml's `host`, calls bounded in
// time, and the engine's errors as one line.
import os from "node:os";
import Docker from "dockerode";
import { dockerSection, isDockerApiVersion, type DockerConfig } from "./section.js";
import { settingsIn, type DriverSettings } from "../section.js";
import { DriverError } from "../driver.js";
import { systemReason } from "../../errors/errors.js";
import { engineAddress } from "../../net/address.js";
import { deadline } from "../../timers/timers.js";

/** How long a ping or version call may take before the engine counts as not answering. */
export const CHECK_TIMEOUT_MS = 5000;

/** A Docker client for driver.toml's `host` (unix:///path, tcp://host:port, http(s)://host:port). */
export function dockerClient(config: DockerConfig): Docker {
  const address = engineAddress(config.host);
  if (!address) throw new DriverError(`[docker] host ${JSON.stringify(config.host)}: must be unix:///path or tcp://host:port`);
  // driver.toml's reader checks it too; the version becomes a path segment of every request, so nothing else may pass.
  if (config.version !== undefined && !isDockerApiVersion(config.version)) throw new DriverError(`[docker] version ${JSON.stringify(config.version)}: must be a Docker API version such as "1.41"`);
  const version = config.version ? `v${config.version}` : undefined;
  return new Docker({ ...address, version });
}

export function dockerConfigOf(config: DriverSettings): DockerConfig {
  const docker = settingsIn(dockerSection, config);
  if (!docker) throw new DriverError("the docker driver is not configured: add a [docker] section to the driver file");
  return docker;
}

/** dockerode takes an abortSignal option where its types do not say so. */
interface Abortable {
  ping(opts: { abortSignal: AbortSignal }): Promise<unknown>;
  version(opts: { abortSignal: AbortSignal }): Promise<Docker.DockerVersion>;
}

export function statusCode(err: unknown): number | undefined {
  return (err as { statusCode?: number }).statusCode;
}

/** Docker's error text without dockerode's "(HTTP code 404) no such container - " prefix; a failed connection in the shared words. */
export function dockerMessage(err: unknown): string {
  const e = err as { json?: { message?: string }; message?: string; code?: string };
  const reason = systemReason(e.code);
  if (reason && !e.json) return reason;
  return (e.json?.message ?? e.message ?? String(err)).replace(/^\(HTTP code \d+\)\s*/, "").trim();
}

/**
 * Why the engine did not answer. A socket this user may not open says what to do: the usual
 * cause is a `docker` group made after the user (group membership is read when a process starts).
 */
export function unreachableReason(err: unknown, host: string): string {
  const reason = dockerMessage(err);
  if ((err as { code?: string }).code !== "EACCES" || !host.startsWith("unix://")) return reason;
  const user = os.userInfo().username;
  return `${reason}: ${user} may not use the socket; add ${user} to the socket's group (adduser ${user} docker) and start the worker again`;
}

/** Resolves when the engine answers a ping within CHECK_TIMEOUT_MS. */
export async function pingEngine(docker: Docker, host: string): Promise<void> {
  const bound = deadline(CHECK_TIMEOUT_MS);
  try {
    await (docker as unknown as Abortable).ping({ abortSignal: bound.signal });
  } catch (err) {
    throw new DriverError(`the Docker engine at ${host} does not answer: ${bound.signal.aborted ? `no answer within ${CHECK_TIMEOUT_MS} ms` : unreachableReason(err, host)}`);
  } finally {
    bound.clear();
  }
}

/** Lines for `djinn-worker check`: the engine's version and API version. */
export async function checkEngine(config: DriverSettings): Promise<string[]> {
  const docker = dockerConfigOf(config);
  const client = dockerClient(docker);
  const bound = deadline(CHECK_TIMEOUT_MS);
  try {
    const version = await (client as unknown as Abortable).version({ abortSignal: bound.signal });
    return [`docker: engine ${version.Version} at ${docker.host}, API ${version.ApiVersion}`];
  } catch (err) {
    // check prefixes the driver's name: "FAIL docker: the engine at ...".
    throw new DriverError(`the engine at ${docker.host} does not answer: ${bound.signal.aborted ? `no answer within ${CHECK_TIMEOUT_MS} ms` : unreachableReason(err, docker.host)}`);
  } finally {
    bound.clear();
  }
}
