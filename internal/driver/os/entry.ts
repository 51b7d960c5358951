// The os driver as the catalogue (../catalogue.ts) lists it.
import type { DriverDeclaration } from "../section.js";
import { osSection, type OsConfig } from "./section.js";

export const os: DriverDeclaration<"os", OsConfig> = {
  section: osSection,
  queue: () => "os",
  queueRule: "os",
  sweeps: true,
  load: () => import("./os.js"),
};
