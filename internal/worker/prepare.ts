// Turning a claimed build's rows into what the runner needs. The manifest is the plan (stages,
// jobs, commands, objects, env, allow_failures); the rows are its records plus what the submitter
// added: variables (over the manifest's env) and keys. A build that cannot be prepared is not
// given back to be tried forever: it fails in setup with the reason (docs/queue.md).
import type pg from "pg";
import { specifyBuild, type BuildSpec, type Variable } from "../assembly/assembly.js";
import type { DriverConfig } from "../config/config.js";
import type { Crypto } from "../crypto/crypto.js";
import { configuredDrivers, driverTypeOfQueue } from "../queue/names.js";
import type { Manifest } from "../manifest/manifest.js";
import { manifestTooLarge, setupStageName } from "../manifest/names.js";
import { maskedValueProblem, maskPatterns, maskText, secretInNames } from "../runner/mask.js";
import { createDriverJob, type BuildPlan, type PlannedStage } from "../runner/plan.js";
import { matchPlanRows, type LoadedBuild, type StoredJob } from "../store/builds.js";
import type { BuildKey } from "./claimed-driver.js";

/** Claims of one build after which it is failed instead of run again: a build that keeps its workers from finishing it. */
export const MAX_DELIVERIES = 10;

export interface PreparedBuild {
  /** What to run, its plan's jobs carrying their rows; absent when the build cannot run. */
  spec?: BuildSpec;
  /** The plan whose jobs' rows the run writes to: the spec's, or the rows as they are when the build cannot run. */
  plan: BuildPlan;
  keys: BuildKey[];
  /** Why the build cannot run, masked (it may quote a masked value): it fails in setup with this line. */
  setupError?: string;
  /** Every value the build's output must not show, as far as they could be decrypted: a setup error may quote one. */
  masks: string[];
}

export interface PrepareContext {
  pool: pg.Pool;
  crypto: Crypto;
  drivers: DriverConfig;
  claim: { id: number; worker: string; attempt: number };
  /** Most bytes of a manifest: a larger one fails in setup, unparsed. */
  manifestLimit: number;
}

export async function prepareBuild(build: LoadedBuild, ctx: PrepareContext): Promise<PreparedBuild> {
  const secrets = readSecrets(build, ctx);
  const fail = async (reason: string): Promise<PreparedBuild> => {
    const rows = await matchPlanRows(ctx.pool, ctx.claim, setupOnlyPlan(build.id), true, [], build.jobs);
    return { plan: rowsAsPlan(rows.jobs), keys: [], setupError: maskText(reason, secrets.masks), masks: secrets.masks };
  };
  if (ctx.claim.attempt > MAX_DELIVERIES) {
    return fail(`build taken ${ctx.claim.attempt - 1} times without finishing (its worker died, or its result could not be written): not run again`);
  }
  if (secrets.problem) return fail(secrets.problem);
  // The parser (and its YAML library) is loaded with the first build, not at start.
  const { parseManifest } = await import("../manifest/manifest.js");
  const manifest = readManifest(build, ctx, parseManifest);
  if (typeof manifest === "string") return fail(manifest);
  const spec = specifyBuild(manifest, String(build.id), secrets.variables, secrets.keys.flatMap((k) => keyMasks(k.value.toString("utf8"))));
  // Before any row is written from the plan: a name is stored and shown as it is.
  const named = secretInNames(spec.plan, spec.masks);
  if (named) return fail(`cannot prepare the build: ${named}`);
  const rows = await matchPlanRows(ctx.pool, ctx.claim, spec.plan, false, spec.masks, build.jobs);
  if (rows.mismatch) return { plan: rowsAsPlan(rows.jobs), keys: secrets.keys, setupError: maskText(`cannot prepare the build: ${rows.mismatch}; the rows were rewritten from the manifest`, spec.masks), masks: spec.masks };
  // The rows now stand in plan order, one a job.
  spec.plan.stages.flatMap((s) => s.jobs).forEach((job, i) => (job.record = { id: rows.jobs[i].id, stageId: rows.jobs[i].stageId }));
  return { spec, plan: spec.plan, keys: secrets.keys, masks: spec.masks };
}

interface Secrets {
  /** The variables, masked ones decrypted, as far as they could be read. */
  variables: Variable[];
  keys: { name: string; value: Buffer }[];
  /** What the output must not show of those read so far (values and keys, whole and line by line). */
  masks: string[];
  /** Why the build cannot run, when a value does not decrypt or cannot be masked. */
  problem?: string;
}

/**
 * The variables and keys in the clear, read before the manifest: whatever goes wrong later (a
 * manifest error quoting a value) is masked with them.
 */
function readSecrets(build: LoadedBuild, ctx: PrepareContext): Secrets {
  const out: Secrets = { variables: [], keys: [], masks: [] };
  for (const v of build.variables) {
    if (!v.masked) {
      out.variables.push({ key: v.key, value: v.value ?? "" });
      continue;
    }
    let plain: string;
    try {
      plain = ctx.crypto.decrypt(v.valueEncrypted ?? Buffer.alloc(0)).toString("utf8");
    } catch (err) {
      return { ...out, problem: `cannot decrypt masked variable ${v.key}: ${(err as Error).message}` };
    }
    // Refused before anything runs: nothing can print it unmasked.
    const problem = maskedValueProblem(v.key, plain);
    if (problem) return { ...out, problem };
    out.variables.push({ key: v.key, value: plain, masked: true });
    out.masks.push(...maskPatterns(plain));
  }
  for (const k of build.keys) {
    try {
      out.keys.push({ name: k.name, value: ctx.crypto.decrypt(k.encrypted) });
    } catch (err) {
      return { ...out, problem: `cannot decrypt the build's key ${k.name}: ${(err as Error).message}` };
    }
    out.masks.push(...keyMasks(out.keys[out.keys.length - 1].value.toString("utf8")));
  }
  return out;
}

/** The manifest in the clear, parsed, on a driver this worker has; or why the build cannot run. */
function readManifest(build: LoadedBuild, ctx: PrepareContext, parseManifest: (text: string) => { manifest: Manifest }): Manifest | string {
  // Parsing a huge manifest would hold the event loop (and the heartbeat) past the lease.
  if (build.manifestBytes > ctx.manifestLimit) return `cannot prepare the build: ${manifestTooLarge(ctx.manifestLimit, build.manifestBytes)}`;
  let text = build.manifestText;
  if (build.manifestEncrypted) {
    try {
      text = ctx.crypto.decrypt(build.manifestEncrypted).toString("utf8");
    } catch (err) {
      return `cannot decrypt the manifest: ${(err as Error).message}`;
    }
  }
  let manifest: Manifest;
  try {
    manifest = parseManifest(text).manifest;
  } catch (err) {
    return `cannot prepare the build: manifest: ${(err as Error).message}`;
  }
  const type = manifest.driver.type;
  if (!configuredDrivers(ctx.drivers).map(driverTypeOfQueue).includes(type)) return `driver "${type}" is not configured on this worker (${ctx.drivers.file})`;
  return manifest;
}

/** Just the setup stage's first job: where a build that cannot be planned says why. */
function setupOnlyPlan(id: number): BuildPlan {
  const setup = setupStageName(String(id));
  return { stages: [{ name: setup, canFail: false, jobs: [createDriverJob(setup)] }] };
}

/** A build's rows as a plan that runs nothing: what a build that cannot run records its failure on. */
function rowsAsPlan(rows: StoredJob[]): BuildPlan {
  const stages: PlannedStage[] = [];
  let stageId: number | undefined;
  for (const row of rows) {
    if (row.stageId !== stageId) stages.push({ name: row.stage, canFail: false, jobs: [] });
    stageId = row.stageId;
    const stage = stages[stages.length - 1];
    stage.jobs.push({ stage: row.stage, name: row.name, commands: [], artifacts: [], record: { id: row.id, stageId: row.stageId } });
  }
  return { stages };
}

/** A key is masked whole and line by line, so printing part of it shows none of its material. */
function keyMasks(key: string): string[] {
  const lines = key
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length >= 8 && !/^-----(BEGIN|END) /.test(l));
  return [key.trim(), ...lines];
}
