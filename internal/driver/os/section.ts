// The [os] section of driver.toml: it has no keys; its presence makes the driver available.
import type { DriverSection } from "../section.js";

export type OsConfig = Record<string, never>;

export const osSection: DriverSection<"os", OsConfig> = {
  name: "os",
  spec: { keys: {} },
  settings: () => ({}),
  shown: () => ({}),
};
