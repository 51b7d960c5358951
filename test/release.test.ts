// `npm run release` end to end: the tarball's executable with Node.js hidden and an empty
// environment (an example build, a daemon round trip), and the .deb installed on this machine
// with dpkg, run as the djinn user, then purged.
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { osManifest, servicesSkip, Suite } from "./helpers/daemon-suite.js";
import { busyboxImage, dockerSkip } from "./helpers/docker.js";
import { ensureFixtureImage, FIXTURE_DISKS, FIXTURE_KEY, qemuMissing } from "./helpers/qemu.js";
import { freeLocalPort } from "../internal/net/port.js";
import { cliPath, repoRoot, requireService, which } from "./helpers/env.js";
import { CRYPTO_BLOCK, DaemonProcess, until } from "./helpers/services.js";

function releaseMissing(): string | undefined {
  if (process.getuid?.() !== 0) return "not root: hiding Node.js needs a mount namespace, and the .deb is installed with dpkg -i";
  for (const [cmd, pkg] of [["dpkg-deb", "dpkg"], ["lintian", "lintian"], ["adduser", "adduser"], ["unshare", "util-linux"], ["script", "bsdutils"], ["tar", "tar"], ["logrotate", "logrotate"]]) {
    if (!which(cmd)) return `${cmd} not found (apt-get install ${pkg})`;
  }
  return undefined;
}

const skip = requireService("release", releaseMissing()) || servicesSkip();

const version = (JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { version: string }).version;
const arch = skip ? "" : execFileSync("dpkg", ["--print-architecture"], { encoding: "utf8" }).trim();
const tarballName = `djinn-worker-${version}-linux-${arch}`;
const debFile = path.join(repoRoot, "release", `djinn-worker_${version}_${arch}.deb`);

/** Every path the node binary may be reached by, as real files to hide. */
function nodeBinaries(): string[] {
  const found = [process.execPath, which("node")].filter((p): p is string => !!p).map((p) => fs.realpathSync(p));
  return [...new Set(found)];
}

/**
 * `command` in a private mount namespace where every node binary is /dev/null, with an empty
 * environment (env -i). Exits 97 if node still runs there, so a test cannot pass with it.
 */
function withoutNodeArgs(command: string[]): string[] {
  const script = 'for n in $NODES; do mount --bind /dev/null "$n"; done; for n in $NODES; do if "$n" -e 0 2>/dev/null; then echo "node still runs: $n" >&2; exit 97; fi; done; exec env -i "$@"';
  return ["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", ...command];
}

function withoutNode(command: string[], cwd: string, timeoutMs = 120_000): SpawnSyncReturns<string> {
  return spawnSync("unshare", withoutNodeArgs(command), { cwd, encoding: "utf8", env: { ...process.env, NODES: nodeBinaries().join(" ") }, timeout: timeoutMs });
}

/**
 * `command` where invoke-rc.d acts as on a booted SysVinit machine: in a private mount namespace,
 * the runlevel is 2 and policy-rc.d allows every action (shims written under `dir`).
 */
function asOnSysvinit(command: string[], dir: string): SpawnSyncReturns<string> {
  const shims = { runlevel: "#!/bin/sh\necho N 2\n", policy: "#!/bin/sh\nexit 0\n" };
  for (const [name, text] of Object.entries(shims)) fs.writeFileSync(path.join(dir, name), text, { mode: 0o755 });
  const script = 'mount --bind "$SHIMS/runlevel" "$(readlink -f /sbin/runlevel)" && { [ ! -e /usr/sbin/policy-rc.d ] || mount --bind "$SHIMS/policy" /usr/sbin/policy-rc.d; } && exec "$@"';
  return spawnSync("unshare", ["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", ...command], { encoding: "utf8", timeout: 120_000, env: { ...process.env, SHIMS: dir, DEBIAN_FRONTEND: "noninteractive" } });
}

describe("release", { skip, timeout: 15 * 60_000 }, () => {
  let work: string;

  before(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-release-test-"));
    // The release is built once, here, from the compiled tree `npm test` just built.
    const r = spawnSync(process.execPath, [path.join(repoRoot, "build/internal/release/release.js")], { cwd: repoRoot, encoding: "utf8" });
    assert.equal(r.status, 0, `release failed: ${r.stderr}`);
  });
  after(() => fs.rmSync(work, { recursive: true, force: true }));

  describe("tarball", () => {
    let dir: string;
    let bin: string;

    before(() => {
      execFileSync("tar", ["-xzf", path.join(repoRoot, "release", `${tarballName}.tar.gz`), "-C", work]);
      dir = path.join(work, tarballName);
      bin = path.join(dir, "bin", "djinn-worker");
    });

    test("holds the executable, the example configs, the daemon files, the docs and the example build", () => {
      for (const f of ["bin/djinn-worker", "worker.toml.example", "driver.toml.example", "dist/djinn-worker.service", "dist/djinn-worker", "dist/djinn-worker.logrotate", "dist/djinn-worker-web.service", "dist/djinn-worker-web", "dist/post-receive", "README.md", "LICENSE", "docs/daemon.md", "docs/install.md", "examples/hello.yml", "examples/greeting.txt"]) {
        assert.ok(fs.existsSync(path.join(dir, f)), `${f} is in the tarball`);
      }
      assert.equal(fs.statSync(bin).mode & 0o777, 0o755);
      assert.deepEqual(fs.readFileSync(bin).subarray(0, 4), Buffer.from([0x7f, 0x45, 0x4c, 0x46]), "bin/djinn-worker is a native (ELF) executable");
    });

    test("runs the example build it carries with Node.js hidden and an empty environment", () => {
      const cwd = fs.mkdtempSync(path.join(work, "run-"));
      const r = withoutNode([bin, "run", path.join(dir, "examples/hello.yml"), "--objects", path.join(dir, "examples"), "--artifacts", "art", "--secret", "TOKEN=hunter2-s3cret"], cwd);
      assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /Build passed_with_failures/);
      assert.ok(!(r.stdout + r.stderr).includes("hunter2-s3cret"), "the secret is masked");
      assert.ok(fs.readdirSync(path.join(cwd, "art")).length > 0, "an artifact was collected");
      assert.equal(withoutNode([bin, "-version"], cwd).stdout, `djinn-worker ${version} linux/${arch}\n`);
      // The same CLI as the build's: same modules (yargs' CommonJS build), same help.
      const help = (cmd: string[]) => spawnSync(cmd[0], [...cmd.slice(1), "--help"], { encoding: "utf8", env: { ...process.env, COLUMNS: "100" } }).stdout;
      assert.equal(help([bin]), help([process.execPath, cliPath]));
      assert.equal(help([bin, "run"]), help([process.execPath, cliPath, "run"]));
    });

    test("logs readably on a terminal (in-process pretty printing, no worker thread)", () => {
      const cwd = fs.mkdtempSync(path.join(work, "tty-"));
      fs.writeFileSync(path.join(cwd, "m.yml"), "driver: {type: os}\nstages: [build]\njobs:\n- stage: build\n  commands: [echo built]\n- stage: unlisted\n  commands: [echo never]\n");
      const r = withoutNode(["/usr/bin/script", "-qec", `${bin} run m.yml`, "/dev/null"], cwd);
      assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /WARN.*unlisted/, "the warning is a readable line");
      assert.ok(!r.stdout.includes('"level"'), "not JSON");
    });

    test("runs a build on the docker driver: objects in, artifacts out, over the engine's API", { skip: dockerSkip }, async () => {
      const cwd = fs.mkdtempSync(path.join(work, "docker-"));
      fs.writeFileSync(path.join(cwd, "greeting.txt"), "hello from an object\n");
      fs.writeFileSync(path.join(cwd, "driver.toml"), '[docker]\npull = "never"\n');
      const image = await busyboxImage();
      fs.writeFileSync(path.join(cwd, "m.yml"), `driver: {type: docker, image: "${image}"}\nobjects: [greeting.txt]\nstages: [build]\njobs:\n- stage: build\n  commands: ["cat greeting.txt", "echo made > out.txt"]\n  artifacts: [out.txt]\n`);
      const r = withoutNode([bin, "run", "m.yml", "-driver", "driver.toml", "--objects", cwd, "--artifacts", "art"], cwd);
      assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /\nhello from an object\n/);
      assert.equal(fs.readFileSync(path.join(cwd, "art", "out.txt"), "utf8"), "made\n");
    });

    test("runs a build on the qemu driver, reached over SSH (ssh2 without its native binding)", { skip: requireService("qemu", qemuMissing()) }, async () => {
      await ensureFixtureImage();
      const cwd = fs.mkdtempSync(path.join(work, "qemu-"));
      fs.writeFileSync(path.join(cwd, "driver.toml"), `[qemu]\ndisks = "${FIXTURE_DISKS}"\nkey = "${FIXTURE_KEY}"\nmemory = 256\nboot_timeout = "4m"\n`);
      fs.writeFileSync(path.join(cwd, "m.yml"), `driver: {type: qemu, image: tiny}\nstages: [build]\njobs:\n- stage: build\n  commands: ['echo "kernel $(uname -s)"']\n`);
      const r = withoutNode([bin, "run", "m.yml", "-driver", "driver.toml"], cwd, 300_000);
      assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /\nkernel Linux\n/);
    });

    describe("daemon round trip with Node.js hidden", () => {
      const suite = new Suite();
      before(() => suite.start());
      after(() => suite.stop());

      test("migrate, submit, the daemon runs the build, status and logs; secrets read from files", async () => {
        const t = await suite.env({ migrate: false });
        // The crypto key comes from a file, as systemd's LoadCredential= gives it.
        const blockFile = path.join(t.dir, "crypto-block");
        fs.writeFileSync(blockFile, `${CRYPTO_BLOCK}\n`);
        const toml = fs.readFileSync(t.cfg.worker, "utf8");
        fs.writeFileSync(t.cfg.worker, toml.replace(`block = "${CRYPTO_BLOCK}"`, `block_file = "${blockFile}"`));
        const cli = (args: string[]) => withoutNode([bin, ...args, "-config", t.cfg.worker], t.dir);

        const migrated = cli(["migrate"]);
        assert.equal(migrated.status, 0, migrated.stderr);
        assert.match(migrated.stdout, /schema at version \d+/);
        // Nothing on stderr: the executable's require() warns about any module it is asked for that is not built in.
        assert.equal(migrated.stderr, "");

        const child = spawn("unshare", withoutNodeArgs([bin, "-config", t.cfg.worker, "-driver", t.cfg.driver]), { cwd: t.dir, env: { ...process.env, NODES: nodeBinaries().join(" ") }, stdio: ["ignore", "pipe", "pipe"] });
        const daemon = new DaemonProcess(child);
        try {
          await daemon.waitForMsg("worker started");
          const manifest = path.join(t.dir, "build.yml");
          fs.writeFileSync(manifest, osManifest([["echo token=$TOKEN", "uname -s"]]));
          const submitted = cli(["submit", manifest, "--secret", "TOKEN=s3cret-from-binary"]);
          assert.equal(submitted.status, 0, submitted.stderr);
          const id = Number(submitted.stdout.trim());
          await daemon.waitForMsg("build finished", { build: id }, 60_000);
          assert.equal((await t.build(id)).status, "passed");
          const status = cli(["status", String(id)]);
          assert.equal(status.stdout.split("\n")[0], `build ${id} passed`);
          assert.equal(submitted.stderr + status.stderr, "");
          const logs = cli(["logs", String(id)]);
          assert.equal(logs.status, 0, logs.stderr);
          assert.match(logs.stdout, /token=xxxxxx\n/);
          assert.match(logs.stdout, /\nLinux\n/);
          assert.ok(!daemon.raw.join("\n").includes("s3cret-from-binary"));
          daemon.kill("SIGTERM");
          assert.deepEqual(await daemon.exit, { code: 0, signal: null });
        } finally {
          await daemon.stop();
        }
      });
    });
  });

  describe(".deb", () => {
    const owned = ["/usr/bin/djinn-worker", "/etc/djinn", "/var/lib/djinn", "/var/log/djinn", "/var/log/djinn-worker.out", "/run/djinn-worker", "/lib/systemd/system/djinn-worker.service", "/etc/init.d/djinn-worker", "/etc/logrotate.d/djinn-worker"];
    const ownedByWeb = ["/lib/systemd/system/djinn-worker-web.service", "/etc/init.d/djinn-worker-web", "/var/log/djinn-worker-web.out", "/run/djinn-worker-web"];
    const installed = () => spawnSync("dpkg-query", ["-W", "-f=${Status}", "djinn-worker"], { encoding: "utf8" }).stdout.includes("installed");
    const userExists = () => spawnSync("id", ["-u", "djinn"]).status === 0;
    let createdUser = false;
    let daemonPid: number | undefined;
    let webPid: number | undefined;
    const suite = new Suite();

    before(async () => {
      // This installs onto the machine running the tests: refuse to touch an installation or files that were here before.
      assert.ok(!installed(), "djinn-worker is already installed on this machine: the test will not touch it");
      for (const p of [...owned, ...ownedByWeb]) assert.ok(!fs.existsSync(p), `${p} exists before the test: the test will not touch it`);
      createdUser = !userExists();
      await suite.start();
    });

    // Whatever happened: no daemon, no package, and no user this test made.
    after(async () => {
      const pidfile = "/run/djinn-worker/worker.pid";
      const pidIn = (file: string) => (fs.existsSync(file) ? Number(fs.readFileSync(file, "utf8")) : undefined);
      // The SysVinit script's restart loop first, then the daemon.
      const webPidfile = "/run/djinn-worker-web/web.pid";
      for (const pid of [pidIn(`${pidfile}.loop`), daemonPid, pidIn(pidfile), pidIn(`${webPidfile}.loop`), webPid, pidIn(webPidfile)]) {
        try {
          if (pid) process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      if (installed() || spawnSync("dpkg-query", ["-W", "djinn-worker"]).status === 0) spawnSync("dpkg", ["--purge", "djinn-worker"], { stdio: "ignore" });
      fs.rmSync("/run/djinn-worker", { recursive: true, force: true });
      fs.rmSync("/run/djinn-worker-web", { recursive: true, force: true });
      if (createdUser && userExists()) spawnSync("userdel", ["djinn"], { stdio: "ignore" });
      if (createdUser) spawnSync("groupdel", ["djinn"], { stdio: "ignore" });
      await suite.stop();
    });

    test("lintian reports no errors", () => {
      const r = spawnSync("lintian", ["--fail-on", "error", debFile], { encoding: "utf8" });
      assert.doesNotMatch(r.stdout, /^E: /m, r.stdout);
      assert.equal(r.status, 0, r.stdout + r.stderr);
    });

    test("installs with dpkg -i, runs check as djinn, starts as djinn, starts again after an upgrade, and purges without leftovers", async (t) => {
      const dpkg = spawnSync("dpkg", ["-i", debFile], { encoding: "utf8", timeout: 120_000, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
      assert.equal(dpkg.status, 0, dpkg.stdout + dpkg.stderr);

      // The user, its groups, its directories, the configuration readable by it alone.
      const uid = Number(execFileSync("id", ["-u", "djinn"], { encoding: "utf8" }));
      const gid = Number(execFileSync("id", ["-g", "djinn"], { encoding: "utf8" }));
      assert.ok(uid < 1000, `djinn is a system user (uid ${uid})`);
      const groups = execFileSync("id", ["-nG", "djinn"], { encoding: "utf8" }).trim().split(" ");
      for (const g of ["docker", "kvm"]) {
        if (spawnSync("getent", ["group", g]).status === 0) assert.ok(groups.includes(g), `djinn is in the ${g} group: ${groups}`);
      }
      for (const d of ["/var/lib/djinn/images", "/var/lib/djinn/artifacts", "/var/lib/djinn/objects", "/var/log/djinn"]) {
        assert.equal(fs.statSync(d).uid, uid, `${d} belongs to djinn`);
      }
      for (const f of ["/etc/djinn/worker.toml", "/etc/djinn/driver.toml"]) {
        const st = fs.statSync(f);
        assert.equal(st.mode & 0o777, 0o640, f);
        assert.deepEqual([st.uid, st.gid], [0, gid], `${f} is root:djinn`);
      }
      const conffiles = execFileSync("dpkg-query", ["-W", "-f=${Conffiles}", "djinn-worker"], { encoding: "utf8" });
      for (const f of ["/etc/djinn/worker.toml", "/etc/djinn/driver.toml", "/etc/init.d/djinn-worker", "/etc/init.d/djinn-worker-web", "/etc/logrotate.d/djinn-worker"]) assert.ok(conffiles.includes(f), `${f} is a conffile`);
      const unit = fs.readFileSync("/lib/systemd/system/djinn-worker.service", "utf8");
      assert.match(unit, /^ExecStart=\/usr\/bin\/djinn-worker /m);
      assert.match(unit, /^User=djinn$/m);
      assert.match(fs.readFileSync("/etc/init.d/djinn-worker", "utf8"), /DAEMON=\$\{DAEMON:-\/usr\/bin\/djinn-worker\}/);
      // What README.md.gz links to is there: the operator docs and the example build.
      const doc = "/usr/share/doc/djinn-worker";
      assert.match(execFileSync("zcat", [`${doc}/docs/install.md.gz`], { encoding: "utf8" }), /^# Installing a build machine/);
      for (const f of ["hello.yml", "greeting.txt"]) assert.deepEqual(fs.readFileSync(`${doc}/examples/${f}`), fs.readFileSync(path.join(repoRoot, "examples", f)), `${doc}/examples/${f}`);
      // The web view's unit and script: the same user, the package's executable, registered but not enabled.
      const webUnit = fs.readFileSync("/lib/systemd/system/djinn-worker-web.service", "utf8");
      assert.match(webUnit, /^ExecStart=\/usr\/bin\/djinn-worker web -config \/etc\/djinn\/worker\.toml$/m);
      assert.match(webUnit, /^User=djinn$/m);
      for (const hardening of ["NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateDevices=yes", "CapabilityBoundingSet="]) assert.match(webUnit, new RegExp(`^${hardening}$`, "m"));
      if (which("systemd-analyze")) {
        const verify = spawnSync("systemd-analyze", ["verify", "/lib/systemd/system/djinn-worker-web.service"], { encoding: "utf8", timeout: 60_000 });
        assert.equal(verify.stderr.split("\n").filter((l) => l.includes("djinn-worker-web")).join("\n"), "", "systemd finds nothing wrong with the web unit");
      }
      assert.match(fs.readFileSync("/etc/init.d/djinn-worker-web", "utf8"), /DAEMON=\$\{DAEMON:-\/usr\/bin\/djinn-worker\}/);
      const rcOf = (name: string) => fs.readdirSync("/etc").filter((d) => /^rc.\.d$/.test(d)).flatMap((d) => fs.readdirSync(path.join("/etc", d)).filter((f) => f.slice(3) === name).map((f) => f[0]));
      assert.ok(rcOf("djinn-worker-web").length > 0 && !rcOf("djinn-worker-web").includes("S"), `djinn-worker-web is registered, never started by a runlevel: ${rcOf("djinn-worker-web")}`);
      const hook = fs.statSync("/usr/share/djinn-worker/post-receive");
      assert.equal(hook.mode & 0o777, 0o755, "the post-receive hook is installed, executable");
      assert.match(fs.readFileSync("/usr/share/djinn-worker/post-receive", "utf8"), /djinn-worker "\$@"/);
      const logrotate = spawnSync("logrotate", ["--debug", "--state", path.join(work, "logrotate.state"), "/etc/logrotate.d/djinn-worker"], { encoding: "utf8", timeout: 60_000 });
      assert.equal(logrotate.status, 0, logrotate.stderr);
      assert.doesNotMatch(logrotate.stdout + logrotate.stderr, /error/i);

      // On PATH, and `check` as djinn against real servers, the database password in a file.
      const asDjinn = (cmd: string[]) => spawnSync("runuser", ["-u", "djinn", "--", ...cmd], { encoding: "utf8", timeout: 60_000, env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" } });
      assert.equal(asDjinn(["sh", "-c", "command -v djinn-worker"]).stdout.trim(), "/usr/bin/djinn-worker");
      const database = await suite.postgres.createDatabase();
      fs.writeFileSync("/etc/djinn/database-password", "pg-pass-from-file-Qw3\n", { mode: 0o640 });
      fs.chownSync("/etc/djinn/database-password", 0, gid);
      const worker = [
        'driver = "os"',
        'pidfile = "/run/djinn-worker/worker.pid"',
        "[crypto]",
        `block = "${CRYPTO_BLOCK}"`,
        "[database]",
        `addr = "${suite.postgres.addr}"`,
        `name = "${database}"`,
        'username = "postgres"',
        'password_file = "/etc/djinn/database-password"',
        "[redis]",
        `addr = "${suite.redis.addr}"`,
        "[artifacts]",
        'path = "/var/lib/djinn/artifacts"',
        "[objects]",
        'path = "/var/lib/djinn/objects"',
        "[log]",
        'file = "/var/log/djinn/worker.log"',
      ];
      fs.writeFileSync("/etc/djinn/worker.toml", worker.join("\n") + "\n");
      const config = ["-config", "/etc/djinn/worker.toml", "-driver", "/etc/djinn/driver.toml"];
      const migrated = asDjinn(["djinn-worker", "migrate", "-config", "/etc/djinn/worker.toml"]);
      assert.equal(migrated.status, 0, migrated.stderr);
      // The driver.toml the package ships (docker, qemu, ssh, os) passes check as installed, every driver served.
      fs.writeFileSync("/etc/djinn/worker.toml", worker.join("\n").replace('driver = "os"', 'driver = "*"') + "\n");
      const shipped = asDjinn(["djinn-worker", "check", ...config]);
      assert.equal(shipped.status, 0, shipped.stdout + shipped.stderr);
      assert.match(shipped.stdout, /^ok {3}qemu: /m);
      assert.match(shipped.stdout, /^ok {3}docker: /m);
      fs.writeFileSync("/etc/djinn/worker.toml", worker.join("\n") + "\n");
      fs.writeFileSync("/etc/djinn/driver.toml", "[os]\n");
      const check = asDjinn(["djinn-worker", "check", ...config]);
      assert.equal(check.status, 0, check.stdout + check.stderr);
      assert.match(check.stdout, /database\.password = \*\*\*/);
      assert.match(check.stdout, /ok {3}postgresql: .* schema version \d+ \(current\)/);
      assert.ok(!(check.stdout + check.stderr).includes("pg-pass-from-file-Qw3"));
      const stranger = spawnSync("runuser", ["-u", "nobody", "--", "/usr/bin/djinn-worker", "check", ...config], { encoding: "utf8", timeout: 60_000 });
      assert.equal(stranger.status, 1);
      assert.equal(stranger.stderr, "djinn-worker: /etc/djinn/worker.toml: cannot read configuration: permission denied\n");

      // The SysVinit script starts the daemon as djinn, and stops it.
      const start = spawnSync("/etc/init.d/djinn-worker", ["start"], { encoding: "utf8", timeout: 60_000 });
      assert.equal(start.status, 0, `${start.error ?? ""}${start.stdout}${start.stderr}`);
      const pid = (daemonPid = Number(fs.readFileSync("/run/djinn-worker/worker.pid", "utf8")));
      assert.equal(fs.statSync(`/proc/${pid}`).uid, uid, "the daemon runs as djinn");
      await until("worker started in the log", () => fs.readFileSync("/var/log/djinn/worker.log", "utf8").includes('"msg":"worker started"') || undefined);

      // An upgrade without systemd: prerm stops the daemon, postinst starts it again, since the
      // runlevel's links enable it (invoke-rc.d, told the runlevel and allowed to act, in a
      // mount namespace of its own: this machine may have no runlevel and a policy-rc.d that
      // forbids every start).
      let running = pid;
      if (fs.existsSync("/run/systemd/system")) {
        t.diagnostic("systemd runs here: the upgrade goes through its unit, not the SysVinit script");
      } else {
        assert.equal(spawnSync("update-rc.d", ["djinn-worker", "enable"], { encoding: "utf8" }).status, 0);
        const upgrade = asOnSysvinit(["dpkg", "-i", debFile], work);
        assert.equal(upgrade.status, 0, upgrade.stdout + upgrade.stderr);
        assert.match(upgrade.stdout, /Stopping djinn-worker[^]*Starting djinn-worker/);
        running = daemonPid = Number(fs.readFileSync("/run/djinn-worker/worker.pid", "utf8"));
        assert.notEqual(running, pid, "a new daemon serves after the upgrade");
        assert.equal(fs.statSync(`/proc/${running}`).uid, uid, "it runs as djinn");
        assert.equal(fs.readFileSync("/run/djinn-worker/worker.pid.state", "utf8").trim(), "serving");
      }
      // Stopped by hand, not with `stop`: where pid 1 reaps no orphans (a container), the
      // script would wait for a zombie.
      process.kill(running, "SIGTERM");
      await until("the daemon to exit", () => !fs.existsSync(`/proc/${running}`) || /^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${running}/stat`, "utf8")) || undefined);
      assert.ok(!fs.existsSync("/run/djinn-worker/worker.pid"), "the daemon removed its pidfile");

      // The web view, once [web] is configured: check finds its port free, its SysVinit script
      // starts it as djinn and waits until it serves, reload reopens its log, stop ends it.
      const webPort = await freeLocalPort();
      fs.writeFileSync("/etc/djinn/worker.toml", [...worker, "[web]", `addr = "127.0.0.1:${webPort}"`, 'pidfile = "/run/djinn-worker-web/web.pid"'].join("\n") + "\n");
      const webCheck = asDjinn(["djinn-worker", "check", ...config]);
      assert.equal(webCheck.status, 0, webCheck.stdout + webCheck.stderr);
      assert.ok(webCheck.stdout.includes(`ok   web: 127.0.0.1:${webPort} is free to listen on`), webCheck.stdout);
      const webStart = spawnSync("/etc/init.d/djinn-worker-web", ["start"], { encoding: "utf8", timeout: 60_000 });
      assert.equal(webStart.status, 0, `${webStart.error ?? ""}${webStart.stdout}${webStart.stderr}`);
      const wpid = (webPid = Number(fs.readFileSync("/run/djinn-worker-web/web.pid", "utf8")));
      assert.equal(fs.statSync(`/proc/${wpid}`).uid, uid, "the web process runs as djinn");
      const listPage = await fetch(`http://127.0.0.1:${webPort}/`);
      assert.equal(listPage.status, 200);
      assert.match(await listPage.text(), /djinn-worker builds/);
      const webStatus = spawnSync("/etc/init.d/djinn-worker-web", ["status"], { encoding: "utf8", timeout: 60_000 });
      assert.deepEqual([webStatus.status, webStatus.stdout], [0, `djinn-worker-web is running (pid ${wpid})\n`]);
      assert.equal(spawnSync("/etc/init.d/djinn-worker-web", ["reload"], { timeout: 60_000 }).status, 0);
      await until("the web process to reopen its log", () => fs.readFileSync("/var/log/djinn/worker.log", "utf8").split("\n").some((l) => l.includes(`"pid":${wpid},`) && l.includes('"msg":"SIGHUP: log file reopened"')) || undefined);
      assert.ok(fs.existsSync(`/proc/${wpid}`), "a SIGHUP does not end the web process");
      const webStop = spawnSync("/etc/init.d/djinn-worker-web", ["stop"], { encoding: "utf8", timeout: 60_000 });
      assert.equal(webStop.status, 0, webStop.stdout + webStop.stderr);
      assert.ok(!fs.existsSync("/run/djinn-worker-web/web.pid"));
      assert.equal(spawnSync("/etc/init.d/djinn-worker-web", ["status"], { timeout: 60_000 }).status, 3);

      const purge = spawnSync("dpkg", ["--purge", "djinn-worker"], { encoding: "utf8", timeout: 120_000 });
      assert.equal(purge.status, 0, purge.stdout + purge.stderr);
      assert.ok(!installed());
      for (const p of [...owned, ...ownedByWeb]) assert.ok(!fs.existsSync(p), `${p} is gone after purge`);
      const rcLinks = fs.readdirSync("/etc").filter((d) => /^rc.\.d$/.test(d)).flatMap((d) => fs.readdirSync(path.join("/etc", d)).filter((f) => f.endsWith("djinn-worker")));
      assert.deepEqual(rcLinks, [], "no init links are left");
    });
  });
});
