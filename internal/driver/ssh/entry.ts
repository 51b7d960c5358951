// The ssh driver as the catalogue (../catalogue.ts) lists it.
import type { DriverDeclaration } from "../section.js";
import { sshSection, type SshConfig } from "./section.js";

export const ssh: DriverDeclaration<"ssh", SshConfig> = {
  section: sshSection,
  queue: () => "ssh",
  queueRule: "ssh",
  manifestRequires: "address",
  load: () => import("./ssh.js"),
};
