// The words for how a job ended, from the driver's structured result: one home, whatever the driver.
import type { ExecResult } from "../driver/driver.js";

/** The lines the runner adds to a finished job's output (none for a job that passed untroubled). */
export function outcomeLines(jobName: string, result: ExecResult): string[] {
  const lines: string[] = [];
  if (result.oomKilled) {
    lines.push(result.memoryLimitMb
      ? `out of memory (limit ${result.memoryLimitMb} MB): the kernel killed a process of this job`
      : "out of memory: the kernel killed a process of this job (no memory limit is set; the host ran out)");
  }
  if (result.environmentExitCode !== undefined) lines.push(`the build environment stopped (exit status ${result.environmentExitCode})`);
  if (result.exitCode !== 0) lines.push(`job ${jobName} failed: exit status ${result.exitCode}`);
  return lines;
}
