// Turning a claimed build's rows into what the runner needs. The manifest is the plan (stages,
// jobs, commands, objects, env, allow_failures); the rows are its records plus what the submitter
// added: variables (over the manifest's env) and keys. A build that cannot be prepared is not
// given back to be tried forever: it fails in setup with the reason (docs/queue.md).
import type pg from "pg";
import { configuredDrivers, type DriverConfig } from "../config/config.js";
import type { Crypto } from "../crypto/crypto.js";
import { driverTypeOfQueue } from "../queue/names.js";
import { parseManifest, setupStageName, type Manifest } from "../manifest/manifest.js";
import { CREATE_DRIVER_JOB, planBuild, type BuildPlan } from "../runner/plan.js";
import { matchPlanRows, type LoadedBuild, type StoredJob } from "../store/builds.js";
import { maskedValueProblem, maskPatterns } from "../runner/mask.js";

/** Claims of one build after which it is failed instead of run again: a build that keeps its workers from finishing it. */
export const MAX_DELIVERIES = 10;

export interface PreparedBuild {
  /** Set when the build can run. */
  manifest?: Manifest;
  plan?: BuildPlan;
  env: Record<string, string>;
  masks: string[];
  keys: { name: string; value: Buffer }[];
  /** The build's job rows, in plan order: the records the run writes to. */
  jobs: StoredJob[];
  /** Why the build cannot run: it fails in setup with this line. */
  setupError?: string;
}

export interface PrepareContext {
  pool: pg.Pool;
  crypto: Crypto;
  drivers: DriverConfig;
  claim: { id: number; worker: string; attempt: number };
}

export async function prepareBuild(build: LoadedBuild, ctx: PrepareContext): Promise<PreparedBuild> {
  const out: PreparedBuild = { env: {}, masks: [], keys: [], jobs: [] };
  const fail = async (reason: string): Promise<PreparedBuild> => {
    out.setupError = reason;
    out.manifest = out.plan = undefined;
    out.jobs = (await matchPlanRows(ctx.pool, ctx.claim, setupOnlyPlan(build.id), true, [])).jobs;
    return out;
  };
  if (ctx.claim.attempt > MAX_DELIVERIES) {
    return fail(`build taken ${ctx.claim.attempt - 1} times without finishing (its worker died, or its result could not be written): not run again`);
  }
  let text = build.manifestText;
  if (build.manifestEncrypted) {
    try {
      text = ctx.crypto.decrypt(build.manifestEncrypted).toString("utf8");
    } catch (err) {
      return fail(`cannot decrypt the manifest: ${(err as Error).message}`);
    }
  }
  let manifest: Manifest;
  try {
    manifest = parseManifest(text).manifest;
  } catch (err) {
    return fail(`cannot prepare the build: manifest: ${(err as Error).message}`);
  }
  const type = manifest.driver.type;
  if (!configuredDrivers(ctx.drivers).map(driverTypeOfQueue).includes(type)) return fail(`driver "${type}" is not configured on this worker (${ctx.drivers.file})`);

  // The manifest's env first, the submitted variables over it.
  for (const [key, value] of manifest.env) out.env[key] = value;
  for (const v of build.variables) {
    if (!v.masked) {
      out.env[v.key] = v.value ?? "";
      continue;
    }
    let plain: string;
    try {
      plain = ctx.crypto.decrypt(v.valueEncrypted ?? Buffer.alloc(0)).toString("utf8");
    } catch (err) {
      return fail(`cannot decrypt masked variable ${v.key}: ${(err as Error).message}`);
    }
    // Refused before anything runs: nothing can print it unmasked.
    const problem = maskedValueProblem(v.key, plain);
    if (problem) return fail(problem);
    out.env[v.key] = plain;
    out.masks.push(...maskPatterns(plain));
  }
  for (const k of build.keys) {
    let value: Buffer;
    try {
      value = ctx.crypto.decrypt(k.encrypted);
    } catch (err) {
      return fail(`cannot decrypt the build's key ${k.name}: ${(err as Error).message}`);
    }
    out.keys.push({ name: k.name, value });
    out.masks.push(...keyMasks(value.toString("utf8")));
  }
  out.masks = out.masks.filter((m) => m.length > 0);

  const plan = planBuild(manifest, String(build.id));
  const rows = await matchPlanRows(ctx.pool, ctx.claim, plan, false, out.masks);
  out.jobs = rows.jobs;
  if (rows.mismatch) return { ...out, setupError: `cannot prepare the build: ${rows.mismatch}; the rows were rewritten from the manifest` };
  return { ...out, manifest, plan };
}

/** Just the setup stage's first job: where a build that cannot be planned says why. */
function setupOnlyPlan(id: number): BuildPlan {
  return { stages: [{ name: setupStageName(String(id)), canFail: false, jobs: [{ stage: setupStageName(String(id)), name: CREATE_DRIVER_JOB, commands: [], artifacts: [], createsDriver: true }] }] };
}

/** A key is masked whole and line by line, so printing part of it shows none of its material. */
function keyMasks(key: string): string[] {
  const lines = key
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length >= 8 && !/^-----(BEGIN|END) /.test(l));
  return [key.trim(), ...lines];
}
