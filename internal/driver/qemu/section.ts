// The [qemu] section of driver.toml and the host arch the driver's queue is named after.
// Engine-free: the engine module imports its settings from here.
import type { SectionSpec } from "../../settings/spec.js";
import type { DriverSection } from "../section.js";

/** The arch name qemu uses for this host (qemu-system-<arch>). */
export function hostQemuArch(): string {
  const map: Record<string, string> = { x64: "x86_64", arm64: "aarch64", arm: "arm", ia32: "i386", ppc64: "ppc64", s390x: "s390x", riscv64: "riscv64" };
  return map[process.arch] ?? process.arch;
}

export interface QemuConfig {
  disks?: string;
  cpus: number;
  memory: number;
  accel: "auto" | "kvm" | "tcg";
  bootTimeoutMs: number;
  key?: string;
  disk_interface: "virtio" | "ide";
  net_device: string;
}

const spec: SectionSpec = {
  keys: {
    disks: { kind: "string", doc: "Directory of base images for `run` (the daemon uses <images.path>/qemu/_base/<arch>)." },
    cpus: { kind: "integer", default: 1, min: 1, doc: "Virtual CPUs per machine." },
    memory: { kind: "integer", default: 2048, min: 16, doc: "Memory per machine in MB (qemu -m)." },
    accel: { kind: "string", default: "auto", oneOf: ["auto", "kvm", "tcg"], doc: "Acceleration; auto = KVM when it works, else TCG." },
    boot_timeout: { kind: "duration", default: "5m", doc: "How long to wait for the machine's SSH to answer." },
    key: { kind: "string", doc: "Private key for root in the guest; none = Djinn's empty-password root." },
    disk_interface: { kind: "string", default: "virtio", oneOf: ["virtio", "ide"], doc: "Disk interface for images without virtio drivers." },
    net_device: { kind: "string", default: "virtio-net-pci", doc: "NIC model (virtio-net-pci, e1000, ...)." },
  },
};

export const qemuSection: DriverSection<"qemu", QemuConfig> = {
  name: "qemu",
  spec,
  settings: ({ boot_timeout, ...rest }) => ({ ...(rest as Omit<QemuConfig, "bootTimeoutMs">), bootTimeoutMs: boot_timeout as number }),
  shown: ({ bootTimeoutMs, ...rest }) => ({ ...rest, boot_timeout: bootTimeoutMs }),
};
