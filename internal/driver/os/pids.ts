// Which processes can belong to a run, told by their pids alone. Linux gives pids out in order
// (wrapping from pid_max back to 300), so a process made after a mark has a pid after the mark's
// last one, and no process older than the mark has one in that window, as long as fewer than a
// whole round of pids was given out meanwhile (the fork count since boot tells). The /proc sweep
// of a run then reads only the few processes made since the run began, not every process on the
// host; when the window cannot be trusted, it reads them all.
import { readFileSync, readlinkSync } from "node:fs";

/** Where pid allocation stood at one moment. */
export interface PidMark {
  /** The pid given out last (/proc/loadavg, this process's pid namespace). */
  last: number;
  /** Processes and threads made since boot (/proc/stat "processes"), in every namespace. */
  forks: number;
  /** /proc/sys/kernel/pid_max: the pid after which allocation wraps. */
  max: number;
}

/** Pids below this are not given out again once allocation wraps (the kernel's RESERVED_PIDS). */
const RESERVED_PIDS = 300;

/** The last pid given out, from /proc/loadavg's last field; undefined when it does not have that shape. */
export function parseLastPid(loadavg: string): number | undefined {
  const m = /^\S+ \S+ \S+ \d+\/\d+ (\d+)\s*$/.exec(loadavg);
  return m ? Number(m[1]) : undefined;
}

/** The fork count since boot, from /proc/stat's "processes" line. */
export function parseForks(stat: string): number | undefined {
  const m = /^processes (\d+)$/m.exec(stat);
  return m ? Number(m[1]) : undefined;
}

/**
 * Whether a pid may belong to what was made between `since` and `now`: a test, or undefined
 * when every pid may (no mark, or too many forks between the two for the window to be sure).
 */
export function pidWindow(since: PidMark | undefined, now: PidMark | undefined): ((pid: number) => boolean) | undefined {
  if (!since || !now) return undefined;
  const max = Math.min(since.max, now.max);
  // Half a round of margin: a fork that fails after taking its pid advances allocation uncounted.
  if (now.forks < since.forks || now.forks - since.forks >= (max - RESERVED_PIDS) / 2) return undefined;
  if (since.last >= max || now.last >= max) return undefined;
  const span = (now.last - since.last + max) % max;
  // After a wrap, pids below RESERVED_PIDS (never given out again) fall inside the window too: looked at, harmlessly.
  return (pid) => {
    if (pid >= max) return true;
    const d = (pid - since.last + max) % max;
    return d > 0 && d <= span;
  };
}

/** Whether /proc shows this process's pid namespace (a container may mount the host's): otherwise pids there mean nothing here. */
let procIsOurs: boolean | undefined;

/** Where pid allocation stands now; undefined where it cannot be read (not Linux, /proc of another namespace). */
export function pidMark(): PidMark | undefined {
  try {
    procIsOurs ??= readlinkSync("/proc/self") === String(process.pid);
    if (!procIsOurs) return undefined;
    const last = parseLastPid(readFileSync("/proc/loadavg", "latin1"));
    const forks = parseForks(readFileSync("/proc/stat", "latin1"));
    const max = Number(readFileSync("/proc/sys/kernel/pid_max", "latin1").trim());
    if (last === undefined || forks === undefined || !Number.isInteger(max) || max <= RESERVED_PIDS) return undefined;
    return { last, forks, max };
  } catch {
    return undefined;
  }
}
