// Values the schema accepts but an operator almost certainly did not mean: warnings, not errors.
import { SourceMap } from "./schema.js";

/** Builds per CPU above which `parallelism` is warned about (and never below ABSURD_PARALLELISM_FLOOR). */
export const BUILDS_PER_CPU = 4;
export const ABSURD_PARALLELISM_FLOOR = 16;

/**
 * A warning when `parallelism` is far beyond what `cpus` CPUs can run: builds then compete for CPU
 * and memory, and the daemon's PostgreSQL pool (2 connections a build) outgrows the server's limit.
 */
export function parallelismWarning(file: string, text: string, parallelism: number, cpus: number): string | undefined {
  const most = Math.max(ABSURD_PARALLELISM_FLOOR, BUILDS_PER_CPU * cpus);
  if (parallelism <= most) return undefined;
  const line = new SourceMap(text).lineOf("", "parallelism");
  return (
    `${file}${line ? `:${line}` : ""}: parallelism = ${parallelism} is more than ${most} (${BUILDS_PER_CPU} builds per CPU, this machine has ${cpus}): ` +
    `builds would compete for CPU and memory, and the worker would ask PostgreSQL for up to ${parallelism * 2 + 2} connections`
  );
}
