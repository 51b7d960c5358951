// The pure parts of the ssh, qemu and docker drivers and what all four share, with no engine: no
// Docker, no qemu, no SSH server. Only the local filesystem and /bin/sh.
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { hostQemuArch, type DriverConfig } from "../internal/config/config.js";
import { baseTarPath } from "../internal/driver/docker/images.js";
import { DriverError } from "../internal/driver/driver.js";
import { buildBaseEnv, envList } from "../internal/driver/env.js";
import { runNameOfWorkspace, validOwner } from "../internal/driver/os/owner.js";
import { cgroupOf, cgroupSource, reapRun, RUN_MARKER, RunProcesses } from "../internal/driver/os/processes.js";
import { parseForks, parseLastPid, pidWindow } from "../internal/driver/os/pids.js";
import { cgroup2Mount, mountHolding } from "../internal/driver/os/mounts.js";
import { freshRunToken, parseRunName, runName } from "../internal/driver/run.js";
import { ConfineError } from "../internal/fs/confine.js";
import { ensurePrivateDir, PrivateDirError, readOwnFile } from "../internal/fs/private.js";
import { otherUserSkip } from "./helpers/env.js";
import { archOf, imageCandidates, imagesRoot, resolveImage } from "../internal/driver/qemu/qemu.js";
import { loginMethod } from "../internal/driver/ssh/connect.js";
import { DEFAULT_CHANNEL_RETRY, exitCodeOf, isChannelRefusal, retryDelay, startsNeedQuiet } from "../internal/driver/ssh/gate.js";
import { exportLines, jobWrapper } from "../internal/driver/ssh/session.js";
import { parseAddress } from "../internal/driver/ssh/ssh.js";
import { noSftpSubsystem } from "../internal/driver/ssh/transfer.js";
import { singleQuote } from "../internal/shell/quote.js";

const temps: string[] = [];
after(() => Promise.all(temps.map((d) => fs.rm(d, { recursive: true, force: true }))));

async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-driver-parts-"));
  temps.push(dir);
  return dir;
}

describe("the base environment", () => {
  test("every job gets CI=true and DJINN_BUILD=<id>, in a map and as NAME=value strings", () => {
    assert.deepEqual(buildBaseEnv("42"), { CI: "true", DJINN_BUILD: "42" });
    assert.deepEqual(envList(buildBaseEnv("42")), ["CI=true", "DJINN_BUILD=42"]);
    assert.deepEqual(envList({ A: "x=y", B: "" }), ["A=x=y", "B="]);
  });
});

describe("os driver parts", () => {
  test("a job's shell joins the run's cgroup, wherever it is, before it becomes the job's shell", async () => {
    // A plain directory stands in for the cgroup hierarchy: joining is writing one's pid to cgroup.procs.
    const root = path.join(await tempDir(), `it's $(a) "cgroup" root`);
    await fs.mkdir(root);
    const saved = cgroupSource.root;
    cgroupSource.root = () => root;
    try {
      const run = await RunProcesses.open("7-0123456789abcdef", "0123456789abcdef", root);
      assert.equal(run.cgroup, path.join(root, "djinn-7-0123456789abcdef"));
      const script = path.join(root, "job.sh");
      await fs.writeFile(script, 'echo "shell $$ $0"; echo oops >&2\nif then\necho never\n');
      const [shell, ...args] = run.command(script);
      const r = spawnSync(shell, args, { encoding: "utf8" });
      const out = r.stdout;
      const pid = /^shell (\d+) /m.exec(out)?.[1];
      assert.ok(pid, out);
      assert.match(out, new RegExp(`^shell ${pid} ${script.replace(/[.*+?^${}()|[\]\\$]/g, "\\$&")}\noops\n.*: 2: .*Syntax error`), "stderr joins stdout; $0 is the script; it is read a command at a time");
      assert.doesNotMatch(out, /never/);
      assert.equal(r.status, 2);
      assert.equal(await fs.readFile(path.join(run.cgroup!, "cgroup.procs"), "utf8"), `${pid}\n`);
    } finally {
      cgroupSource.root = saved;
    }
  });
});

describe("os driver parts: which pids the /proc sweep of a run looks at", () => {
  test("the last pid and the fork count are read from /proc/loadavg and /proc/stat, and nothing else is believed", () => {
    assert.equal(parseLastPid("0.68 0.81 1.18 1/193 15257\n"), 15257);
    for (const bad of ["", "0.68 0.81 1.18 1/193\n", "0.68 0.81 1.18 1/193 x\n", "15257"]) assert.equal(parseLastPid(bad), undefined, bad);
    assert.equal(parseForks("cpu  1 2 3\nintr 5 6\nctxt 9\nbtime 1\nprocesses 796193\nprocs_running 2\n"), 796193);
    assert.equal(parseForks("cpu 1 2 3\nprocs_running 2\n"), undefined);
  });

  test("a pid given out after the mark is in the window, an older one is not, across a wrap too", () => {
    const inWindow = pidWindow({ last: 1000, forks: 50, max: 32768 }, { last: 1010, forks: 60, max: 32768 })!;
    assert.deepEqual([999, 1000, 1001, 1010, 1011, 31000, 5].map(inWindow), [false, false, true, true, false, false, false]);
    // Allocation wrapped from 32767 back to 300.
    const wrapped = pidWindow({ last: 32760, forks: 50, max: 32768 }, { last: 310, forks: 70, max: 32768 })!;
    assert.deepEqual([32760, 32761, 32767, 300, 310, 311, 20000].map(wrapped), [false, true, true, true, true, false, false]);
  });

  test("no window when a mark is missing or so many forks came between that allocation may have gone all the way round", () => {
    const since = { last: 1000, forks: 50, max: 32768 };
    assert.equal(pidWindow(undefined, since), undefined);
    assert.equal(pidWindow(since, undefined), undefined);
    assert.equal(pidWindow(since, { last: 1001, forks: 50 + 16_300, max: 32768 }), undefined);
    assert.equal(pidWindow(since, { last: 1001, forks: 40, max: 32768 }), undefined, "a fork count that went back (another boot's)");
    // pid_max lowered under the run: a pid above the new limit is an old process, looked at all the same.
    assert.equal(pidWindow(since, { last: 1001, forks: 51, max: 4096 })!(5000), true);
  });

  test("a process that existed before the run is not the run's, even with its marker; one made during the run is", async () => {
    const saved = cgroupSource.root;
    cgroupSource.root = () => undefined;
    const token = freshRunToken();
    const env = { ...process.env, [RUN_MARKER]: token };
    const older = spawn("/bin/sleep", ["300"], { env, stdio: "ignore", detached: true });
    try {
      const run = await RunProcesses.open(`9-${token}`, token, await tempDir());
      const newer = spawn("/bin/sleep", ["300"], { env, stdio: "ignore", detached: true });
      const newerExit = new Promise((resolve) => newer.once("exit", resolve));
      await run.close();
      assert.equal(await newerExit, null, "the run's process was killed");
      assert.equal(older.exitCode, null);
      assert.equal(older.signalCode, null, "the older process lives on");
      assert.ok(process.kill(older.pid!, 0));
    } finally {
      cgroupSource.root = saved;
      older.kill("SIGKILL");
    }
  });
});

describe("os driver parts: the mount a path is on", () => {
  const info = [
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard",
    "25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw",
    "30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=1k",
    "40 27 7:0 / /mnt/state\\040dir rw,relatime - ext4 /dev/loop0 rw",
    "",
  ].join("\n");
  test("the longest mount point that holds it, the later of two at one point, escapes undone", () => {
    assert.deepEqual(mountHolding(info, "/tmp/djinn-worker-0"), { mountPoint: "/", fstype: "ext4", device: "254:0" });
    assert.deepEqual(mountHolding(info, "/dev/shm/x"), { mountPoint: "/dev/shm", fstype: "tmpfs", device: "0:27" });
    assert.deepEqual(mountHolding(info, "/mnt/state dir/djinn-worker-0"), { mountPoint: "/mnt/state dir", fstype: "ext4", device: "7:0" });
    assert.deepEqual(mountHolding(info, "/mnt/state dirx"), { mountPoint: "/", fstype: "ext4", device: "254:0" }, "a mount point holds only what is below it");
    assert.equal(mountHolding("", "/tmp"), undefined);
  });
});

describe("os driver parts: the cgroup2 mount", () => {
  const v1 = "25 22 0:22 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";
  test("the hybrid layout's unified mount, with and without favordynmods", () => {
    const hybrid = (superOptions: string) => `${v1}30 22 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 ${superOptions}\n`;
    assert.deepEqual(cgroup2Mount(hybrid("rw")), { mountPoint: "/sys/fs/cgroup/unified", favorsDynamicChanges: false });
    assert.deepEqual(cgroup2Mount(hybrid("rw,nsdelegate,favordynmods")), { mountPoint: "/sys/fs/cgroup/unified", favorsDynamicChanges: true });
  });
  test("a mount point with an escaped space, and no cgroup2 at all", () => {
    const spaced = "31 1 0:28 / /mnt/cg\\040two rw shared:9 - cgroup2 none rw,favordynmods\n";
    assert.deepEqual(cgroup2Mount(spaced), { mountPoint: "/mnt/cg two", favorsDynamicChanges: true });
    assert.equal(cgroup2Mount(v1), undefined);
    assert.equal(cgroup2Mount(""), undefined);
  });
});

describe("os driver parts: a shell started ahead of its job", () => {
  test("it joins the run's cgroup first, then runs its script when told to, stdin empty", async () => {
    // A plain directory stands in for the cgroup hierarchy, as above.
    const root = path.join(await tempDir(), "cgroup root");
    await fs.mkdir(root);
    const saved = cgroupSource.root;
    cgroupSource.root = () => root;
    try {
      const run = await RunProcesses.open("8-0123456789abcdef", "0123456789abcdef", root);
      const script = path.join(root, "job.sh");
      await fs.writeFile(script, 'echo "shell $$ $0 [${DJINN_GO-unset}]"; cat; echo oops >&2; exit 3\n');
      const [shell, ...args] = run.waitingCommand(script);
      const r = spawnSync(shell, args, { encoding: "utf8", input: `\nnot for the job\n` });
      const out = r.stdout;
      const pid = /^shell (\d+) /m.exec(out)?.[1];
      assert.ok(pid, out);
      assert.equal(out, `shell ${pid} ${script} [unset]\noops\n`, "stderr joins stdout; $0 is the script; the job reads nothing more from stdin");
      assert.equal(r.status, 3, "the script's exit status is the shell's");
      assert.equal(await fs.readFile(path.join(run.cgroup!, "cgroup.procs"), "utf8"), `${pid}\n`);
    } finally {
      cgroupSource.root = saved;
    }
  });
});

describe("host state: what a worker reads back from the host", () => {
  const token = "0123456789abcdef";

  test("a run name is believed only in the exact shape runName gives it", () => {
    assert.deepEqual(parseRunName(`27-${token}`), { build: "27", run: token });
    assert.deepEqual(parseRunName(`local-1733-${token}`), { build: "local-1733", run: token });
    assert.deepEqual(parseRunName(runName({ buildId: "a/../b", run: token })), { build: "a____b", run: token });
    for (const bad of ["x/../victim", `x/../victim-${token}`, `27-${token}0`, `27-${token.toUpperCase()}`, `-${token}`, token, `${"1".repeat(65)}-${token}`, "", `27-${token}\n`, 27, undefined]) {
      assert.equal(parseRunName(bad), undefined, JSON.stringify(bad));
    }
  });

  test("a workspace directory gives its run name only when this driver can have made it", () => {
    assert.equal(runNameOfWorkspace(`djinn-build-27-${token}-Ab12Cd`), `27-${token}`);
    for (const bad of ["djinn-build-x", `djinn-build-27-${token}`, `djinn-build-x-${token}-..-abcdef`, `djinn-build-27-${token}-abc`, `other-27-${token}-Ab12Cd`]) {
      assert.equal(runNameOfWorkspace(bad), undefined, bad);
    }
  });

  test("an owner record counts only with every field in shape and naming its own directory's run", () => {
    const name = `27-${token}`;
    const good = { pid: 4242, started: "123456", name, run: token };
    assert.deepEqual(validOwner(good, name), good);
    assert.deepEqual(validOwner({ ...good, started: "", extra: 1 }, name), { ...good, started: "" });
    const bad: unknown[] = [
      { ...good, name: "x/../victim" },
      { ...good, name: `28-${token}` },
      { ...good, run: "fedcba9876543210" },
      { ...good, run: "../.." },
      { ...good, pid: "4242" },
      { ...good, pid: 0 },
      { ...good, pid: 1.5 },
      { ...good, started: "x" },
      null,
      "text",
    ];
    for (const record of bad) assert.equal(validOwner(record, name), undefined, JSON.stringify(record));
  });

  test("a run cgroup is one directory of the worker's cgroup; a name reaching elsewhere is refused and reaps nothing", async () => {
    // A plain directory stands in for the cgroup hierarchy, with a foreign "cgroup" beside the runs'.
    const root = await tempDir();
    assert.equal(cgroupOf(root, `27-${token}`), path.join(root, `djinn-27-${token}`));
    for (const name of ["x/../victim", "../x", "a/b", "x\0"]) assert.throws(() => cgroupOf(root, name), ConfineError, name);
    await fs.mkdir(path.join(root, "victim"));
    const saved = cgroupSource.root;
    cgroupSource.root = () => root;
    try {
      const run = freshRunToken();
      assert.equal(await reapRun("x/../victim", run, []), 0);
      assert.equal(await reapRun(`1-${token}`, run, []), 0, "a name of another run than the token's");
      assert.ok((await fs.stat(path.join(root, "victim"))).isDirectory(), "the foreign cgroup is still there");
    } finally {
      cgroupSource.root = saved;
    }
  });

  test("the private directory is made 0700, a loose mode is repaired, a symlink or a directory under an unsafe parent is refused", async () => {
    const parent = await tempDir();
    const dir = path.join(parent, "mine");
    assert.equal(await ensurePrivateDir(dir), dir);
    assert.equal((await fs.lstat(dir)).mode & 0o7777, 0o700);
    await fs.chmod(dir, 0o777);
    await ensurePrivateDir(dir);
    assert.equal((await fs.lstat(dir)).mode & 0o7777, 0o700);
    const link = path.join(parent, "link");
    await fs.symlink(dir, link);
    await assert.rejects(ensurePrivateDir(link), (err: Error) => err instanceof PrivateDirError && /is a symlink/.test(err.message));
    const open = path.join(parent, "open");
    await fs.mkdir(open);
    await fs.chmod(open, 0o777);
    await assert.rejects(ensurePrivateDir(path.join(open, "mine")), /writable by other users and not sticky/);
    await fs.chmod(open, 0o1777);
    await ensurePrivateDir(path.join(open, "mine"));
  });

  test("a directory or a record of another user is never taken for this user's", { skip: otherUserSkip() }, async () => {
    const parent = await tempDir();
    const theirs = path.join(parent, "theirs");
    await fs.mkdir(theirs, { mode: 0o700 });
    await fs.chown(theirs, 65534, 65534);
    await assert.rejects(ensurePrivateDir(theirs), (err: Error) => err instanceof PrivateDirError && /belongs to uid 65534/.test(err.message));
    const record = path.join(parent, "owner.json");
    await fs.writeFile(record, "{}");
    assert.equal(await readOwnFile(record), "{}");
    const link = path.join(parent, "link.json");
    await fs.symlink(record, link);
    assert.equal(await readOwnFile(link), undefined, "never through a symlink");
    await fs.chown(record, 65534, 65534);
    assert.equal(await readOwnFile(record), undefined);
  });
});

describe("ssh driver parts", () => {
  test("channels start one at a time on the dropbear releases that drop a connection over a channel started as a command ends", () => {
    for (const v of ["dropbear_2022.82", "dropbear_2022.83", "dropbear_2024.84", "dropbear_2024.85", "dropbear", "dropbear_X"]) assert.equal(startsNeedQuiet(v), true, v);
    for (const v of ["dropbear_2020.81", "dropbear_2022.81", "dropbear_2024.86", "dropbear_2025.88", "OpenSSH_9.2p1", "", undefined]) assert.equal(startsNeedQuiet(v), false, String(v));
  });

  test("addresses parse as host:port, port 22 by default", () => {
    assert.deepEqual(parseAddress("10.0.0.1:2222"), { host: "10.0.0.1", port: 2222 });
    assert.deepEqual(parseAddress("build-box"), { host: "build-box", port: 22 });
    assert.deepEqual(parseAddress("[::1]:22"), { host: "::1", port: 22 });
    assert.deepEqual(parseAddress("[fe80::1]"), { host: "fe80::1", port: 22 });
    for (const bad of ["host:99999", "host:0", "", ":22", "a:b:c", "host:", "[::1]x", "host:port"]) {
      assert.throws(() => parseAddress(bad), (err: Error) => err instanceof DriverError && err.message === `driver.address ${JSON.stringify(bad)}: expected host:port`, bad);
    }
  });

  test("variables are exported single-quoted, whatever they hold, and only under shell names", () => {
    const value = `it's "x" $HOME \`id\` \\ \n newline`;
    const lines = exportLines({ ...buildBaseEnv("7"), A: value, B: "" });
    assert.equal(lines, `export CI='true'\nexport DJINN_BUILD='7'\nexport A=${singleQuote(value)}\nexport B=''\n`);
    const echoed = execFileSync("sh", ["-c", `${lines}printf '%s|%s|%s' "$A" "$B" "$DJINN_BUILD"`], { encoding: "utf8" });
    assert.equal(echoed, `${value}||7`);
    assert.throws(() => exportLines({ "BAD-NAME": "x" }), /BAD-NAME.*not a shell variable name/);
    assert.throws(() => exportLines({ "1A": "x" }), /not a shell variable name/);
  });

  test("a job's wrapper runs the script in the workspace, records its exit status and leaves nothing running", async () => {
    const dir = await tempDir();
    const workspace = path.join(dir, "work space's");
    await fs.mkdir(workspace);
    const script = path.join(dir, "job 1.sh");
    const pidfile = path.join(dir, "job 1.pid");
    const statusFile = path.join(dir, "job 1.status");
    // The background sleep holds the output open: the wrapper returns only once it is killed.
    await fs.writeFile(script, "pwd\nsleep 30 &\nexit 3\n");
    const r = spawnSync("sh", ["-c", jobWrapper(workspace, script, pidfile, statusFile)], { encoding: "utf8", timeout: 20_000 });
    assert.equal(r.error, undefined, "the wrapper returned without waiting for its background process");
    assert.equal(r.status, 3);
    assert.equal(r.stdout, `${workspace}\n`);
    assert.equal(await fs.readFile(statusFile, "utf8"), "3\n");
    for (const gone of [script, pidfile]) await assert.rejects(fs.access(gone), { code: "ENOENT" }, gone);
  });

  test("exit codes: the channel's code, else 128 + the signal's number", () => {
    assert.equal(exitCodeOf(0), 0);
    assert.equal(exitCodeOf(2, "KILL"), 2);
    assert.equal(exitCodeOf(null, "KILL"), 137);
    assert.equal(exitCodeOf(undefined, "SIGTERM"), 143);
    assert.equal(exitCodeOf(null), undefined);
  });

  test("a login is described without its password, and only a server with no SFTP means exec channels", () => {
    assert.equal(loginMethod({ keyFile: "/k", password: "hunter2" }), "key /k or the configured password");
    assert.equal(loginMethod({ password: "hunter2" }), "the configured password");
    assert.equal(loginMethod({}), "an empty password");
    assert.equal(noSftpSubsystem(new Error("Unable to start subsystem: sftp")), true);
    assert.equal(noSftpSubsystem(new Error("Channel open failure: while establishing SFTP session")), true);
    assert.equal(noSftpSubsystem(new Error("No response from server")), false);
    // dropbear without sftp-server: its shell does not find the program.
    assert.equal(noSftpSubsystem(new Error("Received exit code 127 while establishing SFTP session")), true);
    // A subsystem that started and died (a connection going down) is not a server without SFTP.
    assert.equal(noSftpSubsystem(new Error("Received exit code 1 while establishing SFTP session")), false);
    assert.equal(noSftpSubsystem(new Error("Received signal HUP while establishing SFTP session")), false);
  });

  test("only a server's refusal to open a channel or start its command is asked again, with pauses that grow to a bound", () => {
    // The messages ssh2 gives: a refused open, a refused exec or subsystem request.
    assert.equal(isChannelRefusal(new Error("(SSH) Channel open failure: open failed")), true);
    assert.equal(isChannelRefusal(new Error("Unable to exec")), true);
    assert.equal(isChannelRefusal(new Error("Unable to start subsystem: sftp")), true);
    // A connection that is gone, or a command that ran, is final.
    assert.equal(isChannelRefusal(new Error("Not connected")), false);
    assert.equal(isChannelRefusal(new Error("No response from server")), false);
    assert.equal(isChannelRefusal(new Error("exit status 1")), false);
    assert.equal(isChannelRefusal(new Error("cannot expand x: Unable to exec")), false);
    const pauses = Array.from({ length: DEFAULT_CHANNEL_RETRY.attempts - 1 }, (_, i) => retryDelay(DEFAULT_CHANNEL_RETRY, i + 1));
    assert.deepEqual(pauses, [200, 400, 800, 1600, 3200, 5000, 5000]);
  });
});

describe("qemu image paths", () => {
  const qemu = (disks?: string): DriverConfig => ({ qemu: { disks, cpus: 1, memory: 256, accel: "tcg", bootTimeoutMs: 1000, disk_interface: "virtio", net_device: "virtio-net-pci" }, warnings: [], file: "/etc/djinn/driver.toml" }) as DriverConfig;

  test("the images directory: [qemu] disks, else <[images] path>/qemu, else a line naming the driver file", () => {
    assert.equal(imagesRoot({ config: qemu("/srv/disks/"), imagesPath: "/srv/images" }), "/srv/disks");
    assert.equal(imagesRoot({ config: qemu(), imagesPath: "/srv/images" }), "/srv/images/qemu");
    assert.throws(() => imagesRoot({ config: qemu() }), /^DriverError: no directory of images: set \[qemu\] disks in \/etc\/djinn\/driver\.toml$/);
  });

  test("the arch: the manifest's, else this host's; anything not an arch name is refused", () => {
    assert.equal(archOf({ arch: "aarch64" }), "aarch64");
    assert.equal(archOf({}), hostQemuArch());
    assert.throws(() => archOf({ arch: "x86 64; rm" }), /driver\.arch "x86 64; rm": expected a qemu arch/);
  });

  test("candidates follow Djinn's layouts in order, with and without .qcow2", () => {
    assert.deepEqual(imageCandidates("/d", "x86_64", "centos/7"), ["/d/_base/x86_64/centos/7", "/d/_base/x86_64/centos/7.qcow2", "/d/x86_64/centos/7", "/d/x86_64/centos/7.qcow2", "/d/centos/7", "/d/centos/7.qcow2"]);
    assert.deepEqual(imageCandidates("/d", "arm", "a.qcow2"), ["/d/_base/arm/a.qcow2", "/d/arm/a.qcow2", "/d/a.qcow2"]);
  });

  test("an image name never leads outside the images directory, and the refusal names that directory", async () => {
    const disks = await tempDir();
    const base = path.join(disks, "_base", "x86_64");
    for (const image of ["../../../etc/passwd", "centos/../../../x", ".."]) {
      await assert.rejects(resolveImage({ manifest: { type: "qemu", image, arch: "x86_64" }, config: qemu(disks) }), (err: Error) => {
        assert.ok(err instanceof DriverError, err.message);
        assert.equal(err.message, `driver.image ${JSON.stringify(image)}: name ${JSON.stringify(image)} reaches outside ${base}`);
        return true;
      });
    }
    await assert.rejects(resolveImage({ manifest: { type: "qemu", image: "/etc/passwd" }, config: qemu(disks) }), /^DriverError: driver\.image "\/etc\/passwd": name "\/etc\/passwd" is absolute: names are relative to /);
    await assert.rejects(resolveImage({ manifest: { type: "qemu" }, config: qemu(disks) }), /driver\.image is required/);
  });
});

describe("docker image tars", () => {
  test("a base image's tar is under <images>/docker/_base; a name leading elsewhere has none", () => {
    assert.equal(baseTarPath("/srv/images", "debian:12"), "/srv/images/docker/_base/debian:12.tar");
    assert.equal(baseTarPath("/srv/images", "library/debian"), "/srv/images/docker/_base/library/debian.tar");
    assert.equal(baseTarPath("/srv/images", "../../etc/shadow"), undefined);
    assert.equal(baseTarPath("/srv/images", "/etc/shadow"), undefined);
  });
});
