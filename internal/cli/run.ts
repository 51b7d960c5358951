// `djinn-worker run`: one manifest, on this machine, output to the terminal, no services.
import { existsSync } from "node:fs";
import path from "node:path";
import { assembleBuild, specifyBuild, type Variable } from "../assembly/assembly.js";
import { DEFAULT_MANIFEST_LIMIT, defaultDriverConfig, loadDriverConfig, type DriverConfig } from "../config/config.js";
import { formatDuration, parseTimerDuration } from "../timers/duration.js";
import type { Logger } from "../log/log.js";
import { runBuild, type BuildReporter } from "../runner/runner.js";
import { exitCodeOf, type Status } from "../runner/status.js";
import { InputError } from "../errors/errors.js";
import { parseAssignments, parseSecrets, readManifestFile } from "./input.js";
import { terminalSafe } from "./terminal.js";
import { sharedSink } from "../stream/write.js";

export interface RunOptions {
  manifest: string;
  driverFile?: string;
  artifacts: string;
  objects: string;
  /** Where the manifest's cache is kept; without it, the cache jobs say so. */
  cache?: string;
  env: string[];
  secrets: string[];
  timeout?: string;
  signal: AbortSignal;
  out: NodeJS.WritableStream;
  log: Logger;
}

export async function loadRunDriverConfig(driverFile: string | undefined, type: string): Promise<DriverConfig> {
  const file = driverFile ?? (existsSync("djinn-driver.toml") ? "djinn-driver.toml" : undefined);
  const cfg = file ? loadDriverConfig(file) : defaultDriverConfig();
  const present = (cfg as Record<string, unknown>)[type];
  if (!present) throw new InputError(`${file}: the manifest's driver "${type}" is not configured: add a [${type}] section`);
  return cfg;
}

export async function runManifest(opts: RunOptions): Promise<number> {
  // The secrets first: an error about the manifest or --env shows none of their values.
  const secrets = parseSecrets(opts.secrets);
  const secretValues = secrets.map(([, value]) => value);
  // `run` reads no worker.toml: its manifests have the default limit.
  const { manifest, warnings } = await readManifestFile(opts.manifest, { limit: DEFAULT_MANIFEST_LIMIT, setting: "", signal: opts.signal, masks: secretValues });
  for (const w of warnings) opts.log.warn(`${opts.manifest}: ${w}`);
  let timeoutMs = 0;
  if (opts.timeout !== undefined) {
    try {
      timeoutMs = parseTimerDuration(opts.timeout);
    } catch (err) {
      throw new InputError(`--timeout: ${(err as Error).message}`);
    }
  }
  const variables: Variable[] = [
    ...parseAssignments("--env", opts.env, secretValues).map(([key, value]) => ({ key, value })),
    ...secrets.map(([key, value]) => ({ key, value, masked: true })),
  ];
  const spec = specifyBuild(manifest, "local", variables);
  const drivers = await loadRunDriverConfig(opts.driverFile, manifest.driver.type);
  for (const w of drivers.warnings) opts.log.warn(w);
  const build = await assembleBuild(spec, {
    buildId: `local-${Date.now()}`,
    drivers,
    objectsPath: path.resolve(opts.objects),
    artifacts: { dir: path.resolve(opts.artifacts) },
    // The store (gzip, hashing) is loaded only when there is one.
    ...(opts.cache ? { cache: { store: new (await import("../cache/store.js")).CacheStore({ root: path.resolve(opts.cache) }) } } : {}),
    log: opts.log,
  });

  const out = opts.out;
  const results: [string, Status][] = [];
  const label = (job: { stage: string; name: string }) => terminalSafe(`${job.stage} / ${job.name}`);
  const reporter: BuildReporter = {
    jobStarted(job) {
      out.write(`\n==> ${label(job)}\n`);
      return sharedSink(out);
    },
    jobFinished(job, result) {
      results.push([label(job), result.status]);
      if (result.status !== "skipped") out.write(`==> ${label(job)}: ${result.status}\n`);
    },
  };
  const started = Date.now();
  const { plan, driver, env, masks, objects, artifacts, cache } = build;
  const status = await runBuild({ plan, driver, env, masks, objects, artifacts, cache, reporter, signal: opts.signal, timeoutMs });
  out.write(`\nJobs:\n`);
  const width = Math.max(...results.map(([n]) => n.length));
  for (const [name, s] of results) out.write(`  ${name.padEnd(width)}  ${s}\n`);
  out.write(`\nDone. Build ${status} in ${formatDuration(Math.round((Date.now() - started) / 100) * 100)}\n`);
  return exitCodeOf(status);
}
