// An operator coming from Djinn CI: its worker.toml and driver.toml load as they are, `check`
// fails only on what is really missing, and no command answers any failure with a stack trace.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { Redis } from "ioredis";
import { startSmtpServer } from "./helpers/smtp.js";
import { classify, describe as describeError, exitCodeFor, failureText } from "../internal/cli/failure.js";
import { loadDriverConfig, loadWorkerConfig } from "../internal/config/config.js";
import { ConfigError } from "../internal/config/schema.js";
import { fileReadReason, InputError } from "../internal/errors/errors.js";
import { EXIT_TRY_AGAIN, StartupError } from "../internal/worker/startup.js";
import { DatabaseError as PostgresError } from "pg-protocol";
import redisErrors from "redis-errors";
import { imageCandidates, resolveImage } from "../internal/driver/qemu/qemu.js";
import { ManifestError, parseManifest, parsePassthrough } from "../internal/manifest/manifest.js";
import { parseGlobOutput } from "../internal/driver/artifacts.js";
import { artifactName, isPattern } from "../internal/runner/collect.js";
import { freeLocalPort } from "../internal/net/port.js";
import { cliPath, fixtures, requireService, which } from "./helpers/env.js";
import { postgresMissing, redisMissing, startPostgres, startRedis, testPool, type PostgresServer, type RedisServer } from "./helpers/services.js";

const DJINN_WORKER = path.join(fixtures, "djinn", "worker.toml");
const DJINN_DRIVER = path.join(fixtures, "djinn", "driver.toml");
const STACK_LINE = /^\s+at /m;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI without blocking the event loop (the servers under test live in this process). */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return spawnCollecting(process.execPath, [cliPath, ...args], env);
}

/** Runs `command`, collecting its output; DJINN_DEBUG is cleared, so a stack trace is never asked for. */
function spawnCollecting(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, DJINN_DEBUG: "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** One line on stderr (warnings aside), no stack trace, the expected exit code. */
function assertOneLine(r: CliResult, code: number, pattern: RegExp): void {
  assert.doesNotMatch(r.stderr + r.stdout, STACK_LINE, `a stack trace was printed:\n${r.stderr}`);
  const lines = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("warning: "));
  assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
  assert.match(lines[0], pattern);
  assert.equal(r.code, code, r.stderr);
}

const temps: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-compat-"));
  temps.push(dir);
  return dir;
}
after(async () => {
  for (const d of temps) await fs.rm(d, { recursive: true, force: true });
});

/** Djinn's fixture with `replace` applied: [section, key, new TOML value]. */
async function djinnWorker(dir: string, replace: [string, string, string | null][]): Promise<string> {
  let text = await fs.readFile(DJINN_WORKER, "utf8");
  for (const [section, key, value] of replace) {
    const start = section ? text.indexOf(`[${section}]`) : 0;
    assert.ok(start >= 0, `fixture has [${section}]`);
    const re = new RegExp(`^${key}\\s*=.*$`, "m");
    const rest = text.slice(start);
    const m = re.exec(rest);
    assert.ok(m, `fixture has ${section}.${key}`);
    const at = start + m.index;
    text = text.slice(0, at) + (value === null ? "" : `${key} = ${value}`) + text.slice(at + m[0].length);
  }
  const file = path.join(dir, `worker-${temps.length}-${Math.random().toString(36).slice(2, 8)}.toml`);
  await fs.writeFile(file, text);
  return file;
}

describe("Djinn's worker.toml and driver.toml load as they are", () => {
  test("worker.toml: Djinn-only keys are warnings saying what they do here, never errors", () => {
    const cfg = loadWorkerConfig(DJINN_WORKER);
    assert.equal(cfg.log.level, "info");
    assert.equal(cfg.artifacts?.limit, 5_000_000);
    assert.equal(cfg.images?.path, "/var/lib/djinn/images");
    const text = cfg.warnings.join("\n");
    assert.match(text, /worker\.toml:17: crypto\.salt is ignored: Djinn's server uses it/);
    assert.match(text, /worker\.toml:41: images\.limit is ignored: it limits image uploads/);
    assert.match(text, /worker\.toml:52: objects\.limit is ignored: it limits object uploads/);
    // The providers' webhook secrets are read (push triggers); their OAuth keys are Djinn's server's alone.
    assert.match(text, /worker\.toml:62: providers\[0\]\.client_id is ignored: it is for sign-in through Djinn's server/);
    assert.match(text, /worker\.toml:69: providers\[1\]\.client_secret is ignored/);
    assert.equal(cfg.warnings.length, 7, text);
    assert.deepEqual(cfg.providers, [
      { name: "github", secret: "provider-secret-1" },
      { name: "gitlab", secret: "provider-secret-2" },
    ]);
    // Ignored values are never kept, so nothing can print them.
    assert.ok(!JSON.stringify(cfg).includes("provider-client-secret"));
    assert.ok(!JSON.stringify(cfg).includes("a1b2c3d4e5f6"));
  });

  test("log.level is case-insensitive and knows warn", async () => {
    const dir = await tempDir();
    for (const [given, want] of [["WARN", "warn"], ["warn", "warn"], ["Debug", "debug"], ["ERROR", "error"]]) {
      assert.equal(loadWorkerConfig(await djinnWorker(dir, [["log", "level", `"${given}"`]])).log.level, want);
    }
  });

  test("driver.toml: [ssh] timeout as whole seconds or a duration, ssh.password, docker version, qemu disks", async () => {
    const cfg = loadDriverConfig(DJINN_DRIVER);
    assert.deepEqual(cfg.warnings, []);
    assert.equal(cfg.ssh?.timeoutMs, 60_000);
    assert.equal(cfg.ssh?.password, "s3cr3t-ssh");
    assert.equal(cfg.docker?.version, "1.40");
    assert.equal(cfg.qemu?.disks, "/var/lib/djinn/images/qemu");
    const dir = await tempDir();
    const file = path.join(dir, "driver.toml");
    await fs.writeFile(file, '[ssh]\ntimeout = "1m30s"\n');
    assert.equal(loadDriverConfig(file).ssh?.timeoutMs, 90_000);
    await fs.writeFile(file, "[ssh]\ntimeout = -5\n");
    assert.throws(() => loadDriverConfig(file), /driver\.toml:2: ssh\.timeout: must not be negative/);
    await fs.writeFile(file, "[ssh]\ntimeout = 1.5\n");
    assert.throws(() => loadDriverConfig(file), /ssh\.timeout: expected a duration string such as "30m" or a whole number of seconds, got float 1\.5/);
  });

  test("check with the servers down fails only on what is really missing, in one line each, and shows no secret", async () => {
    const r = await cli(["check", "-config", DJINN_WORKER, "-driver", DJINN_DRIVER]);
    assert.doesNotMatch(r.stderr + r.stdout, STACK_LINE);
    assert.equal(r.code, 1);
    const fails = r.stdout.split("\n").filter((l) => l.startsWith("FAIL"));
    const expected = [/^FAIL smtp\.ca: cannot read \/etc\/ssl\/cert\.pem: no such file$/, /^FAIL postgresql: cannot connect to PostgreSQL at localhost:5432/, /^FAIL redis: cannot connect to Redis at localhost:6379/, /^FAIL qemu-x86_64: \[qemu\] disks \/var\/lib\/djinn\/images\/qemu: no such directory$/, /^FAIL docker: /];
    for (const line of fails) assert.ok(expected.some((re) => re.test(line)), `unexpected failure: ${line}`);
    assert.ok(fails.some((l) => l.startsWith("FAIL smtp.ca")), r.stdout);
    for (const secret of ["s3cr3t", "provider-secret", "a1b2c3d4e5f6", "0f1e2d3c4b5a6978"]) assert.ok(!(r.stdout + r.stderr).includes(secret), `check printed ${secret}`);
    assert.match(r.stdout, /ssh: log in as root with the configured password, trying for up to 1m0s/);
  });
});

describe("qemu images in Djinn's layout", () => {
  test("<disks>/_base/<arch>/<image>, <disks>/<arch>/<image> and <disks>/<image> are found, with or without .qcow2", async () => {
    const disks = await tempDir();
    const base = { type: "qemu", image: "centos/7" };
    const config = (d?: string) => ({ qemu: { disks: d, cpus: 1, memory: 256, accel: "tcg" as const, bootTimeoutMs: 1000, disk_interface: "virtio" as const, net_device: "virtio-net-pci" }, warnings: [] });
    await assert.rejects(resolveImage({ manifest: base, config: config(disks) }), (err: Error) => {
      for (const p of imageCandidates(disks, "x86_64", "centos/7")) assert.ok(err.message.includes(p), `"not found" names ${p}: ${err.message}`);
      assert.equal(imageCandidates(disks, "x86_64", "centos/7").length, 6);
      return true;
    });
    await fs.mkdir(path.join(disks, "x86_64"), { recursive: true });
    await fs.writeFile(path.join(disks, "x86_64", "centos-7.qcow2"), "");
    assert.equal(await resolveImage({ manifest: { type: "qemu", image: "centos-7" }, config: config(disks) }), path.join(disks, "x86_64", "centos-7.qcow2"));
    await fs.mkdir(path.join(disks, "_base", "x86_64", "centos"), { recursive: true });
    await fs.writeFile(path.join(disks, "_base", "x86_64", "centos", "7"), "");
    assert.equal(await resolveImage({ manifest: base, config: config(disks) }), path.join(disks, "_base", "x86_64", "centos", "7"));
    // The daemon: [qemu] disks when set, else <images.path>/qemu.
    const images = await tempDir();
    assert.equal(await resolveImage({ manifest: base, config: config(disks), imagesPath: images }), path.join(disks, "_base", "x86_64", "centos", "7"));
    await fs.mkdir(path.join(images, "qemu", "_base", "x86_64", "centos"), { recursive: true });
    await fs.writeFile(path.join(images, "qemu", "_base", "x86_64", "centos", "7.qcow2"), "");
    assert.equal(await resolveImage({ manifest: base, config: config(undefined), imagesPath: images }), path.join(images, "qemu", "_base", "x86_64", "centos", "7.qcow2"));
  });
});

describe("jobs with only artifacts", () => {
  test("a job may have only artifacts or only commands; neither is an error naming the job", () => {
    const { manifest } = parseManifest("driver: {type: os}\nstages: [make, keep]\njobs:\n- {stage: make, commands: [true]}\n- {stage: keep, name: collect, artifacts: [out.txt]}\n");
    assert.deepEqual(manifest.jobs[1], { stage: "keep", name: "collect", commands: [], artifacts: [{ source: "out.txt", dest: "out.txt" }] });
    assert.throws(() => parseManifest("driver: {type: os}\nstages: [a]\njobs:\n- {stage: a, commands: [true]}\n- stage: a\n  name: empty\n"), (err: Error) => {
      assert.ok(err instanceof ManifestError);
      assert.equal(err.message, 'line 5: jobs[1]: job "empty" has neither commands nor artifacts: give it a list of commands, of artifacts, or both');
      return true;
    });
    assert.throws(() => parseManifest("driver: {type: os}\nstages: [a]\njobs:\n- {stage: a, commands: [], artifacts: []}\n"), /jobs\[0\]: the job in stage "a" has neither commands nor artifacts/);
  });

  test("run: an artifact-only job collects what an earlier job made", async () => {
    const dir = await tempDir();
    const manifest = path.join(dir, "m.yml");
    await fs.writeFile(manifest, "driver: {type: os}\nstages: [make, keep]\njobs:\n- {stage: make, commands: ['echo made >out.txt']}\n- {stage: keep, name: collect, artifacts: [out.txt => kept.txt]}\n");
    const r = await cli(["run", manifest, "--artifacts", path.join(dir, "artifacts")]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(await fs.readFile(path.join(dir, "artifacts", "kept.txt"), "utf8"), "made\n");
  });
});

describe("artifact names by Djinn's rule", () => {
  test("a match keeps its base name, or replaces * in the destination; a literal path keeps its destination", () => {
    const name = (entry: string, match: string, count = 1) => artifactName(parsePassthrough(entry), match, count);
    assert.equal(name("dist/*.tar.gz", "/w/dist/app-1.tar.gz").name, "app-1.tar.gz");
    assert.equal(name("dist/[ab].txt", "/w/dist/a.txt").name, "a.txt");
    assert.equal(name("/var/log/*.log => logs/*", "/var/log/x.log").name, "logs/x.log");
    assert.equal(name("/etc/os-release", "/etc/os-release").name, "os-release");
    assert.equal(name("/etc/os-release => release.txt", "/etc/os-release").name, "release.txt");
    assert.equal(name("build/*.log => all.log", "/w/build/a.log", 1).name, "all.log");
    const several = name("build/*.log => all.log", "/w/build/a.log", 2);
    assert.equal(several.name, "a.log");
    assert.match(several.note!, /2 files match build\/\*\.log but all\.log names one/);
    assert.equal(isPattern("a/b.txt"), false);
    assert.deepEqual(parseGlobOutput("/w/../opt/x\0/w/a b\0"), ["/opt/x", "/w/a b"]);
  });

  test("os: patterns match inside the workspace only", async () => {
    const dir = await tempDir();
    const manifest = path.join(dir, "m.yml");
    await fs.writeFile(manifest, "driver: {type: os}\nstages: [s]\njobs:\n- stage: s\n  commands: ['mkdir d && echo 1 >d/a.txt && echo 2 >d/b.txt && ln -s /etc/passwd d/c.txt']\n  artifacts: ['d/*.txt', '~/d/a.*t => home-*', '/etc/pass*', '../*']\n");
    const r = await cli(["run", manifest, "--artifacts", path.join(dir, "artifacts")]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual((await fs.readdir(path.join(dir, "artifacts"))).sort(), ["a.txt", "b.txt", "home-a.txt"]);
    assert.match(r.stdout, /artifact d\/c\.txt not collected: d\/c\.txt links outside the workspace/);
    assert.match(r.stdout, /artifact \/etc\/pass\* not collected: \/etc\/pass\* is outside the workspace/);
    assert.match(r.stdout, /artifact \.\.\/\* not collected: \.\.\/\* is outside the workspace/);
  });
});

describe("one error → exit code table", () => {
  test("why a named file cannot be read: one phrase for every reader of one", () => {
    const failed = (code: string, message = `${code}: it failed`) => Object.assign(new Error(message), { code });
    assert.equal(fileReadReason(failed("ENOENT")), "no such file");
    assert.equal(fileReadReason(failed("EACCES")), "permission denied");
    assert.equal(fileReadReason(failed("EISDIR")), "is a directory");
    assert.equal(fileReadReason(failed("ENOTDIR")), "not a directory");
    assert.equal(fileReadReason(failed("EWHATEVER", "something odd")), "something odd");
  });

  test("input is 2, environment 1, anything else 5 with a way to the stack", () => {
    const input = new InputError("build 7 not found");
    const config = new ConfigError("w.toml", "x", 1, "bad");
    const system = Object.assign(new Error("EACCES: permission denied, open '/var/log/djinn/worker.log'"), { code: "EACCES", errno: -13, syscall: "open", path: "/var/log/djinn/worker.log" });
    const postgres = Object.assign(new PostgresError('relation "builds" does not exist', 0, "error"), { severity: "ERROR", code: "42P01" });
    assert.equal(exitCodeFor(input), 2);
    assert.equal(exitCodeFor(config), 1);
    assert.equal(exitCodeFor(config, { config: 2 }), 2);
    assert.equal(exitCodeFor(system), 1);
    assert.equal(describeError(system), "open /var/log/djinn/worker.log: permission denied");
    assert.equal(describeError(postgres), 'PostgreSQL: relation "builds" does not exist');
    assert.equal(exitCodeFor(postgres), 1);
    assert.equal(classify(new TypeError("x is undefined")), "internal");
    // By class, not by name: an error merely named like one of ours is a defect.
    assert.equal(exitCodeFor(Object.assign(new Error("x"), { name: "InputError" })), 5);
    assert.equal(exitCodeFor(new ManifestError("jobs", "expected a list", 3)), 2);
    assert.equal(exitCodeFor(new StartupError("PostgreSQL is not answering", EXIT_TRY_AGAIN)), EXIT_TRY_AGAIN);
    assert.equal(exitCodeFor(new StartupError("wrong password")), 1);
    const reply = new redisErrors.ReplyError("WRONGPASS invalid username-password pair");
    assert.deepEqual([exitCodeFor(reply), describeError(reply)], [1, "Redis: WRONGPASS invalid username-password pair"]);
    assert.equal(exitCodeFor(new TypeError("x is undefined")), 5);
    const bug = new TypeError("cannot read properties of undefined\nmore");
    const saved = process.env.DJINN_DEBUG;
    try {
      delete process.env.DJINN_DEBUG;
      assert.equal(failureText(bug), "djinn-worker: internal error: cannot read properties of undefined (set DJINN_DEBUG=1 for the stack trace)\n");
      process.env.DJINN_DEBUG = "1";
      assert.match(failureText(bug), STACK_LINE);
    } finally {
      if (saved === undefined) delete process.env.DJINN_DEBUG;
      else process.env.DJINN_DEBUG = saved;
    }
  });
});

const servicesSkip = requireService("redis", redisMissing()) || requireService("postgresql", postgresMissing()) || requireService("openssl", which("openssl") ? undefined : "the openssl CLI is needed for a throwaway certificate");

describe("no command prints a stack trace", { skip: servicesSkip }, () => {
  let redis: RedisServer;
  let postgres: PostgresServer;
  let dir: string;
  let closedPort: number;
  before(async () => {
    [redis, postgres] = await Promise.all([startRedis(), startPostgres()]);
    dir = await tempDir();
    closedPort = await freeLocalPort();
  });
  after(async () => {
    await Promise.all([redis?.stop(), postgres?.stop()]);
  });

  /** Djinn's worker.toml pointed at the throwaway servers and directories. */
  const config = async (database: string, extra: [string, string, string | null][] = []) =>
    djinnWorker(dir, [
      ["database", "addr", `"${postgres.addr}"`],
      ["database", "name", `"${database}"`],
      ["database", "username", `"postgres"`],
      ["redis", "addr", `"${redis.addr}"`],
      ["smtp", "ca", null],
      ["smtp", "addr", `"127.0.0.1:${closedPort}"`],
      ["images", "path", `"${dir}/images"`],
      ["artifacts", "path", `"${dir}/artifacts"`],
      ["objects", "path", `"${dir}/objects"`],
      ["log", "file", `"${dir}/worker.log"`],
      ...extra,
    ]);
  const osDriver = async () => {
    const file = path.join(dir, "os-driver.toml");
    await fs.writeFile(file, "[os]\n");
    return file;
  };

  test("what the PostgreSQL and Redis clients really throw is a server problem: exit 1, one line", async () => {
    const pool = testPool(postgres, await postgres.createDatabase());
    const client = new Redis(redis.port, "127.0.0.1");
    try {
      const fromPostgres = await pool.query("SELECT 1 FROM builds").then(() => assert.fail("the query should fail"), (err: unknown) => err);
      assert.deepEqual([exitCodeFor(fromPostgres), describeError(fromPostgres)], [1, 'PostgreSQL: relation "builds" does not exist']);
      const fromRedis = await client.call("AUTH", "not-the-password").then(() => assert.fail("AUTH should be refused"), (err: unknown) => err);
      assert.equal(exitCodeFor(fromRedis), 1);
      assert.match(describeError(fromRedis), /^Redis: ERR .*AUTH/);
    } finally {
      client.disconnect();
      await pool.end();
    }
  });

  test("migrate as a role granted ALL on the database but not its owner says what to grant, then works once it is the owner", async () => {
    const name = await postgres.createDatabase();
    const admin = new pg.Client({ host: "127.0.0.1", port: postgres.port, user: "postgres", database: "postgres" });
    await admin.connect();
    try {
      const role = `djinn-worker-${name}`;
      // The steps an operator takes first on PostgreSQL 15, and the role name needs quoting.
      await admin.query(`CREATE ROLE "${role}" LOGIN; GRANT ALL PRIVILEGES ON DATABASE ${name} TO "${role}"`);
      const worker = await config(name, [["database", "username", `"${role}"`]]);
      assertOneLine(await cli(["migrate", "-config", worker]), 1,
        new RegExp(`^djinn-worker: PostgreSQL: permission denied for schema public: role "${role}" may not create tables in database "${name}"; make it the database's owner \\(as a superuser: ALTER DATABASE "${name}" OWNER TO "${role}";\\) and run migrate again$`));
      await admin.query(`ALTER DATABASE "${name}" OWNER TO "${role}"`);
      assert.equal((await cli(["migrate", "-config", worker])).code, 0);
    } finally {
      await admin.end();
    }
  });

  test("status, logs and kill against a database that was never migrated", async () => {
    const worker = await config(await postgres.createDatabase());
    for (const args of [["status", "1"], ["logs", "1"], ["kill", "1"], ["submit", path.join(dir, "none.yml")]]) {
      if (args[0] === "submit") await fs.writeFile(args[1], "driver: {type: os}\nstages: [a]\njobs: [{stage: a, commands: [true]}]\n");
      assertOneLine(await cli([...args, "-config", worker]), 1, /^djinn-worker: database schema is at version 0, this worker needs version \d+: run `djinn-worker migrate -config .*`$/);
    }
  });

  test("a database migrated by another program is refused by every command, migrate included", async () => {
    const name = await postgres.createDatabase();
    const client = new pg.Client({ host: "127.0.0.1", port: postgres.port, user: "postgres", database: name });
    await client.connect();
    await client.query("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL); INSERT INTO schema_migrations VALUES (20210301, false)");
    await client.end();
    const worker = await config(name);
    for (const args of [["migrate"], ["status", "1"], ["logs", "1"]]) {
      assertOneLine(await cli([...args, "-config", worker]), 1, /^djinn-worker: the database was migrated by another program \(its schema_migrations table has columns dirty, version, not version and name\): give djinn-worker a database of its own$/);
    }
    const r = await cli(["-config", worker, "-driver", await osDriver()]);
    assertOneLine(r, 1, /migrated by another program/);
  });

  test("unreachable PostgreSQL and Redis, unreadable [database.ssl] files", async () => {
    const name = await postgres.createDatabase();
    const down = await config(name, [["database", "addr", `"127.0.0.1:${closedPort}"`]]);
    assertOneLine(await cli(["status", "1", "-config", down]), 1, new RegExp(`^djinn-worker: cannot connect to PostgreSQL at 127\\.0\\.0\\.1:${closedPort}: connection refused$`));
    assertOneLine(await cli(["migrate", "-config", down]), 1, /cannot connect to PostgreSQL/);
    const worker = await config(name);
    assert.equal((await cli(["migrate", "-config", worker])).code, 0);
    const manifest = path.join(dir, "ok.yml");
    await fs.writeFile(manifest, "driver: {type: os}\nstages: [a]\njobs: [{stage: a, commands: [true]}]\n");
    const noRedis = await config(name, [["redis", "addr", `"127.0.0.1:${closedPort}"`]]);
    assertOneLine(await cli(["submit", manifest, "-config", noRedis]), 1, new RegExp(`^djinn-worker: cannot connect to Redis at 127\\.0\\.0\\.1:${closedPort}`));
    const ssl = path.join(dir, "ssl.toml");
    await fs.writeFile(ssl, (await fs.readFile(worker, "utf8")) + `\n[database.ssl]\nca = "${dir}/no-ca.pem"\n`);
    assertOneLine(await cli(["status", "1", "-config", ssl]), 1, new RegExp(`^djinn-worker: database\\.ssl\\.ca: cannot read ${dir}/no-ca\\.pem: no such file$`));
    assertOneLine(await cli(["status", "99", "-config", worker]), 2, /^djinn-worker: build 99 not found$/);
  });

  test("the daemon: unreadable smtp.ca, unwritable log file, pidfile in a missing directory", async () => {
    const name = await postgres.createDatabase();
    const worker = await config(name);
    assert.equal((await cli(["migrate", "-config", worker])).code, 0);
    const driver = await osDriver();
    const badCa = await config(name, [["smtp", "addr", `"127.0.0.1:${closedPort}"\nca = "${dir}/cert.pem"`]]);
    assertOneLine(await cli(["-config", badCa, "-driver", driver]), 1, new RegExp(`^djinn-worker: smtp\\.ca: cannot read ${dir}/cert\\.pem: no such file$`));
    const notADir = path.join(dir, "a-file");
    await fs.writeFile(notADir, "");
    const badLog = await config(name, [["log", "file", `"${notADir}/worker.log"`]]);
    assertOneLine(await cli(["-config", badLog, "-driver", driver]), 1, new RegExp(`^djinn-worker: ${badLog}:\\d+: log\\.file: cannot open "${notADir}/worker\\.log": a directory on its path is a file$`));
    const text = await fs.readFile(worker, "utf8");
    const badPid = path.join(dir, "pid.toml");
    await fs.writeFile(badPid, `pidfile = "${dir}/no/such/dir/worker.pid"\n${text}`);
    assertOneLine(await cli(["-config", badPid, "-driver", driver]), 1, /^djinn-worker: cannot write pidfile .*no\/such\/dir\/worker\.pid: /);
    const missing = await cli(["-config", path.join(dir, "nope.toml"), "-driver", driver]);
    assertOneLine(missing, 1, /nope\.toml: cannot read configuration: no such file$/);
    assertOneLine(await cli(["run", path.join(dir, "nope.yml")]), 2, /nope\.yml/);
  });

  test("permission denied, for a user who may not read the configuration or write the log", { skip: process.getuid?.() === 0 && which("runuser") ? false : "needs root and runuser to act as nobody" }, async () => {
    const open = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-compat-perm-"));
    temps.push(open);
    await fs.chmod(open, 0o755);
    const asNobody = (args: string[]) => spawnCollecting("runuser", ["-u", "nobody", "--", process.execPath, cliPath, ...args]);
    const secret = path.join(open, "worker.toml");
    await fs.copyFile(await config(await postgres.createDatabase()), secret);
    await fs.chmod(secret, 0o600);
    const driver = path.join(open, "driver.toml");
    await fs.writeFile(driver, "[os]\n");
    await fs.chmod(driver, 0o644);
    assertOneLine(await asNobody(["check", "-config", secret, "-driver", driver]), 1, new RegExp(`^djinn-worker: ${secret}: cannot read configuration: permission denied$`));
    await fs.chmod(secret, 0o644);
    const logDir = path.join(open, "log");
    await fs.mkdir(logDir, { mode: 0o755 });
    const text = (await fs.readFile(secret, "utf8")).replace(/^file = .*$/m, `file = "${logDir}/worker.log"`);
    await fs.writeFile(secret, text);
    assertOneLine(await asNobody(["-config", secret, "-driver", driver]), 1, /log\.file: cannot open .*worker\.log": permission denied$/);
  });

  test("check of Djinn's files passes where the servers answer", async () => {
    // A STARTTLS server with AUTH, trusted through smtp.ca, as Djinn's file configures it.
    const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", "smtp.key", "-out", "smtp.crt", "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:TRUE");
    const smtp = await startSmtpServer({
      key: await fs.readFile(path.join(dir, "smtp.key")),
      cert: await fs.readFile(path.join(dir, "smtp.crt")),
      authMethods: ["PLAIN", "LOGIN"],
      onAuth: (auth, _s, cb) => (auth.username === "postmaster@example.com" && auth.password === "s3cr3t-smtp" ? cb(null, { user: auth.username }) : cb(new Error("bad credentials"))),
    });
    const smtpPort = smtp.port;
    try {
      const name = await postgres.createDatabase();
      const worker = await config(name, [["smtp", "addr", `"127.0.0.1:${smtpPort}"\nca = "${dir}/smtp.crt"`]]);
      assert.equal((await cli(["migrate", "-config", worker])).code, 0);
      const disks = path.join(dir, "images", "qemu");
      await fs.mkdir(path.join(disks, "_base", "x86_64"), { recursive: true });
      let driverText = await fs.readFile(DJINN_DRIVER, "utf8");
      driverText = driverText.replace('disks  = "/var/lib/djinn/images/qemu"', `disks  = "${disks}"`);
      // Only what this machine has: no qemu binary means no [qemu] section to check.
      if (!which("qemu-system-x86_64")) driverText = driverText.slice(0, driverText.indexOf("[qemu]"));
      if (!(await fs.stat("/var/run/docker.sock").catch(() => undefined))) driverText = driverText.replace(/\[docker\][^[]*/, "");
      const driver = path.join(dir, "djinn-driver.toml");
      await fs.writeFile(driver, driverText);
      const r = await cli(["check", "-config", worker, "-driver", driver]);
      assert.doesNotMatch(r.stderr + r.stdout, STACK_LINE);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^ok {3}smtp: 127\.0\.0\.1:\d+ ok \(STARTTLS, AUTH as postmaster@example\.com\)$/m);
      assert.match(r.stdout, /^ok {3}postgresql: /m);
      assert.match(r.stdout, /^ok {3}redis: /m);
      // One warning per key only Djinn's server reads: crypto.salt, two limits, each provider's client_id and client_secret.
      assert.equal(r.stderr.split("\n").filter(Boolean).length, 7, r.stderr);
    } finally {
      await smtp.close();
    }
  });
});
