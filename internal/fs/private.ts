// Directories only this process's user can write to: what is read back from them (pids, names,
// tokens) was written by this user, not planted by another user of the host.
import { constants } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";

/** A directory that is not safely this user's alone, and why. */
export class PrivateDirError extends Error {
  override name = "PrivateDirError";
}

/** The sticky bit: in such a directory only a file's owner may rename or remove it. */
const STICKY = 0o1000;

function myUid(): number {
  return process.getuid?.() ?? -1;
}

/**
 * Makes `dir` (mode 0700) if it does not exist and checks that it is a real directory (not a
 * symlink), owned by this user, that nobody else can write to: a group- or world-writable mode
 * is repaired to 0700; a directory of another user, or a symlink, is refused (its owner could
 * plant or swap anything in it). Its parent must exist and, if others may write to it, have
 * the sticky bit (as /tmp does), so that nobody else can rename the directory away.
 */
export async function ensurePrivateDir(dir: string): Promise<string> {
  // Checked in full once; after that one lstat a call tells that it is still the very directory
  // checked (same inode), still this user's and 0700: anything else is checked in full again.
  const known = verified.get(dir);
  if (known) {
    const st = await fs.lstat(dir).catch(() => undefined);
    if (st && st.isDirectory() && st.dev === known.dev && st.ino === known.ino && st.uid === myUid() && (st.mode & 0o7777) === 0o700) return dir;
    verified.delete(dir);
  }
  await checkPrivateDir(dir);
  return dir;
}

/** Directories ensurePrivateDir checked in full, by path: the inode it found. */
const verified = new Map<string, { dev: number; ino: number }>();

async function checkPrivateDir(dir: string): Promise<void> {
  const parent = path.dirname(dir);
  const up = await fs.stat(parent).catch((err: NodeJS.ErrnoException) => {
    throw new PrivateDirError(`${parent}: ${err.code === "ENOENT" ? "no such directory" : err.message}`);
  });
  if ((up.mode & 0o022) !== 0 && (up.mode & STICKY) === 0) {
    throw new PrivateDirError(`${parent} is writable by other users and not sticky: ${dir} could be replaced; set TMPDIR to a safer directory`);
  }
  await fs.mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EEXIST") throw new PrivateDirError(`cannot make ${dir}: ${err.message}`);
  });
  const st = await fs.lstat(dir);
  if (st.isSymbolicLink()) throw new PrivateDirError(`${dir} is a symlink, not a directory of this user's: remove it`);
  if (!st.isDirectory()) throw new PrivateDirError(`${dir} is not a directory: remove it`);
  if (st.uid !== myUid()) throw new PrivateDirError(`${dir} belongs to uid ${st.uid}, not to this user (uid ${myUid()}): remove it`);
  if ((st.mode & 0o7777) !== 0o700) await fs.chmod(dir, 0o700);
  verified.set(dir, { dev: st.dev, ino: st.ino });
}

/**
 * Whether `file` (not followed if it is a symlink) is a `kind` owned by this user: what another
 * user made is never read back as this user's own record.
 */
export async function ownedByMe(file: string, kind: "file" | "directory"): Promise<boolean> {
  const st = await fs.lstat(file).catch(() => undefined);
  if (!st || st.uid !== myUid()) return false;
  return kind === "file" ? st.isFile() : st.isDirectory();
}

/** The text of a regular file of this user's, never through a symlink; undefined when it is anything else. */
export async function readOwnFile(file: string): Promise<string | undefined> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    const st = await handle.stat();
    if (!st.isFile() || st.uid !== myUid()) return undefined;
    return await handle.readFile("utf8");
  } catch {
    return undefined;
  } finally {
    await handle?.close();
  }
}
