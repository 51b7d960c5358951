// worker.toml and driver.toml: the only place in the worker that reads TOML.
import os from "node:os";
import { hostAndPort, listenAddress } from "../net/address.js";
import { CATALOGUE, driverSections, type DriverConfig } from "../driver/catalogue.js";
import { parallelismWarning } from "./sanity.js";
import { ConfigError, SourceMap, applySchema, lineInFile, readToml } from "./schema.js";
import type { SectionSpec } from "../settings/spec.js";

export { ConfigError } from "./schema.js";
// What loadDriverConfig returns; each driver's settings are declared in its own folder.
export type { DriverConfig } from "../driver/catalogue.js";
export type { DockerConfig } from "../driver/docker/section.js";
export { hostQemuArch, type QemuConfig } from "../driver/qemu/section.js";
export type { SshConfig } from "../driver/ssh/section.js";

/** The largest manifest read by default (`manifest_limit`): parsing one is quick, and its plan fits in memory. */
export const DEFAULT_MANIFEST_LIMIT = 1024 * 1024;

const fileStore = (what: string, extra: SectionSpec["keys"] = {}): SectionSpec => ({
  keys: {
    type: { kind: "string", default: "file", oneOf: ["file"], doc: `Store type for ${what}; only "file" exists.` },
    path: { kind: "string", required: true, doc: `Directory that holds ${what}.` },
    ...extra,
  },
});

/** Why `value` is not a worker.toml `driver`: "*" or the queue name of a driver of the catalogue. */
function checkDriverName(value: string): string | undefined {
  if (value === "*" || CATALOGUE.some((d) => d.queue() === value)) return undefined;
  for (const d of CATALOGUE) {
    const problem = d.misnamed?.(value);
    if (problem) return problem;
  }
  return `unknown driver ${JSON.stringify(value)}: must be one of ${CATALOGUE.map((d) => JSON.stringify(d.queue())).join(", ")} or "*" (every driver configured in the driver file)`;
}

/** A server the worker connects to, host and port written out: without the port the mistake would show only as a refused connection. */
function serverAddr(example: string): (v: string) => string | undefined {
  return (v) => (hostAndPort(v) ? undefined : `must be host:port, e.g. "${example}", got ${JSON.stringify(v)}`);
}

/** Why `v` is not an http(s) URL a forge's API answers at, or undefined. */
function checkApiUrl(v: string): string | undefined {
  return /^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/.test(v) ? undefined : `must be an http:// or https:// URL without a query, e.g. "https://gitea.example.com/api/v1", got ${JSON.stringify(v)}`;
}

/** The forges whose pushes start builds (`djinn-worker web`, /hooks/<name>), and `git` for `djinn-worker trigger`. */
export const PROVIDER_NAMES = ["github", "gitlab", "gitea", "forgejo", "git"] as const;
export type ProviderName = (typeof PROVIDER_NAMES)[number];

/** One `[[providers]]` table, as Djinn's worker.toml writes it, plus what fetching a private repository needs. */
const providersSpec: SectionSpec = {
  keys: {
    name: { kind: "string", required: true, oneOf: PROVIDER_NAMES, caseInsensitive: true, doc: "github, gitlab, gitea (forgejo is the same), or git (djinn-worker trigger)." },
    secret: { kind: "string", secret: true, doc: "The webhook secret (GitLab: the secret token): required for github, gitlab, gitea and forgejo." },
    key: { kind: "string", secret: true, doc: "Private SSH key (the key itself; key_file reads it from a file) used to fetch private repositories." },
    key_object: { kind: "string", doc: "Name of the private SSH key in the object store ([objects] path), instead of key." },
    token: { kind: "string", secret: true, doc: "An API token of the forge: with it `djinn-worker web` posts each pushed build's status to its commit (docs/triggers.md)." },
    api_url: { kind: "string", check: checkApiUrl, doc: "The forge's API: default https://api.github.com (github), https://gitlab.com/api/v4 (gitlab); required for gitea and forgejo (https://host/api/v1)." },
    client_id: { kind: "ignored", why: "it is for sign-in through Djinn's server; webhooks need only the secret", doc: "Djinn's OAuth client id: accepted and ignored." },
    client_secret: { kind: "ignored", why: "it is for sign-in through Djinn's server; webhooks need only the secret", doc: "Djinn's OAuth client secret: accepted and ignored." },
  },
};

export const workerSchema: SectionSpec = {
  keys: {
    parallelism: { kind: "integer", default: 0, min: 0, doc: "Builds run at once; 0 = number of CPUs." },
    driver: { kind: "string", default: "*", check: checkDriverName, doc: `Driver whose queue this worker serves: ${CATALOGUE.map((d) => d.queueRule).join(", ")}, or "*" for every driver in driver.toml.` },
    queue: { kind: "string", default: "builds", check: (v) => (v.trim() === "" ? "must not be empty" : undefined), doc: "Queue name prefix; the lists are <queue>_<driver>." },
    timeout: { kind: "duration", default: "30m", doc: 'Longest a build may run before it is timed_out ("0" = no limit).' },
    pidfile: { kind: "string", doc: "File the daemon writes its pid to." },
    lease: { kind: "duration", default: "30s", min: 1000, doc: "How long a taken build stays claimed without a heartbeat before another worker recovers it." },
    shutdown_timeout: { kind: "duration", default: "5m", doc: "On SIGTERM, how long running builds may finish before they are killed and re-queued." },
    output_limit: { kind: "integer", default: 0, min: 0, doc: "Most bytes of output stored per job (0 = no limit); the rest is dropped with a note." },
    manifest_limit: { kind: "integer", default: DEFAULT_MANIFEST_LIMIT, min: 1, doc: "Most bytes a build manifest may have (submit, and the worker before it parses one); a larger one is refused." },
  },
  tables: { providers: providersSpec },
  sections: {
    crypto: {
      keys: {
        block: { kind: "string", required: true, secret: true, check: (v) => ([16, 24, 32].includes(Buffer.byteLength(v)) ? undefined : `must be 16, 24 or 32 characters long, got ${Buffer.byteLength(v)}`), doc: "AES key (16, 24 or 32 characters) for masked variables and keys in the database." },
        salt: { kind: "ignored", why: "Djinn's server uses it for the ids in its URLs; the worker needs only the block key", doc: "Djinn's hash-id salt: accepted and ignored." },
      },
    },
    smtp: {
      keys: {
        addr: { kind: "string", required: true, check: serverAddr("127.0.0.1:25"), doc: "SMTP server host:port." },
        ca: { kind: "string", doc: "CA bundle; when set, STARTTLS is required and verified against it." },
        admin: { kind: "string", required: true, doc: "From address of failure mail." },
        username: { kind: "string", doc: "SMTP AUTH user." },
        password: { kind: "string", secret: true, doc: "SMTP AUTH password." },
      },
    },
    database: {
      keys: {
        addr: { kind: "string", required: true, check: serverAddr("127.0.0.1:5432"), doc: "PostgreSQL host:port." },
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
        addr: { kind: "string", required: true, check: serverAddr("127.0.0.1:6379"), doc: "Redis host:port." },
        password: { kind: "string", secret: true, doc: "Redis AUTH password." },
        db: { kind: "integer", default: 0, min: 0, doc: "Redis database number." },
      },
    },
    images: fileStore("base images (<path>/<driver>/_base/...)", { limit: { kind: "ignored", why: "it limits image uploads to Djinn's server; the worker only reads images", doc: "Djinn's upload limit for images: accepted and ignored." } }),
    artifacts: fileStore("collected artifacts", { limit: { kind: "integer", default: 0, min: 0, doc: "Bytes collected per artifact file at most; 0 = unlimited." } }),
    objects: fileStore("objects placed into builds", { limit: { kind: "ignored", why: "it limits object uploads to Djinn's server; the worker only reads objects", doc: "Djinn's upload limit for objects: accepted and ignored." } }),
    cache: fileStore("build caches (<path>/<namespace>/<key>.cache; docs/cache.md)", {
      limit: { kind: "integer", default: 0, min: 0, doc: "Most bytes (compressed) one cache entry may have; a larger one is not saved. 0 = no limit." },
      quota: { kind: "integer", default: 0, min: 0, doc: "Most bytes all entries may have together; the least recently used go first. 0 = no quota." },
    }),
    log: {
      keys: {
        level: { kind: "string", default: "info", oneOf: ["debug", "info", "warn", "error"], caseInsensitive: true, doc: "Log level: debug, info, warn or error, in any case." },
        file: { kind: "string", doc: "Log file; standard output when unset." },
      },
    },
    web: {
      keys: {
        addr: { kind: "string", required: true, check: (v) => (listenAddress(v) ? undefined : `must be host:port or :port with a port of 0-65535, e.g. "127.0.0.1:8080", got ${JSON.stringify(v)}`), doc: "host:port the web process (djinn-worker web) listens on." },
        public: { kind: "boolean", default: true, doc: "Viewing needs no sign-in; false: every page and the API need a signed-in user or an API token. Actions (kill, re-run, submit) always do." },
        cookie_secure: { kind: "boolean", default: false, doc: "Mark the sign-in cookie Secure: set it when the pages are reached over https (a proxy in front)." },
        session: { kind: "duration", default: "12h", min: 60_000, doc: "How long a sign-in lasts." },
        pidfile: { kind: "string", doc: "File djinn-worker web writes its pid to (and <pidfile>.state), for the SysVinit script." },
        url: { kind: "string", check: checkApiUrl, doc: "The pages' public base URL (https://ci.example.com): the link of the commit statuses posted to forges." },
      },
    },
    metrics: { keys: { addr: { kind: "string", required: true, check: (v) => (listenAddress(v) ? undefined : `must be host:port or :port with a port of 0-65535, e.g. "127.0.0.1:9110", got ${JSON.stringify(v)}`), doc: "host:port for /metrics and /healthz." } } },
  },
};

/** driver.toml: one section per driver of the catalogue, as each driver declares it. */
export const driverSchema: SectionSpec = {
  keys: {},
  sections: Object.fromEntries(driverSections().map((section) => [section.name, section.spec])),
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
  cache?: StoreConfig & { limit: number; quota: number };
  log: { level: "debug" | "info" | "warn" | "error"; file?: string };
  metrics?: { addr: string };
  web?: { addr: string; public: boolean; cookie_secure: boolean; session: number; pidfile?: string; url?: string };
  /** The [[providers]] tables, one per name. */
  providers: ProviderConfig[];
  warnings: string[];
}

export interface ProviderConfig {
  name: ProviderName;
  /** The webhook secret; absent only for `git`. */
  secret?: string;
  /** A private SSH key for fetching private repositories: the key itself, or its name in the object store. */
  key?: string;
  keyObject?: string;
  /** An API token: commit statuses are posted with it (forges only). */
  token?: string;
  /** Where the forge's API answers; set (or defaulted) whenever token is. */
  apiUrl?: string;
}

/** The API of github.com and of gitlab.com; a Gitea or Forgejo has no common host, so its api_url is required. */
export const DEFAULT_API_URLS: Partial<Record<ProviderName, string>> = { github: "https://api.github.com", gitlab: "https://gitlab.com/api/v4" };

/** The [[providers]] tables typed; one per name, a forge's with its secret, at most one key each. */
function checkProviders(file: string, text: string, tables: Record<string, unknown>[] | undefined): ProviderConfig[] {
  const map = new SourceMap(text);
  const seen = new Set<string>();
  return (tables ?? []).map((t, i) => {
    const table = `providers[${i}]`;
    const name = t.name as ProviderName;
    if (seen.has(name)) throw new ConfigError(file, `${table}.name`, map.lineOf(table, "name"), `a second [[providers]] table for ${JSON.stringify(name)}: give each provider one`);
    seen.add(name);
    if (name !== "git" && !t.secret) throw new ConfigError(file, `${table}.secret`, map.lineOf(table), `required for ${name}: the webhook's secret (or secret_file)`);
    if (t.key !== undefined && t.key_object !== undefined) throw new ConfigError(file, `${table}.key_object`, map.lineOf(table, "key_object"), "key is set too: give the key one way only");
    if (t.token !== undefined && name === "git") throw new ConfigError(file, `${table}.token`, map.lineOf(table, "token"), "git has no API to post commit statuses to: set token on a forge's table");
    const apiUrl = (t.api_url as string | undefined)?.replace(/\/+$/, "") ?? DEFAULT_API_URLS[name];
    if (t.token !== undefined && !apiUrl) throw new ConfigError(file, `${table}.api_url`, map.lineOf(table), `required for ${name} with a token: the forge's API, e.g. "https://gitea.example.com/api/v1"`);
    const p: ProviderConfig = { name };
    if (t.secret !== undefined) p.secret = t.secret as string;
    if (t.token !== undefined) p.token = t.token as string;
    if (apiUrl !== undefined && (t.token !== undefined || t.api_url !== undefined)) p.apiUrl = apiUrl;
    if (t.key !== undefined) p.key = t.key as string;
    if (t.key_object !== undefined) p.keyObject = t.key_object as string;
    return p;
  });
}

/** The [[providers]] table named `name` (forgejo answers for gitea and the other way round). */
export function providerConfig(cfg: WorkerConfig, name: ProviderName): ProviderConfig | undefined {
  const same = (n: string) => n === name || (["gitea", "forgejo"].includes(n) && ["gitea", "forgejo"].includes(name));
  return cfg.providers.find((p) => same(p.name));
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
    providers: checkProviders(file, text, v.providers as Record<string, unknown>[] | undefined),
    log: v.log ?? { level: "info" },
    parallelism: (v.parallelism as number) === 0 ? os.availableParallelism() : v.parallelism,
    file,
    warnings,
  } as unknown as WorkerConfig;
  const cache = cfg.cache;
  if (cache && cache.limit > 0 && cache.quota > 0 && cache.limit > cache.quota) {
    throw new ConfigError(file, "cache.limit", lineInFile(file, "cache", "limit"), `${cache.limit} is more than cache.quota (${cache.quota}): no entry that large could be kept`);
  }
  const absurd = parallelismWarning(file, text, cfg.parallelism, os.availableParallelism());
  if (absurd) warnings.push(absurd);
  if (cfg.providers.some((p) => p.token) && !cfg.web?.url) warnings.push(`${file}: [[providers]] token is set but [web] url is not: commit statuses are posted without a link to the build`);
  for (const k of ["timeout", "lease", "shutdown_timeout", "output_limit", "manifest_limit"]) delete (cfg as unknown as Record<string, unknown>)[k];
  return cfg;
}

export function loadDriverConfig(file: string): DriverConfig {
  const { text, data } = readToml(file);
  const { values, warnings } = applySchema(file, text, data, driverSchema);
  const cfg: Record<string, unknown> = { file, warnings };
  for (const section of driverSections()) {
    if (values[section.name]) cfg[section.name] = section.settings(values[section.name] as Record<string, unknown>);
  }
  return cfg as DriverConfig;
}

/** The driver.toml used when `run` is given none: only the os driver, which needs no settings. */
export function defaultDriverConfig(): DriverConfig {
  return { os: {}, warnings: [] };
}

/** Fails with one clear line when a section the daemon needs is absent. */
export function requireSections(worker: WorkerConfig, ...names: ("crypto" | "database" | "redis" | "artifacts" | "objects" | "images" | "cache")[]): void {
  for (const name of names) {
    if (!worker[name]) throw new ConfigError(worker.file, undefined, undefined, `[${name}] section is required`);
  }
}
