// Where a command finds worker.toml and driver.toml when no flag names them: in the current
// directory first, as Djinn's worker does, then where the .deb installs them.
import { existsSync } from "node:fs";

export const CONFIG_SEARCH = {
  worker: ["djinn-worker.toml", "/etc/djinn/worker.toml"],
  driver: ["djinn-driver.toml", "/etc/djinn/driver.toml"],
} as const;

/** The first of the places that exists; the first place when none does, so the error names it. */
export function defaultConfigFile(kind: keyof typeof CONFIG_SEARCH): string {
  return CONFIG_SEARCH[kind].find((file) => existsSync(file)) ?? CONFIG_SEARCH[kind][0];
}
