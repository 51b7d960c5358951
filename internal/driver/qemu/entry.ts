// The qemu driver as the catalogue (../catalogue.ts) lists it: served on qemu-<this host's arch>.
import type { DriverDeclaration } from "../section.js";
import { hostQemuArch, qemuSection, type QemuConfig } from "./section.js";

export const qemu: DriverDeclaration<"qemu", QemuConfig> = {
  section: qemuSection,
  queue: () => `qemu-${hostQemuArch()}`,
  queueRule: "qemu-<host arch>",
  manifestRequires: "image",
  misnamed(value) {
    const named = /^qemu(?:-(.*))?$/.exec(value);
    if (!named) return undefined;
    return `the qemu driver must name this host's arch: use "qemu-${hostQemuArch()}"${named[1] ? `, not "${value}"` : ""}`;
  },
  load: () => import("./qemu.js"),
};
