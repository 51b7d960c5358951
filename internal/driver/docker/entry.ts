// The docker driver as the catalogue (../catalogue.ts) lists it.
import type { DriverDeclaration } from "../section.js";
import { imageReferenceProblem } from "./reference.js";
import { dockerSection, type DockerConfig } from "./section.js";

export const docker: DriverDeclaration<"docker", DockerConfig> = {
  section: dockerSection,
  queue: () => "docker",
  queueRule: "docker",
  manifestRequires: "image",
  // Refused when the manifest is read (run, submit, the worker), not when the engine is asked for it.
  manifestProblem: (driver) => {
    const problem = driver.image === undefined ? undefined : imageReferenceProblem(driver.image);
    return problem ? { key: "image", problem } : undefined;
  },
  load: () => import("./docker.js"),
};
