// A manifest turned into the stages and jobs a runner executes, with Djinn's setup stage first.
import type { Manifest, Passthrough } from "../manifest/manifest.js";
import { cacheStageName, setupStageName } from "../manifest/names.js";
import { shellQuote, singleQuote } from "../shell/quote.js";

const CREATE_DRIVER_JOB = "create-driver";
export const RESTORE_CACHE_JOB = "restore-cache";
export const SAVE_CACHE_JOB = "save-cache";

export interface PlannedJob {
  stage: string;
  name: string;
  commands: string[];
  artifacts: Passthrough[];
  /** The setup job that creates the environment and places the objects. */
  createsDriver?: boolean;
  /** A job of the build cache (docs/cache.md): it restores it (setup, after the sources) or saves it (after the last stage). */
  cache?: "restore" | "save";
  /** The rows this job's progress is written to, when the build has them (the daemon's). */
  record?: JobRecord;
}

export interface JobRecord {
  id: number;
  stageId: number;
}

export interface PlannedStage {
  name: string;
  canFail: boolean;
  jobs: PlannedJob[];
}

export interface BuildPlan {
  stages: PlannedStage[];
}

/** The setup stage's first job: it creates the environment and places the objects. */
export function createDriverJob(setupStage: string): PlannedJob {
  return { stage: setupStage, name: CREATE_DRIVER_JOB, commands: [], artifacts: [], createsDriver: true };
}

export function planBuild(manifest: Manifest, label: string): BuildPlan {
  const setup = setupStageName(label);
  const setupJobs: PlannedJob[] = [createDriverJob(setup)];
  manifest.sources.forEach((src, i) => {
    const commands = [`git clone -q ${shellQuote(src.url)} ${shellQuote(src.dir)}`];
    if (src.ref) commands.push(`cd ${shellQuote(src.dir)}`, `git checkout -q ${shellQuote(src.ref)}`);
    setupJobs.push({ stage: setup, name: `clone.${i + 1}`, commands, artifacts: [] });
  });
  const policy = manifest.cache?.policy;
  if (policy && policy !== "push") setupJobs.push({ stage: setup, name: RESTORE_CACHE_JOB, commands: [], artifacts: [], cache: "restore" });
  const allow = new Set(manifest.allowFailures);
  const stages: PlannedStage[] = [{ name: setup, canFail: false, jobs: setupJobs }];
  for (const name of manifest.stages) {
    stages.push({ name, canFail: allow.has(name), jobs: manifest.jobs.filter((j) => j.stage === name).map((j) => ({ ...j })) });
  }
  // A stage of its own after the others: it runs only when no job failed the build (passed or
  // passed_with_failures), so a broken build never saves what it left.
  if (policy && policy !== "pull") {
    const stage = cacheStageName(label);
    stages.push({ name: stage, canFail: false, jobs: [{ stage, name: SAVE_CACHE_JOB, commands: [], artifacts: [], cache: "save" }] });
  }
  return { stages };
}

/**
 * The script a driver runs for a job: it stops at the first failure (`set -e`) and shows each
 * command as written, `+ command` on stderr, before running it. Not the shell's own trace
 * (`set -x`): that prints every word expanded and quoted in its own way (which differs between
 * dash, bash and busybox), so a masked value would reach the output in forms the mask may not
 * know; a command as written holds a masked value only if its text does, and then the mask finds it.
 */
export function jobScript(commands: string[]): string {
  return `set -e\n${commands.map((c) => `${shownCommand(c)}${c}\n`).join("")}`;
}

/** The line that shows `command` before it runs; none for a comment or a blank line, which run nothing. */
function shownCommand(command: string): string {
  if (/^\s*(#|$)/.test(command)) return "";
  return `command printf '+ %s\\n' ${singleQuote(command)} >&2\n`;
}
