// Registers every driver this worker has; importing this module is how the registry is filled.
import "./os/os.js";
import "./docker/docker.js";
import "./ssh/ssh.js";
import "./qemu/qemu.js";
