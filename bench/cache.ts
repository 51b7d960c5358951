// Build caches per driver: a cache of --files small files (--kib KiB each; 20,000 × 10 KiB ≈ 200
// MiB by default) saved and restored through the driver, against the same copy done by hand with
// the host's `tar`/`gzip -1` on the same machine; the worker's RSS growth meanwhile; and a job that
// makes the files only when they are missing, cold (make, save) against warm (restore, skip). On the
// os driver, gzip level 1 against the default (6).
//
// What "by hand" is, per driver (printed with the figures):
// - os: `tar -cf - -C WS deps | gzip -1 > FILE`, and `gzip -dc | tar -xf - -C WS`.
// - docker: `docker exec CTR tar ... | gzip -1` (tar in the container, over the exec stream), and
//   `docker cp CTR:/workspace/deps - | gzip -1` (the Engine's archive API, the transport the driver
//   uses); restores likewise.
// - ssh, qemu: the OpenSSH client (C) running the guest's tar over one exec channel, chacha20-poly1305
//   as both it and the driver ask for, into `gzip -1`.
// GNU gzip -1 is not zlib's level 1 (the worker's): the stored sizes of both are printed. The
// worker's save also flushes its entry (fsync) before renaming it into place, which a plain
// `gzip > FILE` does not: the by-hand figures are printed without and with `sync FILE` after them.
//
// ssh and qemu run a TCG guest (the test fixture, 1 GiB of memory: its files live in RAM); making
// the files there with awk is slow, so the job that makes them unpacks a .tgz placed in the guest's
// /tmp beforehand (not timed), and --guest-files may ask for fewer files there.
// Usage: node build/bench/cache.js [--files N] [--guest-files N] [--kib N] [--drivers os,docker,ssh,qemu]
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { getDriver, type Driver } from "../internal/driver/driver.js";
import "../internal/driver/all.js";
import { LABEL_BUILD } from "../internal/driver/docker/docker.js";
import { stateDirOf } from "../internal/driver/qemu/qemu.js";
import { freshRunToken } from "../internal/driver/run.js";
import { CacheStore } from "../internal/cache/store.js";
import { driverFixtures } from "../test/helpers/driver-fixtures.js";
import { bootByHand, ensureFixtureImage, qemuConfig, qemuProcesses, sshConfig, SSH_OPTIONS, type HandBootedVm } from "../test/helpers/qemu.js";
import { numberArg } from "./lib/args.js";

const files = numberArg("files", 20_000);
const guestFiles = numberArg("guest-files", files);
const kib = numberArg("kib", 10);
const GUEST_MIB = 1024;
const wanted = (process.argv[process.argv.indexOf("--drivers") + 1] ?? "").split(",").filter((d) => process.argv.includes("--drivers") && d);
const drivers = wanted.length ? wanted : ["os", "docker", "ssh", "qemu"];
const log = pino({ level: "silent" });
const sink = () => new Writable({ write: (_c, _e, done) => done() });
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** Source-like files in deps/: text lines, different in each file, about `kib` KiB each. */
const awkMake = (n: number) =>
  `mkdir -p deps && cd deps && awk -v n=${n} -v kib=${kib} 'BEGIN { for (i = 0; i < n; i++) { f = sprintf("d%03d/f%05d.go", i % 200, i); if (i < 200) system("mkdir -p " sprintf("d%03d", i)); s = ""; while (length(s) < kib * 1024) s = s sprintf("func f%d_%d(x int) int { return x * %d + %d } // line %d\\n", i, length(s), i, length(s), length(s)); printf "%s", substr(s, 1, kib * 1024) > f; close(f) } }'`;
const GUEST_SOURCE = "/tmp/djinn-bench-deps.tgz";

/** How one driver is set up for the bench, and how its environment is reached by hand. */
interface Target {
  name: string;
  files: number;
  missing(): Promise<string | undefined>;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  driverOptions(): { manifest: Record<string, string>; config: ReturnType<typeof qemuConfig> };
  /** The job that makes deps/ when it is missing (its body; the bench adds the check). */
  make: string;
  /** `[out, in]` shell commands by hand: a tar of deps on stdout, and one unpacked from stdin; others to compare with. */
  byHand(driver: DriverRef): Promise<{ label: string; out: string; into: string }[]>;
}

interface DriverRef {
  buildId: string;
  run: string;
  workspace(): Promise<string>;
}

function fixture(name: string) {
  const f = driverFixtures.find((d) => d.name === name);
  if (!f) throw new Error(`no fixture ${name}`);
  return f;
}

/** The port the qemu driver's machine forwards to its SSH, read from its command line. */
function qemuSshPort(ref: DriverRef): number {
  const [pid] = qemuProcesses(stateDirOf({ buildId: ref.buildId, run: ref.run }));
  const args = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  const port = /hostfwd=tcp:127\.0\.0\.1:(\d+)-:22/.exec(args)?.[1];
  if (!port) throw new Error("cannot find the qemu machine's SSH port");
  return Number(port);
}

const overSsh = (port: () => number) => async () => {
  const ssh = `ssh ${SSH_OPTIONS.join(" ")} -c chacha20-poly1305@openssh.com -p ${port()} root@127.0.0.1`;
  return [{ label: "OpenSSH + tar", out: `${ssh} tar -cf - deps`, into: `${ssh} tar -xf -` }];
};

function targets(): Target[] {
  const os_ = fixture("os");
  const docker = fixture("docker");
  let vm: HandBootedVm | undefined;
  const guestMake = `tar -xzf ${GUEST_SOURCE}`;
  return [
    {
      name: "os", files, make: awkMake(files), missing: os_.missing, setup: os_.setup, teardown: os_.teardown,
      driverOptions: () => ({ manifest: os_.manifest(), config: os_.config() }),
      byHand: async (ref) => {
        const ws = await ref.workspace();
        return [{ label: "tar", out: `tar -cf - -C ${ws} deps`, into: `tar -xf - -C ${ws}` }];
      },
    },
    {
      name: "docker", files, make: awkMake(files), missing: docker.missing, setup: docker.setup, teardown: docker.teardown,
      driverOptions: () => ({ manifest: docker.manifest(), config: docker.config() }),
      byHand: async (ref) => {
        const id = `$(docker ps -q --filter label=${LABEL_BUILD}=${ref.buildId})`;
        return [
          { label: "docker exec tar", out: `docker exec -w /workspace ${id} tar -cf - deps`, into: `docker exec -i -w /workspace ${id} tar -xf -` },
          { label: "docker cp", out: `docker cp ${id}:/workspace/deps -`, into: `docker cp - ${id}:/workspace` },
        ];
      },
    },
    {
      name: "ssh", files: guestFiles, make: guestMake, missing: fixture("ssh").missing,
      setup: async () => {
        await ensureFixtureImage();
        vm = await bootByHand({ memoryMiB: GUEST_MIB });
      },
      teardown: async () => vm?.stop(),
      driverOptions: () => ({ manifest: { type: "ssh", address: `127.0.0.1:${vm!.port}` }, config: sshConfig() }),
      byHand: (ref) => overSsh(() => vm!.port)(),
    },
    {
      name: "qemu", files: guestFiles, make: guestMake, missing: fixture("qemu").missing, setup: ensureFixtureImage, teardown: async () => undefined,
      driverOptions: () => ({ manifest: { type: "qemu", image: "tiny" }, config: qemuConfig({ memory: GUEST_MIB }) }),
      byHand: (ref) => overSsh(() => qemuSshPort(ref))(),
    },
  ];
}

async function job(driver: Driver, script: string): Promise<number> {
  const t0 = performance.now();
  const r = await driver.execute({ name: "bench", script: `set -e\n${script}\n`, env: {}, output: sink(), signal: new AbortController().signal });
  if (r.exitCode !== 0) throw new Error(`job exited ${r.exitCode}: ${script.slice(0, 60)}`);
  return performance.now() - t0;
}

/** Runs `fn`, measuring its time and the worker's RSS growth (sampled). */
async function measured(fn: () => Promise<unknown>): Promise<{ ms: number; rssMiB: number }> {
  // What the step before left to write back is not this step's cost.
  await sh("sync");
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
  const t0 = performance.now();
  await fn();
  const ms = performance.now() - t0;
  clearInterval(timer);
  return { ms, rssMiB: (Math.max(peak, process.memoryUsage().rss) - before) / 1048576 };
}

function sh(command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", command], { stdio: ["ignore", "ignore", "inherit"] });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`exit ${code}: ${command}`))));
  });
}

/** A .tgz of `n` files made on the host (for the guests' make job). */
async function sourceTgz(dir: string, n: number): Promise<string> {
  const src = path.join(dir, `src-${n}`);
  await fs.mkdir(src, { recursive: true });
  await sh(`cd ${src} && ${awkMake(n)} && cd .. && tar -czf ${src}.tgz deps && rm -rf ${src}`);
  return `${src}.tgz`;
}

async function bench(target: Target, dir: string): Promise<void> {
  await target.setup();
  const buildId = `bench-cache-${target.name}-${process.pid}`;
  const run = freshRunToken();
  const driver = (await getDriver(target.driverOptions().manifest.type)).create({ buildId, run, ...target.driverOptions(), log });
  const n = target.files;
  try {
    await driver.create(sink(), new AbortController().signal);
    await job(driver, "rm -rf deps");
    const ref: DriverRef = {
      buildId,
      run,
      workspace: async () => {
        let ws = "";
        await driver.execute({ name: "pwd", script: "pwd", env: {}, output: new Writable({ write: (c, _e, done) => ((ws += c), done()) }), signal: new AbortController().signal });
        return ws.trim();
      },
    };
    const hands = await target.byHand(ref);
    if (target.make.startsWith("tar")) {
      const tgz = await sourceTgz(dir, n);
      const placed = hands[0].into.replace(/ tar -xf -$/, ` 'cat > ${GUEST_SOURCE}'`);
      await sh(`${placed} < ${tgz}`);
    }
    const make = `[ -d deps ] || { ${target.make}; }`;
    const store = new CacheStore({ root: path.join(dir, target.name) });
    const section = { base: "workspace" as const, paths: ["deps"], tar: async () => (await driver.packTar!("workspace", ["deps"], new AbortController().signal)).archive };
    const cold = await job(driver, make);
    const save = await measured(() => store.save(undefined, "k", [section]));
    const handFile = path.join(dir, `${target.name}-hand.tar.gz`);
    const handSaves: { label: string; ms: number; synced: number }[] = [];
    for (const h of hands) {
      const plain = await measured(() => sh(`${h.out} | gzip -1 > ${handFile}`));
      const synced = await measured(() => sh(`${h.out} | gzip -1 > ${handFile} && sync ${handFile}`));
      handSaves.push({ label: h.label, ms: plain.ms, synced: synced.ms });
    }
    await job(driver, "rm -rf deps");
    const restore = await measured(async () => {
      const entry = await store.open(undefined, "k");
      try {
        for (const s of entry!.sections) await driver.unpackTar!(s.base, s.tar(), new AbortController().signal);
      } finally {
        await entry!.close();
      }
    });
    const warm = await job(driver, `${make}\n[ $(find deps -type f | wc -l) -eq ${n} ]`);
    const handRestores: { label: string; ms: number }[] = [];
    for (const h of hands) {
      await job(driver, "rm -rf deps");
      handRestores.push({ label: h.label, ms: (await measured(() => sh(`gzip -dc < ${handFile} | ${h.into}`))).ms });
      await job(driver, `[ $(find deps -type f | wc -l) -eq ${n} ]`);
    }
    const stored = (await fs.stat(store.entryPath(undefined, "k"))).size;
    const handBytes = (await fs.stat(handFile)).size;
    const ratio = (ours: number, theirs: number) => `${(ours / theirs).toFixed(2)}×`;
    console.log(`${target.name}: ${n} files of ${kib} KiB; stored ${(stored / 1048576).toFixed(1)} MiB by zlib level 1 (by hand, GNU gzip -1: ${(handBytes / 1048576).toFixed(1)} MiB)`);
    console.log(`  save     ${secs(save.ms).padStart(8)}  RSS +${save.rssMiB.toFixed(1)} MiB  (the worker flushes its entry)`);
    for (const h of handSaves) console.log(`    by hand, ${h.label}: ${secs(h.ms)} (${ratio(save.ms, h.ms)}); with sync FILE ${secs(h.synced)} (${ratio(save.ms, h.synced)})`);
    console.log(`  restore  ${secs(restore.ms).padStart(8)}  RSS +${restore.rssMiB.toFixed(1)} MiB`);
    for (const h of handRestores) console.log(`    by hand, ${h.label}: ${secs(h.ms)} (${ratio(restore.ms, h.ms)})`);
    console.log(`  two builds (make: ${target.make.startsWith("tar") ? `untar a .tgz in ${GUEST_SOURCE}` : "awk"}): cold (make the files ${secs(cold)} + save ${secs(save.ms)}) = ${secs(cold + save.ms)}; warm (restore ${secs(restore.ms)} + job ${secs(warm)}) = ${secs(restore.ms + warm)}`);
    if (target.name === "os") {
      const six = new CacheStore({ root: path.join(dir, "level6"), level: 6 });
      const level6 = await measured(() => six.save(undefined, "k", [section]));
      const bytes6 = (await fs.stat(six.entryPath(undefined, "k"))).size;
      console.log(`  gzip level 1: save ${secs(save.ms)}, ${(stored / 1048576).toFixed(1)} MiB; level 6 (the default): save ${secs(level6.ms)}, ${(bytes6 / 1048576).toFixed(1)} MiB`);
    }
  } finally {
    await driver.destroy();
    await target.teardown();
  }
}

const dir = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-bench-cache-"));
try {
  const all = targets();
  for (const name of drivers) {
    const target = all.find((t) => t.name === name);
    if (!target) throw new Error(`no driver ${name}: os, docker, ssh or qemu`);
    const missing = await target.missing();
    if (missing) {
      console.log(`${name}: skipped: ${missing}`);
      continue;
    }
    await bench(target, dir);
  }
} finally {
  await fs.rm(dir, { recursive: true, force: true });
}
