// The qemu driver against real machines: the fixture image booted under TCG (or KVM when it works),
// builds driven through the real runner.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import pino from "pino";
import type { DriverConfig } from "../internal/config/config.js";
import { DriverError, getDriver, type RunRef } from "../internal/driver/driver.js";
import { freshRunToken } from "../internal/driver/run.js";
import "../internal/driver/all.js";
import { kvmUsable } from "../internal/driver/qemu/accel.js";
import { portSource, resolveImage, stateRoot, stateDirOf } from "../internal/driver/qemu/qemu.js";
import { ArtifactStore, ObjectStore } from "../internal/fs/store.js";
import { parseManifest } from "../internal/manifest/manifest.js";
import { planBuild } from "../internal/runner/plan.js";
import type { Status } from "../internal/runner/status.js";
import { runBuild } from "../internal/runner/runner.js";
import { cliPath, requireService } from "./helpers/env.js";
import { collectingReporter, ensureFixtureImage, qemuConfig, qemuMissing, qemuProcesses, FIXTURE_DISKS, FIXTURE_KEY } from "./helpers/qemu.js";

const skip = requireService("qemu", qemuMissing());
const log = pino({ level: "silent" });
let counter = 0;
const buildIds: string[] = [];
/** Directories the suite made; removed after it. */
const temps: string[] = [];

/** The run each test build makes: one per build id. */
const runs = new Map<string, string>();
const refOf = (buildId: string): RunRef => {
  if (!runs.has(buildId)) runs.set(buildId, freshRunToken());
  return { buildId, run: runs.get(buildId)! };
};

function newBuildId(): string {
  const id = `qemu-test-${process.pid}-${++counter}`;
  buildIds.push(id);
  return id;
}

interface BuildOutcome {
  status: Status;
  reporter: ReturnType<typeof collectingReporter>;
  buildId: string;
  artifacts: string;
}

async function build(yaml: string, opts: { config?: DriverConfig; objects?: string; artifactLimit?: number; timeoutMs?: number; signal?: AbortSignal; onOutput?: (job: string, text: string) => void; onBuildId?: (id: string) => void; imagesPath?: string } = {}): Promise<BuildOutcome> {
  const { manifest } = parseManifest(yaml);
  const buildId = newBuildId();
  opts.onBuildId?.(buildId);
  const artifacts = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-qemu-art-"));
  temps.push(artifacts);
  const reporter = collectingReporter(opts.onOutput);
  const driver = (await getDriver("qemu")).create({ buildId, run: refOf(buildId).run, manifest: manifest.driver, config: opts.config ?? qemuConfig(), log, imagesPath: opts.imagesPath });
  const status = await runBuild({
    plan: planBuild(manifest, "t"),
    driver,
    env: Object.fromEntries(manifest.env),
    masks: [],
    objects: opts.objects ? { store: new ObjectStore(opts.objects), list: manifest.objects } : undefined,
    artifacts: new ArtifactStore(artifacts, opts.artifactLimit ?? 0),
    reporter,
    timeoutMs: opts.timeoutMs,
    signal: opts.signal,
  });
  return { status, reporter, buildId, artifacts };
}

function assertNoMachines(buildId: string): void {
  const dir = stateDirOf(refOf(buildId));
  assert.deepEqual(qemuProcesses(dir), [], `a qemu of ${buildId} outlived its build`);
  assert.equal(existsSync(dir), false, `${dir} was left behind`);
}

describe("qemu driver", { skip, timeout: 10 * 60_000 }, () => {
  before(async () => {
    await ensureFixtureImage();
  });

  afterEach(() => {
    // Every build of every test: no machine and no state dir left.
    for (const id of buildIds) assertNoMachines(id);
  });

  after(async () => {
    for (const dir of temps) await fs.rm(dir, { recursive: true, force: true });
    // Anything left despite the assertions above still must not outlive the suite.
    for (const id of buildIds) for (const pid of qemuProcesses(stateDirOf(refOf(id)))) process.kill(pid, "SIGKILL");
    // The drivers' shared state root goes too when no other build is using it (rmdir refuses otherwise).
    await fs.rmdir(stateRoot()).catch(() => undefined);
  });

  test("runs a two-job build with env, objects and artifacts, from inside the workspace or anywhere in the machine", async () => {
    const objects = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-qemu-obj-"));
    temps.push(objects);
    await fs.writeFile(path.join(objects, "greeting.txt"), "hello from the object store\n");
    const yaml = `
driver: {type: qemu, image: tiny}
env:
  - QUOTED=it's "quoted" $HOME \`x\`
  - PLAIN=plain
objects:
  - greeting.txt => in/deep/greeting.txt
  - greeting.txt => /tmp/abs-greeting.txt
stages: [make, check]
jobs:
  - stage: make
    name: produce
    commands:
      - 'printf "%s\\n" "$QUOTED" > quoted.txt'
      - cat in/deep/greeting.txt /tmp/abs-greeting.txt
      - cat
      - echo "after cat, stdin was closed"
      - echo to-stderr >&2
      - head -c 5000 /dev/zero > big.bin
      - ln -s /etc/passwd passwd-link
      - echo "$DJINN_BUILD $CI" > ids.txt
  - stage: check
    name: consume
    commands:
      - test -f quoted.txt
      - pwd
    artifacts:
      - quoted.txt => quoted.txt
      - big.bin => big.bin
      - ids.txt => ids.txt
      - ../../etc/passwd => escaped
      - passwd-link => passwd
      - nothing-here.txt => nothing
`;
    const { status, reporter, artifacts, buildId } = await build(yaml, { objects, artifactLimit: 1024 });
    const setup = reporter.jobs.get("create-driver")!.output;
    assert.match(setup, /Booting tiny with qemu-system-x86_64 \((TCG|KVM)/);
    assert.match(setup, /SSH up after \d+\.\ds/);
    assert.match(setup, /Placed object greeting.txt => in\/deep\/greeting.txt/);
    assert.equal(status, "passed", reporter.all());
    const produce = reporter.jobs.get("produce")!.output;
    assert.match(produce, /hello from the object store\nhello from the object store/);
    assert.match(produce, /after cat, stdin was closed/);
    assert.match(produce, /to-stderr/);
    assert.doesNotMatch(produce, /export /, "variables are set before the commands, which alone are shown");
    assert.equal(await fs.readFile(path.join(artifacts, "quoted.txt"), "utf8"), `it's "quoted" $HOME \`x\`\n`);
    assert.equal(await fs.readFile(path.join(artifacts, "ids.txt"), "utf8"), `${buildId} true\n`);
    assert.equal((await fs.stat(path.join(artifacts, "big.bin"))).size, 1024);
    const consume = reporter.jobs.get("consume")!.output;
    assert.match(consume, /\n\/root\n/, "jobs start in the workspace");
    assert.match(consume, /big.bin => big.bin: cut to 1024 bytes/);
    // The machine is thrown away: any path in it may be collected, links followed, as in Djinn.
    assert.match(consume, /artifact nothing-here.txt not collected: nothing-here.txt does not exist/);
    assert.match(await fs.readFile(path.join(artifacts, "escaped"), "utf8"), /^root:/);
    assert.match(await fs.readFile(path.join(artifacts, "passwd"), "utf8"), /^root:/);
  });

  for (const image of ["tiny", "tiny-nosftp"]) {
    test(`artifacts as Djinn collects them (absolute path, patterns, an artifact-only job), ${image === "tiny" ? "over SFTP" : "on an image without SFTP, over exec channels"}`, async () => {
      const objects = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-qemu-obj-"));
      temps.push(objects);
      await fs.writeFile(path.join(objects, "tool.sh"), "echo tool ran\n");
      const yaml = `
driver: {type: qemu, image: ${image}}
objects:
  - tool.sh => bin/tool.sh
  - tool.sh => /opt/tool.sh
stages: [make, collect]
jobs:
  - stage: make
    commands:
      - sh bin/tool.sh && sh /opt/tool.sh
      - 'echo "ID=tiny" > /etc/os-release'
      - mkdir -p dist && echo one > dist/app-1.tar.gz && echo two > dist/app-2.tar.gz
      - head -c 3000 /dev/zero > dist/big.bin
  - stage: collect
    name: gather
    artifacts:
      - /etc/os-release
      - dist/*.tar.gz
      - /root/dist/big.* => big/*
      - /nowhere/*.log
`;
      const { status, reporter, artifacts } = await build(yaml, { objects, artifactLimit: 1000 });
      assert.equal(status, "passed", reporter.all());
      const setup = reporter.jobs.get("create-driver")!.output;
      if (image === "tiny-nosftp") assert.match(setup, /no SFTP on the machine: files go over exec channels \(Received exit code 127 while establishing SFTP session\)\n/);
      else assert.doesNotMatch(setup, /no SFTP/);
      assert.match(reporter.jobs.get("make.1")!.output, /tool ran\ntool ran\n|tool ran\n(\+ .*\n)?tool ran/);
      assert.equal(await fs.readFile(path.join(artifacts, "os-release"), "utf8"), "ID=tiny\n");
      assert.equal(await fs.readFile(path.join(artifacts, "app-1.tar.gz"), "utf8"), "one\n");
      assert.equal(await fs.readFile(path.join(artifacts, "app-2.tar.gz"), "utf8"), "two\n");
      assert.equal((await fs.stat(path.join(artifacts, "big", "big.bin"))).size, 1000);
      assert.match(reporter.jobs.get("gather")!.output, /artifact \/nowhere\/\*\.log: the pattern matches nothing/);
    });
  }

  test("a failing job fails its build while another build runs at once on its own port; a taken port is retried", async () => {
    // The first port handed out is already taken by someone else: that qemu must fail to forward it and be retried.
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", resolve));
    const taken = (squatter.address() as net.AddressInfo).port;
    const realNext = portSource.next;
    let handedOut = false;
    portSource.next = async () => (handedOut ? realNext() : ((handedOut = true), taken));
    try {
      await concurrentBuilds(taken, () => handedOut);
    } finally {
      portSource.next = realNext;
      squatter.close();
    }
  });

  async function concurrentBuilds(taken: number, handedOut: () => boolean): Promise<void> {
    const passing = build(`
driver: {type: qemu, image: tiny.qcow2}
stages: [s]
jobs:
  - {stage: s, name: ok, commands: [echo fine]}
`);
    const failing = build(`
driver: {type: qemu, image: tiny}
stages: [s, never]
jobs:
  - {stage: s, name: bad, commands: [echo before, "exit 7", echo unreachable]}
  - {stage: never, name: skipped, commands: [echo no]}
`);
    const [a, b] = await Promise.all([passing, failing]);
    assert.equal(a.status, "passed", a.reporter.all());
    assert.equal(b.status, "failed", b.reporter.all());
    const bad = b.reporter.jobs.get("bad")!;
    assert.equal(bad.exitCode, 7);
    assert.match(bad.output, /before/);
    assert.doesNotMatch(bad.output, /\nunreachable/);
    assert.match(bad.output, /job bad failed: exit status 7/);
    assert.equal(b.reporter.jobs.get("skipped")!.status, "skipped");
    const portOf = (o: BuildOutcome) => /SSH up after .*\(port (\d+)\)/.exec(o.reporter.jobs.get("create-driver")!.output)?.[1];
    assert.ok(portOf(a) && portOf(b));
    assert.notEqual(portOf(a), portOf(b));
    assert.ok(handedOut(), "the taken port was offered");
    assert.ok(![portOf(a), portOf(b)].includes(String(taken)), "no build used the taken port");
  }

  test("killing a build mid-job destroys its machine", async () => {
    const kill = new AbortController();
    let seen = "";
    const { status, reporter, buildId } = await build(
      `
driver: {type: qemu, image: tiny}
stages: [s]
jobs:
  - {stage: s, name: long, commands: ["echo sleeping now", "sleep 600"]}
`,
      {
        signal: kill.signal,
        onOutput: (job, text) => {
          // Output may arrive in pieces: look at all of the job's output so far.
          if (job === "long" && (seen += text).includes("sleeping now\n")) kill.abort();
        },
      },
    );
    assert.equal(status, "killed", reporter.all());
    assert.equal(reporter.jobs.get("long")!.status, "killed");
    assertNoMachines(buildId);
  });

  test("a machine that dies mid-job fails the job at once with a clear message", async () => {
    let buildId = "";
    let seen = "";
    const { status, reporter } = await build(
      `
driver: {type: qemu, image: tiny}
stages: [s]
jobs:
  - {stage: s, name: doomed, commands: ["echo running", "sleep 600"]}
`,
      {
        onOutput: (job, text) => {
          if (job !== "doomed" || !(seen += text).includes("running\n") || !buildId) return;
          const pid = Number(readFileSync(path.join(stateDirOf(refOf(buildId)), "qemu.pid"), "utf8"));
          buildId = "";
          process.kill(pid, "SIGKILL");
        },
        onBuildId: (id) => (buildId = id),
      },
    );
    assert.equal(status, "failed");
    assert.match(reporter.jobs.get("doomed")!.output, /lost the connection to root@127\.0\.0\.1:\d+ while job s\/doomed ran/);
  });

  test("a build that times out while its machine boots leaves no machine", async () => {
    const { status, reporter, buildId } = await build(
      `
driver: {type: qemu, image: tiny}
stages: [s]
jobs:
  - {stage: s, name: never, commands: [echo no]}
`,
      { timeoutMs: 1500 },
    );
    assert.equal(status, "timed_out", reporter.all());
    assert.match(reporter.jobs.get("create-driver")!.output, /build timed out after/);
    assertNoMachines(buildId);
  });

  test("boot_timeout: a machine that does not answer in time fails clearly", async () => {
    const { status, reporter, buildId } = await build(
      `
driver: {type: qemu, image: tiny}
stages: [s]
jobs:
  - {stage: s, name: never, commands: [echo no]}
`,
      { config: qemuConfig({ bootTimeoutMs: 1000 }) },
    );
    assert.equal(status, "failed");
    assert.match(reporter.jobs.get("create-driver")!.output, /driver: machine did not answer on SSH within 1s/);
    assertNoMachines(buildId);
  });

  test("qemu exiting before SSH answers fails with what qemu said", async () => {
    const { status, reporter, buildId } = await build(
      `
driver: {type: qemu, image: tiny}
stages: [s]
jobs:
  - {stage: s, name: never, commands: [echo no]}
`,
      { config: qemuConfig({ net_device: "no-such-nic" }) },
    );
    assert.equal(status, "failed");
    const out = reporter.jobs.get("create-driver")!.output;
    assert.match(out, /driver: qemu-system-x86_64 exited with status 1 before SSH answered:\n.*no-such-nic/);
    assertNoMachines(buildId);
  });

  test("djinn-worker run boots an image from [qemu] disks (IDE disk, e1000 NIC) and masks secrets", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-qemu-run-"));
    temps.push(dir);
    const toml = path.join(dir, "driver.toml");
    await fs.writeFile(toml, `[qemu]\ndisks = "${FIXTURE_DISKS}"\nkey = "${FIXTURE_KEY}"\nmemory = 256\ndisk_interface = "ide"\nnet_device = "e1000"\nboot_timeout = "2m"\n`);
    const manifest = path.join(dir, "build.yml");
    await fs.writeFile(manifest, `driver: {type: qemu, image: tiny}\nstages: [s]\njobs:\n  - {stage: s, name: j, commands: ["echo token=$TOKEN", "readlink /sys/class/net/eth0/device/driver"]}\n`);
    // A temporary directory of its own, so its machines' state root is its own: other suites' machines are never taken for its leftovers.
    const tmp = path.join(dir, "tmp");
    await fs.mkdir(tmp);
    const r = spawnSync(process.execPath, [cliPath, "run", manifest, "--driver", toml, "--artifacts", path.join(dir, "art"), "--secret", "TOKEN=s3cr3t-value"], { encoding: "utf8", timeout: 180_000, env: { ...process.env, TMPDIR: tmp } });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Booting tiny with qemu-system-x86_64/);
    assert.match(r.stdout, /token=xxxxxx/);
    assert.doesNotMatch(r.stdout + r.stderr, /s3cr3t-value/);
    assert.match(r.stdout, /\/drivers\/e1000\n/);
    const runStateRoot = path.join(tmp, path.relative(os.tmpdir(), stateRoot()));
    assert.deepEqual(qemuProcesses(runStateRoot), [], "run left a machine behind");
    assert.deepEqual(await fs.readdir(runStateRoot).catch(() => []), [], "run left a machine's state behind");
  });

  test("a missing image names every place looked; names cannot leave the image directory", async () => {
    const { status, reporter } = await build(`
driver: {type: qemu, image: debian/12}
stages: [s]
jobs:
  - {stage: s, name: never, commands: [echo no]}
`);
    assert.equal(status, "failed");
    const out = reporter.jobs.get("create-driver")!.output;
    const tried = [`_base/x86_64/debian/12`, `_base/x86_64/debian/12.qcow2`, `x86_64/debian/12`, `x86_64/debian/12.qcow2`, `debian/12`, `debian/12.qcow2`].map((p) => `${FIXTURE_DISKS}/${p}`);
    assert.ok(out.includes(`looked for ${tried.join(", ")}`), out);

    const images = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-qemu-images-"));
    temps.push(images);
    // The daemon, without [qemu] disks, looks under <images>/qemu.
    const noDisks = qemuConfig({ disks: undefined });
    await assert.rejects(resolveImage({ manifest: { type: "qemu", image: "tiny" }, config: noDisks, imagesPath: images }), (err: Error) => {
      assert.ok(err instanceof DriverError);
      assert.ok(err.message.includes(path.join(images, "qemu", "_base", "x86_64", "tiny.qcow2")), err.message);
      return true;
    });
    await fs.mkdir(path.join(images, "qemu", "_base", "x86_64", "debian"), { recursive: true });
    await fs.writeFile(path.join(images, "qemu", "_base", "x86_64", "debian", "12.qcow2"), "");
    assert.equal(await resolveImage({ manifest: { type: "qemu", image: "debian/12" }, config: noDisks, imagesPath: images }), path.join(images, "qemu", "_base", "x86_64", "debian", "12.qcow2"));
    for (const image of ["../../../../etc/passwd", "/etc/passwd", "debian/../../x"]) {
      await assert.rejects(resolveImage({ manifest: { type: "qemu", image }, config: noDisks, imagesPath: images }), /driver\.image .*(outside|absolute)/);
    }
  });

  test("reap kills the machine a dead worker's run left and removes its state dir; it never kills another run's or another process", async () => {
    const buildId = newBuildId();
    // The same build id in another installation (or another run): its machine must survive.
    const otherRun: RunRef = { buildId, run: freshRunToken() };
    const orphans = [refOf(buildId), otherRun].map((ref) => {
      const dir = stateDirOf(ref);
      mkdirSync(dir, { recursive: true });
      // A real qemu, as a crashed worker would have left it (no guest needed to be reaped).
      const child = spawn("qemu-system-x86_64", ["-machine", "none", "-nodefaults", "-display", "none", "-S", "-monitor", "none", "-pidfile", path.join(dir, "qemu.pid")], { stdio: "ignore", detached: true });
      return { dir, child, gone: new Promise((resolve) => child.once("exit", resolve)) };
    });
    try {
      const deadline = Date.now() + 10_000;
      while (orphans.some((o) => !existsSync(path.join(o.dir, "qemu.pid"))) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      for (const o of orphans) assert.deepEqual(qemuProcesses(o.dir), [o.child.pid]);
      await (await getDriver("qemu")).reap!(refOf(buildId), qemuConfig(), log);
      await orphans[0].gone;
      assertNoMachines(buildId);
      assert.deepEqual(qemuProcesses(orphans[1].dir), [orphans[1].child.pid], "the other run's machine is untouched");
      assert.ok(existsSync(path.join(orphans[1].dir, "qemu.pid")), "the other run's pidfile is untouched");
    } finally {
      orphans[1].child.kill("SIGKILL");
      await orphans[1].gone;
      await fs.rm(orphans[1].dir, { recursive: true, force: true });
    }

    // A pidfile naming a process that is not this build's qemu: left alone.
    const other = newBuildId();
    await fs.mkdir(stateDirOf(refOf(other)), { recursive: true });
    await fs.writeFile(path.join(stateDirOf(refOf(other)), "qemu.pid"), `${process.pid}\n`);
    await (await getDriver("qemu")).reap!(refOf(other), qemuConfig(), log);
    assert.equal(existsSync(stateDirOf(refOf(other))), false);
    // The state lives in this user's own directory, which nobody else may write to.
    const root = await fs.lstat(path.dirname(stateRoot()));
    assert.deepEqual([root.isDirectory(), root.uid, root.mode & 0o7777], [true, process.getuid!(), 0o700]);
  });

  test("check names the binary, its version and the accelerator auto picks; accel = kvm fails clearly when KVM is unusable", async () => {
    const lines = await (await getDriver("qemu")).check!(qemuConfig());
    const verdict = await kvmUsable("qemu-system-x86_64", "x86_64");
    assert.match(lines[0], /^qemu: qemu-system-x86_64 \d+\.\d+\.\d+, accel auto → (kvm|tcg \(KVM not usable: .+\))$/);
    assert.equal(lines[0].includes("auto → kvm"), verdict.usable);
    if (!verdict.usable) {
      await assert.rejects((await getDriver("qemu")).check!(qemuConfig({ accel: "kvm" })), /KVM is not usable/);
      const { status, reporter } = await build(
        `
driver: {type: qemu, image: tiny}
stages: [s]
jobs:
  - {stage: s, name: never, commands: [echo no]}
`,
        { config: qemuConfig({ accel: "kvm" }) },
      );
      assert.equal(status, "failed");
      assert.match(reporter.jobs.get("create-driver")!.output, /accel = "kvm" but KVM is not usable here/);
    }
    await assert.rejects((await getDriver("qemu")).check!(qemuConfig({ accel: "tcg", disks: "/nonexistent/images" })), /\[qemu\] disks \/nonexistent\/images: no such directory/);
    const savedPath = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      await assert.rejects((await getDriver("qemu")).check!(qemuConfig({ accel: "tcg" })), /qemu-system-x86_64: not installed/);
    } finally {
      process.env.PATH = savedPath;
    }
  });
});
