// What a restored cache may write: only under the base it is unpacked into. A tar stream passes
// through TarGuard on its way to the driver's unpacker, whichever it is (GNU tar, busybox tar, the
// Engine's archive API): entries whose name is absolute or climbs out (`/x`, `../x`, `a/../../x`),
// hard links to such names, and entries beneath a symlink the archive itself made (`link -> /etc`,
// then `link/passwd`) are left out, whole, and named. A symlink itself may point anywhere (a
// virtualenv's `python -> /usr/bin/python3`): it is made as a link, and nothing is written through
// it. What the guard cannot read as tar readers do fails the stream (../stream/tar-members.ts).
import { field, memberName, TarMembers, type TarMember } from "../stream/tar-members.js";

export { TarFormatError as TarGuardError } from "../stream/tar-members.js";

/** Whether `name` (as an archive gives it) is absolute or has a `..` part. */
export function leadsOut(name: string): boolean {
  return name.startsWith("/") || name.split("/").includes("..");
}

/** `name` without empty and `.` parts: `./a//b/` is `a/b`. */
function normal(name: string): string {
  return name.split("/").filter((p) => p && p !== ".").join("/");
}

/**
 * Passes a tar stream on, leaving out the entries that would be written outside the base it is
 * unpacked into (see the file's comment); `refused` names them. Data blocks pass untouched.
 */
export class TarGuard extends TarMembers {
  /** Entries left out: the name the archive gives, and why. */
  readonly refused: string[] = [];
  private readonly symlinks = new Set<string>();

  protected member(m: TarMember): Buffer[] | undefined {
    // Every name a reader might go by: the bare ustar name too, for one that ignores the prefix.
    const names = [field(m.block, 0, 100), m.ustarName, m.longName, m.paxPath].filter((n): n is string => n !== undefined);
    const links = [m.ustarLink, m.longLink, m.paxLinkpath].filter((n): n is string => n !== undefined);
    const why = this.refusal(m.type, names, links);
    if (why) {
      this.refused.push(`${memberName(m)} (${why})`);
      return undefined;
    }
    if (m.type === "2") for (const n of names) this.symlinks.add(normal(n));
    return [...m.meta, m.block];
  }

  /** Whether `name`, or one of its parents, is a symlink the archive made (`proper`: its parents only). */
  private underSymlink(name: string, proper: boolean): boolean {
    const parts = normal(name).split("/").filter(Boolean);
    for (let i = 1; i <= parts.length - (proper ? 1 : 0); i++) if (this.symlinks.has(parts.slice(0, i).join("/"))) return true;
    return false;
  }

  /** Why the entry is left out, or undefined. */
  private refusal(type: string, names: string[], links: string[]): string | undefined {
    for (const n of names) {
      if (leadsOut(n)) return "it leads out";
      if (normal(n) === "" && type !== "5") return "it names the base itself";
      if (this.underSymlink(n, false)) return "it is under a symlink of the archive's";
    }
    if (type === "1") {
      for (const l of links) {
        if (!l || leadsOut(l)) return "a hard link that leads out";
        if (this.underSymlink(l, true)) return "a hard link under a symlink of the archive's";
      }
    }
    return undefined;
  }
}
