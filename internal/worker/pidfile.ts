// The files an init script reads to know the daemon: its pid, and what it is doing.
import fs from "node:fs";
import { StartupError } from "./startup.js";

/** Refuses to start when the pidfile names a live process; otherwise writes ours. */
export function writePidfile(file: string): void {
  let text: string | undefined;
  try {
    text = fs.readFileSync(file, "utf8").trim();
  } catch {
    // None yet.
  }
  const pid = text ? Number(text) : NaN;
  if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) {
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (err) {
      alive = (err as NodeJS.ErrnoException).code === "EPERM";
    }
    if (alive) throw new StartupError(`pidfile ${file} names process ${pid}, which is running: is another worker using this configuration?`);
  }
  try {
    fs.writeFileSync(file, `${process.pid}\n`);
  } catch (err) {
    throw new StartupError(`cannot write pidfile ${file}: ${(err as Error).message}`);
  }
}

export function removePidfile(file: string | undefined): void {
  if (!file) return;
  try {
    if (fs.readFileSync(file, "utf8").trim() === String(process.pid)) fs.unlinkSync(file);
  } catch {
    // Already gone.
  }
}

/**
 * What the daemon is doing, for the SysVinit script's `start` and `status`, in `<pidfile>.state`:
 * `starting`, `waiting: <why>` (its servers do not answer yet), `serving`, `stopping`, or
 * `stopped: <why>` when a start failed. Replaced whole (written aside, then renamed), so a reader
 * never sees half a line. Without a pidfile there is no one to tell.
 */
export function writeState(pidfile: string | undefined, state: string): void {
  if (!pidfile) return;
  const file = `${pidfile}.state`;
  try {
    fs.writeFileSync(`${file}.${process.pid}`, `${state.split("\n")[0]}\n`);
    fs.renameSync(`${file}.${process.pid}`, file);
  } catch {
    // Only an init script reads it, and the pidfile's own write has said whether the directory is usable.
  }
}
