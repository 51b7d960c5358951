// One build put together for the runner, the same way for `run` and the daemon: its plan,
// variables and masks (the spec), then its driver, from the registry, and its stores. The driver
// adds the base environment (CI, DJINN_BUILD) from the build id it is given here.
import fs from "node:fs/promises";
import type { DriverConfig } from "../config/config.js";
import { getDriver, type Driver } from "../driver/driver.js";
import "../driver/all.js";
import { ArtifactStore, ObjectStore } from "../fs/store.js";
import type { Logger } from "../log/log.js";
import type { Manifest, Passthrough } from "../manifest/manifest.js";
import { holdsMasked, maskPatterns } from "../runner/mask.js";
import { planBuild, type BuildPlan } from "../runner/plan.js";
import { buildCache, type BuildCache } from "../cache/key.js";
import type { CacheStore } from "../cache/store.js";
import type { CacheContext, CacheObserver } from "../runner/cache.js";

export interface Variable {
  key: string;
  value: string;
  /** Its value is replaced by xxxxxx wherever the build prints it. */
  masked?: boolean;
}

/** What a build is, before anything runs: computed once. */
export interface BuildSpec {
  manifest: Manifest;
  plan: BuildPlan;
  env: Record<string, string>;
  masks: string[];
  /** The manifest's `cache:` with its key expanded from the build's variables. */
  cache?: BuildCache;
}

/**
 * The manifest's env first, `variables` over it in order; masks for the masked variables, then
 * `extraMasks` (the build's keys). `label` names the setup stage.
 */
export function specifyBuild(manifest: Manifest, label: string, variables: Variable[], extraMasks: string[] = []): BuildSpec {
  const env: Record<string, string> = {};
  for (const [key, value] of manifest.env) env[key] = value;
  const masks: string[] = [];
  for (const v of variables) {
    env[v.key] = v.value;
    if (v.masked) masks.push(...maskPatterns(v.value));
  }
  masks.push(...extraMasks);
  const cache = manifest.cache && buildCache(manifest.cache, manifest.driver, env, manifest.namespace);
  // A key names a file of the store and is shown by `cache list`, never masked: one holding a masked value is not used.
  if (cache && holdsMasked(cache.key, masks)) cache.refused = "its key holds a masked value (keys are file names in the store, listed as they are)";
  return { manifest, plan: planBuild(manifest, label), env, masks: masks.filter((m) => m.length > 0), ...(cache ? { cache } : {}) };
}

/** Where a build runs: its names on this host, the driver configuration, the stores' places. */
export interface Workplace {
  buildId: string;
  /** This run's token (../driver/run.ts); absent for `run`. */
  run?: string;
  drivers: DriverConfig;
  imagesPath?: string;
  /** The object store's root; without one, each object gets a note instead. */
  objectsPath?: string;
  /** The artifact store's folder, made when missing and the build collects artifacts; `fresh` empties it first (an earlier run's went with its rows). */
  artifacts?: { dir: string; limit?: number; fresh?: boolean };
  /** The cache store ([cache]); without one, a manifest's cache jobs say so. */
  cache?: { store: CacheStore; observe?: CacheObserver };
  log: Logger;
}

export interface AssembledBuild extends Omit<BuildSpec, "cache"> {
  driver: Driver;
  cache?: CacheContext;
  objects: { store?: ObjectStore; list: Passthrough[] };
  artifacts?: ArtifactStore;
}

export async function assembleBuild(spec: BuildSpec, place: Workplace): Promise<AssembledBuild> {
  const entry = await getDriver(spec.manifest.driver.type);
  const driver = entry.create({ buildId: place.buildId, run: place.run, manifest: spec.manifest.driver, config: place.drivers, imagesPath: place.imagesPath, env: spec.env, log: place.log });
  let artifacts: ArtifactStore | undefined;
  if (place.artifacts) {
    const { dir, limit, fresh } = place.artifacts;
    if (fresh) await fs.rm(dir, { recursive: true, force: true });
    // Made up front only for a build that collects something, so a store that cannot be written
    // fails it before it runs; a build without artifacts costs no folder (ArtifactStore.put makes
    // any it needs).
    if (spec.manifest.jobs.some((j) => j.artifacts.length)) await fs.mkdir(dir, { recursive: true });
    artifacts = new ArtifactStore(dir, limit);
  }
  const objects = { store: place.objectsPath ? new ObjectStore(place.objectsPath) : undefined, list: spec.manifest.objects };
  const cache = spec.cache && { spec: spec.cache, store: place.cache?.store, observe: place.cache?.observe };
  return { ...spec, driver, objects, artifacts, cache };
}
