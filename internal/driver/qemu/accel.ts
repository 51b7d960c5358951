// Whether KVM really works here. /dev/kvm can exist and open while guests still cannot run (nested
// or paravirtual hosts fail on the first emulated instruction), so on x86 the probe boots a
// 64-byte multiboot kernel that does an IRET and then writes to QEMU's debug-exit port: only a
// working accelerator gets that far. The answer is cached for the life of the process.
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";

export interface KvmVerdict {
  usable: boolean;
  /** Why not, in a few words, when not usable. */
  reason?: string;
}

const PROBE_TIMEOUT_MS = 10_000;
const verdicts = new Map<string, Promise<KvmVerdict>>();

/** The cached verdict for `binary` (qemu-system-<arch>). */
export function kvmUsable(binary: string, arch: string): Promise<KvmVerdict> {
  let verdict = verdicts.get(binary);
  if (!verdict) {
    verdict = probeKvm(binary, arch);
    verdicts.set(binary, verdict);
  }
  return verdict;
}

/** pushfd; push cs; push target; iretd; target: mov al,1; out 0xf4,al; hlt; jmp hlt */
function multibootProbe(): Buffer {
  const image = Buffer.alloc(64);
  const magic = 0x1badb002;
  const flags = 0x00010000; // addresses in the header: a flat binary loaded at 1 MiB
  image.writeUInt32LE(magic, 0);
  image.writeUInt32LE(flags, 4);
  image.writeUInt32LE((-(magic + flags)) >>> 0, 8);
  image.writeUInt32LE(0x100000, 12);
  image.writeUInt32LE(0x100000, 16);
  image.writeUInt32LE(0, 20);
  image.writeUInt32LE(0, 24);
  image.writeUInt32LE(0x100020, 28);
  Buffer.from([0x9c, 0x0e, 0x68, 0x28, 0x00, 0x10, 0x00, 0xcf, 0xb0, 0x01, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]).copy(image, 32);
  return image;
}

async function probeKvm(binary: string, arch: string): Promise<KvmVerdict> {
  try {
    await fs.access("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch (err) {
    return { usable: false, reason: (err as NodeJS.ErrnoException).code === "ENOENT" ? "no /dev/kvm" : `/dev/kvm: ${(err as Error).message}` };
  }
  const x86 = arch === "x86_64" || arch === "i386";
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-kvm-probe-"));
  try {
    let args: string[];
    if (x86) {
      const kernel = path.join(dir, "probe.bin");
      await fs.writeFile(kernel, multibootProbe());
      args = ["-accel", "kvm", "-nodefaults", "-display", "none", "-m", "16", "-kernel", kernel, "-device", "isa-debug-exit,iobase=0xf4,iosize=1", "-serial", "none", "-monitor", "none"];
    } else {
      // Elsewhere only accelerator start-up can be checked: QMP greets once it has succeeded.
      args = ["-accel", "kvm", "-machine", "none", "-nodefaults", "-display", "none", "-S", "-qmp", "stdio"];
    }
    return await new Promise<KvmVerdict>((resolve) => {
      const child = spawn(binary, args, { stdio: ["pipe", "pipe", "pipe"] });
      let stderr = "";
      let done = false;
      let exited = false;
      const finish = (v: KvmVerdict) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        // Answer only once the test machine is gone: no probe outlives its verdict.
        if (exited || child.pid === undefined) return resolve(v);
        child.once("exit", () => resolve(v));
        child.kill("SIGKILL");
      };
      const timer = setTimeout(() => finish({ usable: false, reason: `a test machine did not finish within ${PROBE_TIMEOUT_MS / 1000}s` }), PROBE_TIMEOUT_MS);
      child.on("error", (err) => finish({ usable: false, reason: `cannot start ${binary}: ${err.message}` }));
      child.stdout.on("data", (d: Buffer) => {
        if (!x86 && d.toString().includes('"QMP"')) finish({ usable: true });
      });
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
        if (/KVM internal error|emulation failure/i.test(stderr)) finish({ usable: false, reason: "the test machine failed: KVM internal error (emulation failure)" });
      });
      child.on("exit", (code) => {
        exited = true;
        // isa-debug-exit turns the byte 1 into exit status (1 << 1) | 1.
        if (x86 && code === 3) return finish({ usable: true });
        const line = stderr.split("\n").map((l) => l.trim()).find((l) => l && !/warning/i.test(l));
        finish({ usable: false, reason: line ? line.replace(/^qemu-system-\S+:\s*/, "") : `the test machine exited with status ${code}` });
      });
    });
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
