// worker.toml and driver.toml: the only place in the worker that reads TOML.
import os from "node:os";
import { engineAddress, hostAndPort, listenAddress } from "../net/address.js";
import { parallelismWarning } from "./sanity.js";
import { ConfigError, applySchema, readToml, type SectionSpec } from "./schema.js";

export { ConfigError } from "./schema.js";

/** The arch name qemu uses for this host (qemu-system-<arch>). */
export function hostQemuArch(): string {
  const map: Record<string, string> = { x64: "x86_64", arm64: "aarch64", arm: "arm", ia32: "i386", ppc64: "ppc64", s390x: "s390x", riscv64: "riscv64" };
  return map[process.arch] ?? process.arch;
}

/** The largest manifest read by default (`manifest_limit`): parsing one is quick, and its plan fits in memory. */
export const DEFAULT_MANIFEST_LIMIT = 1024 * 1024;

const fileStore = (what: string, extra: SectionSpec["keys"] = {}): SectionSpec => ({
  keys: {
    type: { kind: "string", default: "file", oneOf: ["file"], doc: `Store type for ${what}; only "file" exists.` },
    path: { kind: "string", required: true, doc: `Directory that holds ${what}.` },
    ...extra,
  },
});

function checkDriverName(value: string): string | undefined {
  if (value === "*" || value === "docker" || value === "os" || value === "ssh") return undefined;
  const qemu = /^qemu(?:-(.*))?$/.exec(value);
  if (qemu) {
    const want = hostQemuArch();
    if (qemu[1] === want) return undefined;
    return `the qemu driver must name this host's arch: use "qemu-${want}"${qemu[1] ? `, not "${value}"` : ""}`;
  }
  return `unknown driver ${JSON.stringify(value)}: must be one of "docker", "qemu-${hostQemuArch()}", "ssh", "os" or "*" (every driver configured in the driver file)`;
}

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

export const workerSchema: SectionSpec = {
  keys: {
    parallelism: { kind: "integer", default: 0, min: 0, doc: "Builds run at once; 0 = number of CPUs." },
    driver: { kind: "string", default: "*", check: checkDriverName, doc: 'Driver whose queue this worker serves: docker, qemu-<host arch>, ssh, os, or "*" for every driver in driver.toml.' },
    queue: { kind: "string", default: "builds", check: (v) => (v.trim() === "" ? "must not be empty" : undefined), doc: "Queue name prefix; the lists are <queue>_<driver>." },
    timeout: { kind: "duration", default: "30m", doc: 'Longest a build may run before it is timed_out ("0" = no limit).' },
    pidfile: { kind: "string", doc: "File the daemon writes its pid to." },
    lease: { kind: "duration", default: "30s", min: 1000, doc: "How long a taken build stays claimed without a heartbeat before another worker recovers it." },
    shutdown_timeout: { kind: "duration", default: "5m", doc: "On SIGTERM, how long running builds may finish before they are killed and re-queued." },
    output_limit: { kind: "integer", default: 0, min: 0, doc: "Most bytes of output stored per job (0 = no limit); the rest is dropped with a note." },
    manifest_limit: { kind: "integer", default: DEFAULT_MANIFEST_LIMIT, min: 1, doc: "Most bytes a build manifest may have (submit, and the worker before it parses one); a larger one is refused." },
    providers: { kind: "ignored", why: "Git providers are for Djinn's server (sign-in, webhooks); a worker talks to none", doc: "Djinn's [[providers]] tables (name, secret, client_id, client_secret): accepted and ignored." },
  },
  sections: {
    crypto: {
      keys: {
        block: { kind: "string", required: true, secret: true, check: (v) => ([16, 24, 32].includes(Buffer.byteLength(v)) ? undefined : `must be 16, 24 or 32 characters long, got ${Buffer.byteLength(v)}`), doc: "AES key (16, 24 or 32 characters) for masked variables and keys in the database." },
        salt: { kind: "ignored", why: "Djinn's server uses it for the ids in its URLs; the worker needs only the block key", doc: "Djinn's hash-id salt: accepted and ignored." },
      },
    },
    smtp: {
      keys: {
        addr: { kind: "string", required: true, check: (v) => (hostAndPort(v) ? undefined : `must be host:port, e.g. "127.0.0.1:25", got ${JSON.stringify(v)}`), doc: "SMTP server host:port." },
        ca: { kind: "string", doc: "CA bundle; when set, STARTTLS is required and verified against it." },
        admin: { kind: "string", required: true, doc: "From address of failure mail." },
        username: { kind: "string", doc: "SMTP AUTH user." },
        password: { kind: "string", secret: true, doc: "SMTP AUTH password." },
      },
    },
    database: {
      keys: {
        addr: { kind: "string", required: true, doc: "PostgreSQL host:port." },
        name: { kind: "string", required: true, doc: "Database name." },
        username: { kind: "string", required: true, doc: "Database user." },
        password: { kind: "string", default: "", secret: true, doc: "Database password." },
      },
      sections: {
        ssl: {
          keys: {
            ca: { kind: "string", doc: "CA certificate to verify the server." },
            cert: { kind: "string", doc: "Client certificate." },
            key: { kind: "string", doc: "Client key." },
          },
        },
      },
    },
    redis: {
      keys: {
        addr: { kind: "string", required: true, doc: "Redis host:port." },
        password: { kind: "string", secret: true, doc: "Redis AUTH password." },
        db: { kind: "integer", default: 0, min: 0, doc: "Redis database number." },
      },
    },
    images: fileStore("base images (<path>/<driver>/_base/...)", { limit: { kind: "ignored", why: "it limits image uploads to Djinn's server; the worker only reads images", doc: "Djinn's upload limit for images: accepted and ignored." } }),
    artifacts: fileStore("collected artifacts", { limit: { kind: "integer", default: 0, min: 0, doc: "Bytes collected per artifact file at most; 0 = unlimited." } }),
    objects: fileStore("objects placed into builds", { limit: { kind: "ignored", why: "it limits object uploads to Djinn's server; the worker only reads objects", doc: "Djinn's upload limit for objects: accepted and ignored." } }),
    log: {
      keys: {
        level: { kind: "string", default: "info", oneOf: ["debug", "info", "warn", "error"], caseInsensitive: true, doc: "Log level: debug, info, warn or error, in any case." },
        file: { kind: "string", doc: "Log file; standard output when unset." },
      },
    },
    web: {
      keys: {
        addr: { kind: "string", required: true, check: (v) => (listenAddress(v) ? undefined : `must be host:port or :port with a port of 0-65535, e.g. "127.0.0.1:8080", got ${JSON.stringify(v)}`), doc: "host:port the web process (djinn-worker web) listens on." },
        public: { kind: "boolean", default: true, doc: "Viewing needs no sign-in (the only mode for now: sign-in is not done yet)." },
      },
    },
    metrics: { keys: { addr: { kind: "string", required: true, check: (v) => (listenAddress(v) ? undefined : `must be host:port or :port with a port of 0-65535, e.g. "127.0.0.1:9110", got ${JSON.stringify(v)}`), doc: "host:port for /metrics and /healthz." } } },
  },
};

export const driverSchema: SectionSpec = {
  keys: {},
  sections: {
    docker: {
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
    },
    qemu: {
      keys: {
        disks: { kind: "string", doc: "Directory of base images for `run` (the daemon uses <images.path>/qemu/_base/<arch>)." },
        cpus: { kind: "integer", default: 1, min: 1, doc: "Virtual CPUs per machine." },
        memory: { kind: "integer", default: 2048, min: 16, doc: "Memory per machine in MB (qemu -m)." },
        accel: { kind: "string", default: "auto", oneOf: ["auto", "kvm", "tcg"], doc: "Acceleration; auto = KVM when it works, else TCG." },
        boot_timeout: { kind: "duration", default: "5m", doc: "How long to wait for the machine's SSH to answer." },
        key: { kind: "string", doc: "Private key for root in the guest; none = Djinn's empty-password root." },
        disk_interface: { kind: "string", default: "virtio", oneOf: ["virtio", "ide"], doc: "Disk interface for images without virtio drivers." },
        net_device: { kind: "string", default: "virtio-net-pci", doc: "NIC model (virtio-net-pci, e1000, ...)." },
      },
    },
    ssh: {
      keys: {
        timeout: { kind: "duration", default: "60s", integerSeconds: true, doc: 'How long to keep trying to connect: a duration ("60s") or a whole number of seconds (60).' },
        user: { kind: "string", default: "root", doc: "User to log in as." },
        key: { kind: "string", doc: "Private key file." },
        password: { kind: "string", secret: true, doc: "Password for password authentication (tried after the key, when both are set)." },
      },
    },
    os: { keys: {} },
  },
};

export interface StoreConfig {
  type: "file";
  path: string;
}

export interface WorkerConfig {
  file: string;
  parallelism: number;
  driver: string;
  queue: string;
  timeoutMs: number;
  pidfile?: string;
  leaseMs: number;
  shutdownTimeoutMs: number;
  outputLimit: number;
  /** Most bytes of a manifest, checked before it is parsed. */
  manifestLimit: number;
  crypto?: { block: string };
  smtp?: { addr: string; ca?: string; admin: string; username?: string; password?: string };
  database?: { addr: string; name: string; username: string; password: string; ssl?: { ca?: string; cert?: string; key?: string } };
  redis?: { addr: string; password?: string; db: number };
  images?: StoreConfig;
  artifacts?: StoreConfig & { limit: number };
  objects?: StoreConfig;
  log: { level: "debug" | "info" | "warn" | "error"; file?: string };
  metrics?: { addr: string };
  web?: { addr: string; public: boolean };
  warnings: string[];
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

export interface QemuConfig {
  disks?: string;
  cpus: number;
  memory: number;
  accel: "auto" | "kvm" | "tcg";
  bootTimeoutMs: number;
  key?: string;
  disk_interface: "virtio" | "ide";
  net_device: string;
}

export interface SshConfig {
  timeoutMs: number;
  user: string;
  key?: string;
  password?: string;
}

export interface DriverConfig {
  file?: string;
  docker?: DockerConfig;
  qemu?: QemuConfig;
  ssh?: SshConfig;
  os?: Record<string, never>;
  warnings: string[];
}

export function loadWorkerConfig(file: string): WorkerConfig {
  const { text, data } = readToml(file);
  const { values: v, warnings } = applySchema(file, text, data, workerSchema);
  const cfg = {
    ...v,
    timeoutMs: v.timeout,
    leaseMs: v.lease,
    shutdownTimeoutMs: v.shutdown_timeout,
    outputLimit: v.output_limit,
    manifestLimit: v.manifest_limit,
    log: v.log ?? { level: "info" },
    parallelism: (v.parallelism as number) === 0 ? os.availableParallelism() : v.parallelism,
    file,
    warnings,
  } as unknown as WorkerConfig;
  const absurd = parallelismWarning(file, text, cfg.parallelism, os.availableParallelism());
  if (absurd) warnings.push(absurd);
  for (const k of ["timeout", "lease", "shutdown_timeout", "output_limit", "manifest_limit"]) delete (cfg as unknown as Record<string, unknown>)[k];
  return cfg;
}

export function loadDriverConfig(file: string): DriverConfig {
  const { text, data } = readToml(file);
  const { values: v, warnings } = applySchema(file, text, data, driverSchema);
  const cfg: DriverConfig = { file, warnings };
  if (v.docker) cfg.docker = v.docker as DockerConfig;
  if (v.os) cfg.os = {};
  if (v.ssh) {
    const s = v.ssh as Record<string, unknown>;
    cfg.ssh = { timeoutMs: s.timeout as number, user: s.user as string, key: s.key as string | undefined, password: s.password as string | undefined };
  }
  if (v.qemu) {
    const q = v.qemu as Record<string, unknown>;
    const { boot_timeout, ...rest } = q;
    cfg.qemu = { ...(rest as Omit<QemuConfig, "bootTimeoutMs">), bootTimeoutMs: boot_timeout as number };
  }
  return cfg;
}

/** The driver.toml used when `run` is given none: only the os driver, which needs no settings. */
export function defaultDriverConfig(): DriverConfig {
  return { os: {}, warnings: [] };
}

/** Fails with one clear line when a section the daemon needs is absent. */
export function requireSections(worker: WorkerConfig, ...names: ("crypto" | "database" | "redis" | "artifacts" | "objects" | "images")[]): void {
  for (const name of names) {
    if (!worker[name]) throw new ConfigError(worker.file, undefined, undefined, `[${name}] section is required`);
  }
}
