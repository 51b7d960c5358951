// Artifact sources as Djinn takes them: a path or a shell pattern (`*`, `?`, `[...]`) in the build
// environment, each match collected under its base name or under the destination with `*`
// replaced by that base name. Every driver expands patterns with the environment's own `sh`, so
// a pattern means there what it means in a job's commands.
import path from "node:path";

/** True when `source` holds a pattern character of the shell. */
export function isPattern(source: string): boolean {
  return /[*?[]/.test(source);
}

/**
 * Lists what `$2` matches, as absolute paths each ended by a NUL. `$1` is the workspace, which
 * relative patterns are under; `~` and `~/...` are under `$HOME`. The pattern is expanded by an
 * unquoted parameter expansion with IFS empty: pathname expansion only, never word splitting nor
 * any evaluation of the text. `.` and `..` are never matches.
 */
export const GLOB_SCRIPT = [
  'cd "$1" || exit 3',
  'case $2 in "~") p=$HOME ;; "~/"*) p=$HOME/${2#"~/"} ;; *) p=$2 ;; esac',
  "IFS=",
  "set +f",
  "for f in $p; do",
  '  case ${f##*/} in .|..) continue ;; esac',
  '  [ -e "$f" ] || [ -h "$f" ] || continue',
  "  case $f in /*) printf '%s\\000' \"$f\" ;; *) printf '%s\\000' \"$1/$f\" ;; esac",
  "done",
].join("\n");

/** Most bytes of GLOB_SCRIPT's output a driver reads: far more than any real pattern's matches, and a bound on memory. */
export const GLOB_OUTPUT_LIMIT = 16 * 1024 * 1024;

/** The paths GLOB_SCRIPT printed. */
export function parseGlobOutput(text: string): string[] {
  return text.split("\0").filter((p) => p !== "").map((p) => path.posix.normalize(p));
}

/**
 * The artifact name of `match`, one of `count` matches of `art.source` (Djinn's rule): `*` in the
 * destination becomes the match's base name; a pattern without a destination of its own gives
 * the base name. A destination naming one file while a pattern matched several gives each its
 * base name, and `note` says so. The store confines whatever name comes out.
 */
export function artifactName(art: { source: string; dest: string }, match: string, count: number): { name: string; note?: string } {
  const base = path.posix.basename(match);
  if (!isPattern(art.source)) return { name: art.dest.replaceAll("*", base) };
  // Without "=> dest" the destination is the pattern's own base name ("*.tar.gz"): each match keeps its own.
  if (art.dest === path.posix.basename(art.source)) return { name: base };
  if (art.dest.includes("*")) return { name: art.dest.replaceAll("*", base) };
  if (count > 1) return { name: base, note: `${count} files match ${art.source} but ${art.dest} names one: each is collected under its base name (write * in the destination to place them)` };
  return { name: art.dest };
}
