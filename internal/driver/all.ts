// Every driver this worker has, by name; each module is imported when a build or check first needs it.
import { registerDriverModule } from "./driver.js";

registerDriverModule("os", () => import("./os/os.js"));
registerDriverModule("docker", () => import("./docker/docker.js"));
registerDriverModule("ssh", () => import("./ssh/ssh.js"));
registerDriverModule("qemu", () => import("./qemu/qemu.js"));
