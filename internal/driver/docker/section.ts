// The [docker] section of driver.toml: its keys, defaults and typed settings. Engine-free: the
// engine modules import their settings from here.
import type { SectionSpec } from "../../settings/spec.js";
import { engineAddress } from "../../net/address.js";
import type { DriverSection } from "../section.js";

/** The least CPUs a container can be limited to: the engine's floor (a NanoCpus period of 10 ms in 1 s). */
export const MIN_CPUS = 0.01;
/** Processes a build container may have when driver.toml does not say: enough for any build, too few for a fork bomb to starve the host. */
export const DEFAULT_PIDS = 1024;

/** "1.41" and the like: the only shape of a Docker API version, which becomes a path segment of every request. */
export function isDockerApiVersion(value: string): boolean {
  return /^1\.[0-9]{1,3}$/.test(value);
}

/** 0 (no limit) or at least MIN_CPUS: a smaller limit would reach the engine as no limit at all. */
function checkCpus(value: number): string | undefined {
  return value === 0 || value >= MIN_CPUS ? undefined : `must be 0 (no limit) or at least ${MIN_CPUS} CPUs, got ${value}`;
}

export interface DockerConfig {
  host: string;
  version?: string;
  pull: "always" | "if-not-present" | "never";
  cpus?: number;
  memory?: number;
  max_cpus?: number;
  max_memory?: number;
  /** Processes a container may have; DEFAULT_PIDS when unset. */
  pids?: number;
  max_pids?: number;
  network: string;
  /** Longest an image pull may take, in ms. */
  pull_timeout?: number;
}

const spec: SectionSpec = {
  keys: {
    host: { kind: "string", default: "unix:///var/run/docker.sock", check: (v) => (engineAddress(v) ? undefined : `must be unix:///path or tcp://host:port, got ${JSON.stringify(v)}`), doc: "Docker Engine address." },
    version: { kind: "string", check: (v) => (isDockerApiVersion(v) ? undefined : `must be a Docker API version such as "1.41", got ${JSON.stringify(v)}`), doc: 'Docker API version, e.g. "1.41"; negotiated when unset.' },
    pull: { kind: "string", default: "if-not-present", oneOf: ["always", "if-not-present", "never"], doc: "When to pull a build's image." },
    cpus: { kind: "number", min: 0, check: checkCpus, doc: `CPUs a build may use by default (0 = no limit; else at least ${MIN_CPUS}).` },
    memory: { kind: "integer", min: 0, doc: "Memory in MB a build may use by default (0 = no limit)." },
    max_cpus: { kind: "number", min: 0, check: checkCpus, doc: "Most CPUs a manifest may ask for." },
    max_memory: { kind: "integer", min: 0, doc: "Most memory in MB a manifest may ask for." },
    pids: { kind: "integer", default: DEFAULT_PIDS, min: 1, doc: "Most processes a build container may have at once, by default (a fork bomb stops there)." },
    max_pids: { kind: "integer", min: 1, doc: "Most processes a manifest may ask for." },
    network: { kind: "string", default: "bridge", doc: "Network mode of build containers." },
    pull_timeout: { kind: "duration", default: "5m", doc: "Longest an image pull may take before the build fails (an unreachable registry fails at once)." },
  },
};

export const dockerSection: DriverSection<"docker", DockerConfig> = {
  name: "docker",
  spec,
  settings: (values) => values as unknown as DockerConfig,
  shown: (settings) => ({ ...settings }),
};
