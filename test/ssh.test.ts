// The ssh driver against a real SSH server: the fixture machine, booted once for the suite, reached
// on its forwarded port.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import type { DriverConfig } from "../internal/config/config.js";
import { getDriver } from "../internal/driver/driver.js";
import "../internal/driver/all.js";
import { ArtifactStore, ObjectStore } from "../internal/fs/store.js";
import { parseManifest } from "../internal/manifest/manifest.js";
import { planBuild } from "../internal/runner/plan.js";
import type { Status } from "../internal/runner/status.js";
import { runBuild } from "../internal/runner/runner.js";
import { runQuiet } from "../internal/driver/ssh/channels.js";
import { connectWithRetry } from "../internal/driver/ssh/connect.js";
import { ChannelGate, startsNeedQuiet } from "../internal/driver/ssh/gate.js";
import { requireService, which } from "./helpers/env.js";
import { bootByHand, collectingReporter, ensureFixtureImage, FIXTURE_KEY, freeLocalPort, qemuMissing, qemuProcesses, sshConfig, sshRun, type HandBootedVm } from "./helpers/qemu.js";

const log = pino({ level: "silent" });

const missing = qemuMissing() ?? (which("ssh") ? undefined : "the OpenSSH client (ssh) is missing: Debian package openssh-client");
const skip = requireService("qemu", missing);

describe("ssh driver", { skip, timeout: 5 * 60_000 }, () => {
  let vm: HandBootedVm;
  let temp: string;
  let counter = 0;

  before(async () => {
    await ensureFixtureImage();
    temp = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-ssh-test-"));
    vm = await bootByHand();
  });

  after(async () => {
    await vm?.stop();
    if (vm) assert.deepEqual(qemuProcesses(vm.stateDir), [], "the suite's machine outlived it");
    if (temp) await fs.rm(temp, { recursive: true, force: true });
  });

  async function build(yaml: string, opts: { config?: DriverConfig; objects?: string; signal?: AbortSignal; onOutput?: (job: string, text: string) => void } = {}) {
    const { manifest } = parseManifest(yaml.replaceAll("PORT", String(vm.port)));
    const reporter = collectingReporter(opts.onOutput);
    const artifacts = path.join(temp, `artifacts-${++counter}`);
    await fs.mkdir(artifacts);
    const driver = (await getDriver("ssh")).create({ buildId: `ssh-test-${counter}`, manifest: manifest.driver, config: opts.config ?? sshConfig(), log });
    const status: Status = await runBuild({
      plan: planBuild(manifest, "t"),
      driver,
      env: Object.fromEntries(manifest.env),
      masks: [],
      objects: opts.objects ? { store: new ObjectStore(opts.objects), list: manifest.objects } : undefined,
      artifacts: new ArtifactStore(artifacts),
      reporter,
      signal: opts.signal,
    });
    return { status, reporter, artifacts };
  }

  test("runs jobs with env, places objects and collects artifacts from any path of the machine, patterns too", async () => {
    const objects = path.join(temp, "objects");
    await fs.mkdir(objects);
    await fs.writeFile(path.join(objects, "data.txt"), "object bytes\n");
    const { status, reporter, artifacts } = await build(
      `
driver: {type: ssh, address: "127.0.0.1:PORT"}
env: ["GREETING=hi 'there'"]
objects: ["data.txt => ssh-test/data.txt"]
stages: [s]
jobs:
  - stage: s
    name: work
    commands:
      - cat ssh-test/data.txt
      - 'echo "$GREETING" > ssh-test/out.txt'
      - ln -sf /etc/passwd ssh-test/link
      - read -r line || echo "stdin is empty"
      - exit 0
    artifacts:
      - ssh-test/out.txt => out.txt
      - ssh-test/link => link
      - /etc/passwd => abs
      - ssh-test => dir
      - ssh-test/*.txt => txt/*
`,
      { objects },
    );
    assert.equal(status, "passed", reporter.all());
    assert.match(reporter.jobs.get("create-driver")!.output, /Connecting to root@127\.0\.0\.1:\d+ .*\nConnected after \d+\.\ds, workspace \/root\n/);
    const work = reporter.jobs.get("work")!.output;
    assert.match(reporter.jobs.get("create-driver")!.output, /Placed object data.txt => ssh-test\/data.txt/);
    assert.match(work, /object bytes/);
    assert.match(work, /stdin is empty/);
    assert.equal(await fs.readFile(path.join(artifacts, "out.txt"), "utf8"), "hi 'there'\n");
    // As in Djinn, the ssh driver collects any path of the machine, links followed.
    assert.match(await fs.readFile(path.join(artifacts, "link"), "utf8"), /^root:/);
    assert.match(await fs.readFile(path.join(artifacts, "abs"), "utf8"), /^root:/);
    assert.match(work, /artifact ssh-test not collected: ssh-test is not a regular file/);
    assert.deepEqual((await fs.readdir(path.join(artifacts, "txt"))).sort(), ["data.txt", "out.txt"]);
    // The build's scripts are gone from the machine; the machine itself stays.
    const left = await sshRun(vm.port, 'for d in /tmp/djinn-job.*; do [ -e "$d" ] && echo "$d"; done; rm -rf /root/ssh-test');
    assert.equal(left.code, 0);
    assert.equal(left.stdout, "", "script directories were left on the machine");
  });

  test("a failing job reports its exit code; a job killed mid-run dies on the machine with everything it started", async () => {
    const failed = await build(`
driver: {type: ssh, address: "127.0.0.1:PORT"}
stages: [s]
jobs:
  - {stage: s, name: bad, commands: ["exit 42"]}
`);
    assert.equal(failed.status, "failed");
    assert.equal(failed.reporter.jobs.get("bad")!.exitCode, 42);

    const kill = new AbortController();
    const killed = await build(
      `
driver: {type: ssh, address: "127.0.0.1:PORT"}
stages: [s]
jobs:
  - {stage: s, name: long, commands: ["sleep 4242 &", "echo started", "sleep 4243"]}
`,
      {
        signal: kill.signal,
        onOutput: (job, text) => {
          if (job === "long" && text.includes("started\n")) kill.abort();
        },
      },
    );
    assert.equal(killed.status, "killed");
    const ps = await sshRun(vm.port, "ps");
    assert.equal(ps.code, 0);
    assert.doesNotMatch(ps.stdout, /sleep 424[23]/, "the killed job's processes still run on the machine");
  });

  test("a wrong key is refused at once, and a closed port fails after the timeout", async () => {
    const key = path.join(temp, "wrong_key");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
    const started = Date.now();
    const wrong = await build(
      `
driver: {type: ssh, address: "127.0.0.1:PORT"}
stages: [s]
jobs: [{stage: s, name: j, commands: [true]}]
`,
      { config: sshConfig({ key, timeoutMs: 60_000 }) },
    );
    assert.equal(wrong.status, "failed");
    assert.match(wrong.reporter.jobs.get("create-driver")!.output, /driver: root@127\.0\.0\.1:\d+ refused to log in with key .*wrong_key/);
    assert.ok(Date.now() - started < 30_000, "an authentication failure is not retried until the timeout");

    const noKey = await build(
      `
driver: {type: ssh, address: "127.0.0.1:PORT"}
stages: [s]
jobs: [{stage: s, name: j, commands: [true]}]
`,
      { config: sshConfig({ key: undefined }) },
    );
    assert.equal(noKey.status, "failed");
    assert.match(noKey.reporter.jobs.get("create-driver")!.output, /refused to log in with an empty password/);

    const closed = await freeLocalPort();
    const nobody = await build(
      `
driver: {type: ssh, address: "127.0.0.1:${closed}"}
stages: [s]
jobs: [{stage: s, name: j, commands: [true]}]
`,
      { config: sshConfig({ timeoutMs: 1000 }) },
    );
    assert.equal(nobody.status, "failed");
    assert.match(nobody.reporter.jobs.get("create-driver")!.output, new RegExp(`could not connect to root@127\\.0\\.0\\.1:${closed} within 1s: .*ECONNREFUSED`));
  });

  test("without a key, Djinn's empty-password root logs in", async () => {
    // A second server in the guest that takes root's empty password, as Djinn's images do.
    const setup = await sshRun(vm.port, "sed -i 's/^root:[^:]*:/root::/' /etc/shadow && dropbear -B -p 2222 -r /etc/dropbear/dropbear_ed25519_host_key");
    assert.equal(setup.code, 0);
    const { status, reporter } = await build(
      `
driver: {type: ssh, address: "127.0.0.1:${vm.extraPort}"}
stages: [s]
jobs: [{stage: s, name: j, commands: ["echo logged in as $(id -un)"]}]
`,
      { config: sshConfig({ key: undefined }) },
    );
    assert.equal(status, "passed", reporter.all());
    assert.match(reporter.jobs.get("j")!.output, /\nlogged in as root\n/);

    // ssh.password, as Djinn's driver.toml may set it: the same server, root now with a password.
    const hash = execFileSync("openssl", ["passwd", "-6", "-salt", "djinnsalt", "pa55-w0rd"], { encoding: "utf8" }).trim();
    assert.equal((await sshRun(vm.port, `sed -i 's|^root:[^:]*:|root:${hash.replace(/\$/g, "\\$")}:|' /etc/shadow`)).code, 0);
    const job = `
driver: {type: ssh, address: "127.0.0.1:${vm.extraPort}"}
stages: [s]
jobs: [{stage: s, name: j, commands: ["echo password login as $(id -un)"]}]
`;
    const withPassword = await build(job, { config: sshConfig({ key: undefined, password: "pa55-w0rd" }) });
    assert.equal(withPassword.status, "passed", withPassword.reporter.all());
    assert.match(withPassword.reporter.jobs.get("j")!.output, /\npassword login as root\n/);
    const wrong = await build(job, { config: sshConfig({ key: undefined, password: "wrong" }) });
    assert.equal(wrong.status, "failed");
    assert.match(wrong.reporter.jobs.get("create-driver")!.output, /refused to log in with the configured password/);
    assert.ok(!wrong.reporter.all().includes("wrong\n"), "the password is never printed");
  });

  test("a pattern whose list of matches runs far past 64 KiB gives every match, not a list cut short", async () => {
    // 800 names of 120 characters: over 100 KB of paths.
    const stem = "m".repeat(116);
    assert.equal((await sshRun(vm.port, `mkdir -p /root/many && cd /root/many && i=0; while [ $i -lt 800 ]; do : > ${stem}$(printf %04d $i); i=$((i + 1)); done`)).code, 0);
    const { manifest } = parseManifest(`driver: {type: ssh, address: "127.0.0.1:${vm.port}"}\nstages: [s]\njobs: [{stage: s, commands: [true]}]\n`);
    const driver = (await getDriver("ssh")).create({ buildId: "ssh-test-glob", manifest: manifest.driver, config: sshConfig(), log });
    try {
      await driver.create(new PassThrough().resume(), new AbortController().signal);
      const matches = await driver.glob!("many/*");
      assert.equal(matches.length, 800);
      assert.equal(matches[799], `/root/many/${stem}0799`);
    } finally {
      await driver.destroy();
      await sshRun(vm.port, "rm -rf /root/many");
    }
  });

  test("a server without SFTP: scripts, objects and artifacts go over exec channels", async () => {
    // dropbear finds no sftp-server: it offers no SFTP subsystem.
    assert.equal((await sshRun(vm.port, "mv /usr/lib/sftp-server /usr/lib/sftp-server.off")).code, 0);
    try {
      const objects = path.join(temp, "objects-nosftp");
      await fs.mkdir(objects);
      await fs.writeFile(path.join(objects, "key"), "private\n");
      const { status, reporter, artifacts } = await build(
        `
driver: {type: ssh, address: "127.0.0.1:PORT"}
objects: ["key => nosftp/deep/key"]
stages: [s, t]
jobs:
  - stage: s
    commands:
      - cat nosftp/deep/key
      - ls -l nosftp/deep/key
      - head -c 200000 /dev/urandom > nosftp/random.bin
      - sha256sum nosftp/random.bin
  - stage: t
    artifacts: [nosftp/random.bin, "nosftp/*", /nowhere]
`,
        { objects },
      );
      assert.equal(status, "passed", reporter.all());
      assert.match(reporter.jobs.get("create-driver")!.output, /no SFTP on the machine: files go over exec channels/);
      const out = reporter.jobs.get("s.1")!.output;
      assert.match(out, /\nprivate\n/);
      assert.match(out, /-rw-r--r-- .* nosftp\/deep\/key/);
      const sum = /([0-9a-f]{64}) {2}nosftp\/random\.bin/.exec(out)![1];
      const bytes = await fs.readFile(path.join(artifacts, "random.bin"));
      assert.equal(bytes.length, 200_000);
      assert.equal(createHash("sha256").update(bytes).digest("hex"), sum);
      const t = reporter.jobs.get("t.1")!.output;
      assert.match(t, /artifact \/nowhere not collected: \/nowhere does not exist/);
      assert.match(t, /artifact \/root\/nosftp\/deep not collected: .*not a regular file/);
    } finally {
      await sshRun(vm.port, "mv /usr/lib/sftp-server.off /usr/lib/sftp-server; rm -rf /root/nosftp");
    }
  });

  test("a channel asked for while another channel's command ends keeps dropbear's connection (mkj/dropbear#321)", async () => {
    // The fixture's dropbear is one that closes such a channel at once and then dies on its output.
    const version = (await sshRun(vm.port, "dropbear -V 2>&1")).stdout.match(/v(\d{4}\.\d+)/)?.[1];
    assert.ok(version && startsNeedQuiet(`dropbear_${version}`), `dropbear ${version} of the fixture`);
    const client = await connectWithRetry({ host: "127.0.0.1", port: vm.port, user: "root", keyFile: FIXTURE_KEY }, { timeoutMs: 60_000 });
    try {
      // A channel closed under it is not asked for again here: that would hide the close.
      const gate = new ChannelGate(client, "the machine", { retry: { attempts: 1, firstDelayMs: 0, maxDelayMs: 0 } });
      const first = await gate.exec("echo $$ $PPID; exec cat");
      const [cat, server] = await new Promise<string[]>((resolve) => {
        let said = "";
        const onData = (d: Buffer) => {
          if (!(said += d.toString()).includes("\n")) return;
          first.channel.off("data", onData);
          resolve(said.trim().split(" "));
        };
        first.channel.on("data", onData);
      });
      // The connection's dropbear stops; the next channel is asked for; the first's command dies
      // (a zombie until dropbear reaps it); dropbear goes on and sees both at once, as under load.
      assert.equal((await sshRun(vm.port, `kill -STOP ${server}`)).code, 0);
      const second = runQuiet(gate, "echo second");
      // Without quiet starts its open request is on the wire by now; with them it waits for the first's exit.
      await new Promise(setImmediate);
      const zombie = `kill -KILL ${cat} && while [ "$(cut -d' ' -f3 /proc/${cat}/stat)" != Z ]; do :; done`;
      assert.equal((await sshRun(vm.port, `${zombie}; kill -CONT ${server}`)).code, 0);
      assert.deepEqual(await second, { code: 0, stdout: "second\n", stderr: "" });
      assert.equal(await first.exit, 137);
      assert.equal((await runQuiet(gate, "echo still connected")).stdout, "still connected\n");
    } finally {
      client.end();
    }
  });

  test("check describes the login and refuses a missing key", async () => {
    assert.deepEqual(await (await getDriver("ssh")).check!(sshConfig({ timeoutMs: 60_000 })), [`ssh: log in as root with key ${sshConfig().ssh!.key}, trying for up to 1m0s`]);
    await assert.rejects((await getDriver("ssh")).check!(sshConfig({ key: "/nonexistent/key" })), /\[ssh\] key \/nonexistent\/key: no such file/);
  });
});
