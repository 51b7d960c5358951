// The variables every job of a build gets, whichever driver runs it; the build's own variables go on top.

/** `CI=true` and `DJINN_BUILD=<id>`, as Djinn sets them. */
export function buildBaseEnv(buildId: string): Record<string, string> {
  return { CI: "true", DJINN_BUILD: buildId };
}

/** The same as `NAME=value` strings, the form a container's environment takes. */
export function envList(env: Record<string, string>): string[] {
  return Object.entries(env).map(([key, value]) => `${key}=${value}`);
}
