// The cgroup2 mount, as /proc/self/mountinfo describes it: pure, so it is tested without a host.

export interface Cgroup2Mount {
  /** Where it is mounted: /sys/fs/cgroup (pure v2) or /sys/fs/cgroup/unified (hybrid). */
  mountPoint: string;
  /**
   * Whether it is mounted with `favordynmods` (Linux 6.0+). Without it, the first move of a process
   * into a cgroup after a quiet moment waits for an RCU grace period, some 10-15 ms: a job's shell
   * moving into its run's cgroup pays that on every build of an idle worker.
   */
  favorsDynamicChanges: boolean;
}

/** The first cgroup2 line of a mountinfo text, or undefined when there is none. */
export function cgroup2Mount(mountinfo: string): Cgroup2Mount | undefined {
  for (const line of mountinfo.split("\n")) {
    // id parent major:minor root mountpoint options ... - fstype source superoptions
    const [left, right] = line.split(" - ");
    const [fstype, , superOptions = ""] = right?.split(" ") ?? [];
    if (fstype !== "cgroup2") continue;
    return { mountPoint: unescapeMount(left.split(" ")[4]), favorsDynamicChanges: superOptions.split(",").includes("favordynmods") };
  }
  return undefined;
}

/** mountinfo writes space, tab, newline and backslash in a path as octal escapes (\040). */
function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export interface Mount {
  mountPoint: string;
  fstype: string;
  /** The device's major:minor, as /sys/dev/block names it. */
  device: string;
}

/**
 * The mount a path is on: the last mounted of those whose mount point holds it (a later mount
 * over the same point hides the earlier). `file` must be absolute and resolved (no symlinks).
 */
export function mountHolding(mountinfo: string, file: string): Mount | undefined {
  let found: Mount | undefined;
  for (const line of mountinfo.split("\n")) {
    const [left, right] = line.split(" - ");
    if (!right) continue;
    const fields = left.split(" ");
    const mountPoint = unescapeMount(fields[4] ?? "");
    const holds = mountPoint === "/" || file === mountPoint || file.startsWith(`${mountPoint}/`);
    if (!holds || (found && found.mountPoint.length > mountPoint.length)) continue;
    found = { mountPoint, fstype: right.split(" ")[0], device: fields[2] };
  }
  return found;
}
