// How a driver expands an artifact's shell pattern (`*`, `?`, `[...]`): with the environment's own
// `sh`, so a pattern means there what it means in a job's commands. What each match is named is
// the runner's (../../runner/artifact-names.ts).
import path from "node:path";

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
