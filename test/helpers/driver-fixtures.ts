// What the driver contract (../driver-contract.test.ts) needs of each driver: whether it can run
// here, its config and manifest driver map, what it needs set up and torn down, and a look at what
// one run of it left on the host. Everything else the contract asks the same way of every driver.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import Docker from "dockerode";
import { defaultDriverConfig, type DriverConfig } from "../../internal/config/config.js";
import { dockerClient } from "../../internal/driver/docker/docker.js";
import { stateDirOf } from "../../internal/driver/qemu/qemu.js";
import { hostStatePath, runName, type RunRef } from "../../internal/driver/run.js";
import { busyboxImage, dockerTestConfig, dockerSkip, leftovers as dockerLeftovers } from "./docker.js";
import { which } from "./env.js";
import { bootByHand, ensureFixtureImage, qemuConfig, qemuMissing, qemuProcesses, sshConfig, sshRun, type HandBootedVm } from "./qemu.js";

export interface DriverFixture {
  /** The contract's name for it (a driver type, or "podman": the docker driver on Podman). */
  name: string;
  /** The service name for requireService (DJINN_TEST_REQUIRE lists these). */
  service: string;
  /** Why it cannot run here, or undefined. */
  missing(): Promise<string | undefined>;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  config(): DriverConfig;
  /** The manifest's driver map. */
  manifest(): Record<string, string>;
  /** What `ref` left on the host (or machine), each named; [] when nothing. */
  leftovers(ref: RunRef): Promise<string[]>;
  /** Why the driver has no reap, when it has none by design. */
  noReap?: string;
}

/** os: workspaces under the worker's host-state root, named by the run. */
const osFixture: DriverFixture = {
  name: "os",
  service: "os",
  missing: async () => undefined,
  setup: async () => undefined,
  teardown: async () => undefined,
  config: defaultDriverConfig,
  manifest: () => ({ type: "os" }),
  leftovers: async (ref) => {
    const root = hostStatePath();
    if (!existsSync(root)) return [];
    return readdirSync(root).filter((f) => f.includes(runName(ref))).map((f) => path.join(root, f));
  },
};

/** A Docker-API engine: its client, config and the busybox image built in it offline. */
function engineFixture(name: string, host: () => string, extra: { missing: () => Promise<string | undefined>; start?: () => Promise<void>; stop?: () => Promise<void> }): DriverFixture {
  let image = "";
  let engine: Docker | undefined;
  return {
    name,
    service: name,
    missing: extra.missing,
    setup: async () => {
      await extra.start?.();
      engine = dockerClient(dockerTestConfig({ host: host() }));
      image = await busyboxImage(engine, host());
    },
    teardown: async () => {
      await extra.stop?.();
    },
    config: () => ({ docker: dockerTestConfig({ host: host() }), warnings: [] }),
    manifest: () => ({ type: "docker", image }),
    leftovers: async (ref) => {
      const left = await dockerLeftovers(ref.buildId, ref.run, engine);
      return [...left.containers.map((c) => `container ${c}`), ...left.volumes.map((v) => `volume ${v}`)];
    },
  };
}

const dockerFixture = engineFixture("docker", () => dockerTestConfig().host, { missing: async () => (dockerSkip ? String(dockerSkip) : undefined) });

/** The socket the podman fixture serves Podman's Docker-compatible API on: its own, so two runs never share one. */
export const PODMAN_SOCKET = `/run/djinn-test-podman-${process.pid}.sock`;
let podmanService: ChildProcess | undefined;
let podmanConf: string | undefined;

async function podmanMissing(): Promise<string | undefined> {
  if (!which("podman")) return "podman not found (Debian package podman)";
  if (process.getuid?.() !== 0) return `serving ${PODMAN_SOCKET} needs root`;
  return dockerSkip ? `the docker CLI and busybox-static build its test image: ${dockerSkip}` : undefined;
}

/**
 * Serves Podman's API until teardown. Its rootful defaults raise a container's nofile and nproc
 * limits to the maximum, which runc may not set where the worker's own hard limits are lower
 * (a container, a sandbox): "error setting rlimit type 7: operation not permitted". A
 * containers.conf of the suite's own keeps them at what this host allows.
 */
async function startPodman(): Promise<void> {
  podmanConf = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-podman-conf-"));
  const conf = path.join(podmanConf, "containers.conf");
  await fs.writeFile(conf, '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n');
  await fs.rm(PODMAN_SOCKET, { force: true });
  const child = spawn("podman", ["system", "service", "--time=0", `unix://${PODMAN_SOCKET}`], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, CONTAINERS_CONF: conf } });
  podmanService = child;
  // Should the suite die without reaching teardown, the service still goes with it.
  process.once("exit", () => child.kill("SIGKILL"));
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<never>((_, reject) => child.once("exit", (code) => reject(new Error(`podman system service exited (${code}): ${stderr.trim()}`))));
  exited.catch(() => undefined);
  const client = dockerClient(dockerTestConfig({ host: `unix://${PODMAN_SOCKET}` })) as unknown as { ping(o: object): Promise<unknown> };
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ok = await Promise.race([client.ping({ abortSignal: AbortSignal.timeout(2000) }).then(() => true, () => false), exited]);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`podman system service did not answer on ${PODMAN_SOCKET}: ${stderr.trim()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopPodman(): Promise<void> {
  const child = podmanService;
  podmanService = undefined;
  if (child && child.exitCode === null && child.signalCode === null) {
    const gone = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await gone;
  }
  await fs.rm(PODMAN_SOCKET, { force: true });
  if (podmanConf) await fs.rm(podmanConf, { recursive: true, force: true });
}

const podmanFixture = engineFixture("podman", () => `unix://${PODMAN_SOCKET}`, { missing: podmanMissing, start: startPodman, stop: stopPodman });

/** qemu: one machine per run, found by its state directory. */
const qemuFixture: DriverFixture = {
  name: "qemu",
  service: "qemu",
  missing: async () => qemuMissing(),
  setup: ensureFixtureImage,
  teardown: async () => undefined,
  config: () => qemuConfig(),
  manifest: () => ({ type: "qemu", image: "tiny" }),
  leftovers: async (ref) => {
    const dir = stateDirOf(ref);
    return [...qemuProcesses(dir).map((pid) => `qemu process ${pid}`), ...(existsSync(dir) ? [dir] : [])];
  },
};

/** ssh: the fixture machine booted by hand (as test/ssh.test.ts does); a build may leave script directories in its /tmp and job processes. */
let sshMachine: HandBootedVm | undefined;
const sshFixture: DriverFixture = {
  name: "ssh",
  service: "qemu",
  missing: async () => qemuMissing() ?? (which("ssh") ? undefined : "the OpenSSH client (ssh) is missing: Debian package openssh-client"),
  setup: async () => {
    await ensureFixtureImage();
    sshMachine = await bootByHand();
  },
  teardown: async () => {
    await sshMachine?.stop();
    sshMachine = undefined;
  },
  config: () => sshConfig(),
  manifest: () => ({ type: "ssh", address: `127.0.0.1:${sshMachine!.port}` }),
  leftovers: async () => {
    // Script directories, and a job's processes (the contract's jobs are the only ones that sleep 300).
    const r = await sshRun(sshMachine!.port, `for d in /tmp/djinn-job.*; do [ -e "$d" ] && echo "$d"; done; for p in /proc/[0-9]*; do [ "$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)" = "sleep 300 " ] && echo "process $p"; done; true`);
    if (r.code !== 0) throw new Error(`listing the machine's /tmp failed (${r.code})`);
    return r.stdout.split("\n").filter(Boolean);
  },
  noReap: "the machine is not the worker's: a dead worker's jobs end with its connection, and its scripts are in the machine's /tmp",
};

export const driverFixtures: DriverFixture[] = [osFixture, dockerFixture, podmanFixture, qemuFixture, sshFixture];
