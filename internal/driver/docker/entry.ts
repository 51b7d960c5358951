// The docker driver as the catalogue (../catalogue.ts) lists it.
import type { DriverDeclaration } from "../section.js";
import { dockerSection, type DockerConfig } from "./section.js";

export const docker: DriverDeclaration<"docker", DockerConfig> = {
  section: dockerSection,
  queue: () => "docker",
  queueRule: "docker",
  manifestRequires: "image",
  load: () => import("./docker.js"),
};
