// Tar streams that try to write outside where they are unpacked: names that are absolute or climb
// out, hard links to such names, and files beneath symlinks the archive itself makes (one absolute,
// one climbing `../..`), beside entries that belong (a file, a long name, a hard link, both symlinks).
import tar from "tar-stream";
import { buffer } from "node:stream/consumers";
import type { Readable } from "node:stream";

export interface HostileTar {
  bytes: Buffer;
  /** Names the guard must leave out, in the archive's order. */
  refused: string[];
}

/**
 * `outside`: an absolute directory the archive must not reach (its symlink points there);
 * `marker`: a word in every name that must not be written, to look for afterwards. Without
 * `climbing`, no relative symlink leads out (`deps/up -> ../..` and what is beneath it): the Docker
 * Engine refuses a whole archive that holds one ("invalid symlink").
 */
export async function hostileTar(outside: string, marker: string, climbing = true): Promise<HostileTar> {
  const pack = tar.pack();
  const long = `deps/${"l".repeat(150)}`;
  const entries: [Partial<tar.Header> & { name: string }, string?][] = [
    [{ name: "deps/", type: "directory", mode: 0o755 }],
    [{ name: "deps/ok", mode: 0o644 }, "ok\n"],
    [{ name: long, mode: 0o644 }, "long\n"],
    [{ name: "deps/abs", type: "symlink", linkname: outside }],
    [{ name: "deps/up", type: "symlink", linkname: "../.." }],
    [{ name: "deps/hard", type: "link", linkname: "deps/ok" }],
    [{ name: `deps/abs/${marker}-through-abs`, mode: 0o644 }, "escaped\n"],
    [{ name: `deps/up/${marker}-through-up`, mode: 0o644 }, "escaped\n"],
    [{ name: `../${marker}-dotdot`, mode: 0o644 }, "escaped\n"],
    [{ name: `${outside}/${marker}-absolute`, mode: 0o644 }, "escaped\n"],
    [{ name: `deps/a/../../../${marker}-climb`, mode: 0o644 }, "escaped\n"],
    [{ name: `deps/${"n".repeat(120)}/../../../${marker}-long-climb`, mode: 0o644 }, "escaped\n"],
    [{ name: `deps/${marker}-hard-out`, type: "link", linkname: `../${marker}-dotdot` }],
    [{ name: "deps/after", mode: 0o644 }, "after\n"],
  ];
  if (!climbing) entries.splice(0, entries.length, ...entries.filter(([h]) => !h.name.startsWith("deps/up")));
  for (const [header, body] of entries) pack.entry({ mtime: new Date(0), ...header }, body ?? "");
  pack.finalize();
  const refused = entries.map(([h]) => h.name).filter((n) => n.includes(marker));
  return { bytes: await buffer(pack as unknown as Readable), refused };
}
