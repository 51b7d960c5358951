// The filesystem under the host state root, for `check`. Every build makes and removes a few
// files and directories there. ext4 without a journal looks, for each new inode, past every inode
// removed in the last minutes (ialloc.c, recently_deleted), so while builds come fast each new
// file costs up to a millisecond of the worker's CPU; a journaled ext4 or tmpfs does not.
import { readFileSync, readlinkSync, realpathSync } from "node:fs";
import path from "node:path";
import { mountHolding, type Mount } from "./mounts.js";

/** A line saying what the state root is on, with a warning for ext4 without a journal. */
export function stateFilesystem(root: string): string {
  const mount = mountOf(root);
  if (!mount) return `workspaces under ${root}`;
  const on = `workspaces under ${root}, on ${mount.fstype} (${mount.mountPoint})`;
  if (mount.fstype !== "ext4" || ext4Journaled(mount.device) !== false) return on;
  return `${on} without a journal: each file a build makes there gets slower while many are removed (see docs/os.md)`;
}

/** The mount `dir` is on; undefined when /proc or the directory cannot be read. */
function mountOf(dir: string): Mount | undefined {
  try {
    return mountHolding(readFileSync("/proc/self/mountinfo", "utf8"), realpathSync(dir));
  } catch {
    return undefined;
  }
}

/** Whether the ext4 filesystem on device `majorMinor` has a journal; undefined when sysfs does not say. */
function ext4Journaled(majorMinor: string): boolean | undefined {
  try {
    const name = path.basename(readlinkSync(`/sys/dev/block/${majorMinor}`));
    return readFileSync(`/sys/fs/ext4/${name}/journal_task`, "utf8").trim() !== "<none>";
  } catch {
    return undefined;
  }
}
