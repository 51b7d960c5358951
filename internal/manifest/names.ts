// What is said of a manifest without parsing one: the setup and cache stages' names and the size refusal.
// Apart from the parser (./manifest.ts), so a worker loads the YAML library only once a build needs it.

/** The setup stage is named like Djinn's (`setup - #<label>`) so it never collides with a user's own "setup" stage. */
export function setupStageName(label: string): string {
  return `setup - #${label}`;
}

/** The stage after the manifest's own that saves the build's cache (a manifest with `cache:` only), named like the setup stage. */
export function cacheStageName(label: string): string {
  return `cache - #${label}`;
}

/** Why a manifest of `bytes` (or more, when only that much was read) is refused: the one line every reader gives. */
export function manifestTooLarge(limit: number, bytes?: number, setting = "manifest_limit in worker.toml"): string {
  const size = bytes === undefined ? "larger than" : `${bytes} bytes, over`;
  return `the manifest is ${size} the limit of ${limit} bytes${setting ? ` (${setting})` : ""}`;
}
