import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { ConfigError, driverSchema, hostQemuArch, loadDriverConfig, loadWorkerConfig, workerSchema } from "../internal/config/config.js";
import { servedDrivers } from "../internal/queue/names.js";
import type { SectionSpec } from "../internal/settings/spec.js";
import { formatDuration, parseDuration } from "../internal/timers/duration.js";
import { cliPath, repoRoot } from "./helpers/env.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-config-test-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
function file(text: string, name = `worker-${++n}.toml`): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
}

/** The sections the daemon cannot start without, each pointing at nothing that answers. */
const DAEMON_SECTIONS = {
  crypto: '[crypto]\nblock = "0123456789abcdef"\n',
  database: '[database]\naddr = "127.0.0.1:1"\nname = "djinn"\nusername = "w"\n',
  redis: '[redis]\naddr = "127.0.0.1:1"\n',
};

function workerError(text: string): ConfigError {
  const p = file(text);
  try {
    loadWorkerConfig(p);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err}`);
    assert.ok(err.message.startsWith(p), `error names the file: ${err.message}`);
    return err;
  }
  assert.fail("expected the configuration to be refused");
}

describe("Go durations", () => {
  test("parses the units and combinations Go accepts", () => {
    assert.equal(parseDuration("30m"), 30 * 60_000);
    assert.equal(parseDuration("1h30m"), 90 * 60_000);
    assert.equal(parseDuration("1.5h"), 90 * 60_000);
    assert.equal(parseDuration("300ms"), 300);
    assert.equal(parseDuration("2us"), 0.002);
    assert.equal(parseDuration("2µs"), 0.002);
    assert.equal(parseDuration("1000000ns"), 1);
    assert.equal(parseDuration("1m0.5s"), 60_500);
    assert.equal(parseDuration("0"), 0);
    assert.equal(formatDuration(90 * 60_000), "1h30m0s");
  });
  test("refuses what Go refuses", () => {
    for (const bad of ["30 minutes", "30", "1d", "", "m", "1h 30m", ".s"]) {
      assert.throws(() => parseDuration(bad), /duration/, bad);
    }
  });
});

describe("worker.toml", () => {
  test("the example file is valid and every key of Djinn's docs is read", () => {
    const cfg = loadWorkerConfig(path.join(repoRoot, "worker.toml.example"));
    assert.deepEqual(cfg.warnings, []);
    assert.equal(cfg.queue, "builds");
    assert.equal(cfg.timeoutMs, 30 * 60_000);
    assert.ok(cfg.parallelism >= 1, "parallelism 0 means the number of CPUs");
    assert.equal(cfg.crypto?.block.length, 32);
    assert.equal(cfg.artifacts?.limit, 5000000);
    assert.equal(cfg.database?.name, "djinn");
    assert.equal(cfg.redis?.addr, "localhost:6379");
    assert.equal(cfg.log.level, "info");
  });

  test("defaults: a nearly empty file is valid", () => {
    const cfg = loadWorkerConfig(file('driver = "os"\n'));
    assert.equal(cfg.queue, "builds");
    assert.equal(cfg.parallelism, os.availableParallelism());
    assert.equal(cfg.log.level, "info");
    assert.equal(cfg.smtp, undefined);
  });

  test("malformed TOML gives line and column", () => {
    const err = workerError('parallelism = 1\nqueue = = "x"\n');
    assert.equal(err.line, 2);
    assert.equal(err.column, 9);
    assert.match(err.message, /:2:9: syntax error/);
  });

  test("a wrong type names the key and line", () => {
    const err = workerError('queue = "builds"\nparallelism = "two"\n');
    assert.equal(err.message, `${err.file}:2: parallelism: expected an integer, got string "two"`);
  });

  test("a negative artifact limit is refused", () => {
    const err = workerError('[artifacts]\npath = "/tmp/a"\nlimit = -1\n');
    assert.match(err.message, /:3: artifacts\.limit: must be 0 or more, got -1/);
  });

  test("an unknown driver is refused with the valid names", () => {
    const err = workerError('driver = "lxc"\n');
    assert.match(err.message, /:1: driver: unknown driver "lxc": must be one of "docker", "qemu-/);
  });

  test("qemu for another arch names the right value", () => {
    const arch = hostQemuArch() === "arm" ? "x86_64" : "arm";
    const err = workerError(`driver = "qemu-${arch}"\n`);
    assert.match(err.message, new RegExp(`use "qemu-${hostQemuArch()}", not "qemu-${arch}"`));
    assert.equal(loadWorkerConfig(file(`driver = "qemu-${hostQemuArch()}"\n`)).driver, `qemu-${hostQemuArch()}`);
  });

  test("a crypto block must be 16, 24 or 32 characters", () => {
    const err = workerError('[crypto]\nblock = "0123456789"\n');
    assert.match(err.message, /:2: crypto\.block: must be 16, 24 or 32 characters long, got 10/);
    assert.ok(!err.message.includes("0123456789"), "the key itself is never printed");
  });

  test("a secret may come from <key>_file: read at start, one trailing newline dropped", () => {
    const block = file("0123456789abcdef\n", "block.secret");
    const password = file("pg pass\r\n", "pg.secret");
    const redis = file("redis-pass", "redis.secret");
    const smtp = file("smtp-pass\n\n", "smtp.secret");
    const cfg = loadWorkerConfig(
      file(`[crypto]\nblock_file = "${block}"\n[database]\naddr = "db:5432"\nname = "d"\nusername = "u"\npassword_file = "${password}"\n[redis]\naddr = "r:6379"\npassword_file = "${redis}"\n[smtp]\naddr = "m:25"\nadmin = "a@b"\npassword_file = "${smtp}"\n`),
    );
    assert.deepEqual(cfg.warnings, []);
    assert.equal(cfg.crypto?.block, "0123456789abcdef");
    assert.equal(cfg.database?.password, "pg pass");
    assert.equal(cfg.redis?.password, "redis-pass");
    assert.equal(cfg.smtp?.password, "smtp-pass\n", "only one newline is dropped");
  });

  test("an unreadable secret file is one line naming key and path", () => {
    const missing = path.join(dir, "no-such.secret");
    const err = workerError(`[crypto]\nblock_file = "${missing}"\n`);
    assert.equal(err.message, `${err.file}:2: crypto.block_file: cannot read "${missing}": no such file`);
    assert.match(workerError(`[crypto]\nblock_file = "${dir}"\n`).message, /:2: crypto\.block_file: cannot read ".*": is a directory$/);
    assert.match(workerError(`[redis]\naddr = "r:1"\npassword_file = 3\n`).message, /:3: redis\.password_file: expected the path of a file holding the secret, got integer 3$/);
  });

  test("smtp.addr and metrics.addr are checked when the file is read, naming file, key and line", () => {
    let err = workerError(`[smtp]\naddr = "mail.example"\nadmin = "a@b"\n`);
    assert.equal(err.message, `${err.file}:2: smtp.addr: must be host:port, e.g. "127.0.0.1:25", got "mail.example"`);
    err = workerError(`[metrics]\naddr = "127.0.0.1:99999"\n`);
    assert.equal(err.message, `${err.file}:2: metrics.addr: must be host:port or :port with a port of 0-65535, e.g. "127.0.0.1:9110", got "127.0.0.1:99999"`);
    const ok = loadWorkerConfig(file(`[smtp]\naddr = "[::1]:25"\nadmin = "a@b"\n[metrics]\naddr = ":0"\n`, "addrs-ok.toml"));
    assert.equal(ok.smtp?.addr, "[::1]:25");
    assert.equal(ok.metrics?.addr, ":0");
  });

  test("a secret written with the wrong type is refused without repeating its value", () => {
    for (const [text, key, line] of [
      [`[redis]\naddr = "r:1"\npassword = 98765432\n`, "redis.password", 3],
      [`[database]\naddr = "d:1"\nname = "d"\nusername = "u"\npassword = 98765432.5\n`, "database.password", 5],
      [`[crypto]\nblock = [98765432]\n`, "crypto.block", 2],
    ] as const) {
      const err = workerError(text);
      assert.match(err.message, new RegExp(`:${line}: ${key.replace(".", "\\.")}: expected a string, got \\w+$`));
      assert.doesNotMatch(err.message, /98765432/);
    }
  });

  test("a secret given both inline and as a file is refused", () => {
    const block = file("0123456789abcdef", "block2.secret");
    const err = workerError(`[crypto]\nblock = "0123456789abcdef"\nblock_file = "${block}"\n`);
    assert.equal(err.message, `${err.file}:3: crypto.block_file: crypto.block is set too: give the secret one way only`);
  });

  test("a secret read from a file is checked like an inline one, without printing it", () => {
    const block = file("0123456789\n", "short.secret");
    const err = workerError(`[crypto]\nblock_file = "${block}"\n`);
    assert.match(err.message, /:2: crypto\.block_file: must be 16, 24 or 32 characters long, got 10$/);
  });

  test("only secret keys take _file", () => {
    const cfg = loadWorkerConfig(file('[database]\naddr = "db:5432"\nname = "d"\nusername = "u"\naddr_file = "/x"\n'));
    assert.match(cfg.warnings[0], /unknown key "database\.addr_file"/);
  });

  test("a timeout that is not a Go duration is refused", () => {
    const err = workerError('timeout = "30 minutes"\n');
    assert.match(err.message, /:1: timeout: invalid duration "30 minutes"/);
  });

  test("a lease under a second is refused with its line", () => {
    const err = workerError('queue = "q"\nlease = "500ms"\n');
    assert.equal(err.message, `${err.file}:2: lease: must be at least 1s, got "500ms"`);
  });

  test("a duration longer than a timer holds is refused with file, key and line, not fired at once", () => {
    for (const [key, value] of [["timeout", "720h"], ["lease", "1800h"], ["shutdown_timeout", "1000h"]]) {
      const err = workerError(`queue = "q"\n${key} = "${value}"\n`);
      assert.equal(err.message, `${err.file}:2: ${key}: must be at most 596h31m23.647s (the longest a timer can wait), got "${value}"`);
    }
    // The longest a timer holds is accepted.
    assert.equal(loadWorkerConfig(file('timeout = "596h31m23.647s"\n')).timeoutMs, 2 ** 31 - 1);
    const drivers = file('[docker]\npull_timeout = "597h"\n', "drivers-long.toml");
    assert.throws(() => loadDriverConfig(drivers), (err: Error) => err.message === `${drivers}:2: docker.pull_timeout: must be at most 596h31m23.647s (the longest a timer can wait), got "597h"`);
    const seconds = file("[ssh]\ntimeout = 2200000\n", "drivers-long-seconds.toml");
    assert.throws(() => loadDriverConfig(seconds), (err: Error) => err.message === `${seconds}:2: ssh.timeout: must be at most 596h31m23.647s (the longest a timer can wait), got 2200000`);
  });

  test("manifest_limit is read, defaults to 1 MiB and must be positive", () => {
    assert.equal(loadWorkerConfig(file("")).manifestLimit, 1024 * 1024);
    assert.equal(loadWorkerConfig(file("manifest_limit = 4096\n")).manifestLimit, 4096);
    assert.match(workerError("manifest_limit = 0\n").message, /:1: manifest_limit: must be 1 or more, got 0$/);
  });

  test("a missing file is named", () => {
    const p = path.join(dir, "nope.toml");
    assert.throws(() => loadWorkerConfig(p), (err: Error) => err.message === `${p}: cannot read configuration: no such file`);
  });

  test("a required key in a present section is named", () => {
    const err = workerError('[database]\naddr = "localhost:5432"\nname = "djinn"\n');
    assert.match(err.message, /:1: database\.username: required in \[database\] but missing/);
  });

  test("a log level outside debug, info, warn, error is refused", () => {
    assert.match(workerError('[log]\nlevel = "trace"\n').message, /log\.level: must be one of "debug", "info", "warn", "error", got "trace"/);
  });

  test("unknown keys warn with a suggestion", () => {
    const cfg = loadWorkerConfig(file('paralellism = 2\n[artifacts]\npath = "/x"\nlimt = 3\n'));
    assert.equal(cfg.warnings.length, 2);
    assert.match(cfg.warnings[0], /:1: unknown key "paralellism" — did you mean "parallelism"\?$/);
    assert.match(cfg.warnings[1], /:4: unknown key "artifacts\.limt" — did you mean "artifacts\.limit"\?$/);
  });

  test("an unknown section is refused, with a suggestion when one is close: its keys would be lost", () => {
    assert.match(workerError('parallelism = 2\n[bogus]\nx = 1\n').message, /:2: unknown section \[bogus\]$/);
    assert.match(workerError('[databse]\naddr = "127.0.0.1:5432"\n').message, /:1: unknown section \[databse\] — did you mean "database"\?$/);
    assert.match(workerError('[database.sls]\nca = "x"\n').message, /:1: unknown section \[database\.sls\] — did you mean "database\.ssl"\?$/);
    assert.match(workerError("bogus = { x = 1 }\n").message, /:1: unknown section \[bogus\]$/);
  });

  test("a server address without a port is refused: it would only show as a refused connection", () => {
    for (const section of ["redis", "database", "smtp"]) {
      const err = workerError(`[${section}]\naddr = "127.0.0.1"\n`);
      assert.match(err.message, new RegExp(`:2: ${section}\\.addr: must be host:port, e\\.g\\. "127\\.0\\.0\\.1:\\d+", got "127\\.0\\.0\\.1"$`));
    }
    const ok = loadWorkerConfig(file('[redis]\naddr = "[::1]:6379"\n'));
    assert.equal(ok.redis?.addr, "[::1]:6379");
  });
});

describe("driver.toml", () => {
  test("the example file is valid", () => {
    const cfg = loadDriverConfig(path.join(repoRoot, "driver.toml.example"));
    assert.deepEqual(cfg.warnings, []);
    assert.equal(cfg.docker?.host, "unix:///var/run/docker.sock");
    assert.equal(cfg.qemu?.memory, 2048);
    assert.equal(cfg.qemu?.accel, "auto");
    assert.equal(cfg.ssh?.user, "root");
    assert.ok(cfg.os);
  });

  test("a driver is available only when its section is present", () => {
    const drivers = loadDriverConfig(file("[docker]\n", "drivers-a.toml"));
    const worker = loadWorkerConfig(file('driver = "*"\n'));
    assert.deepEqual(servedDrivers(worker, drivers), ["docker"]);
    const osWorker = loadWorkerConfig(file('driver = "os"\n'));
    assert.throws(() => servedDrivers(osWorker, drivers), /worker-\d+\.toml:1: driver: driver "os" is not configured: add a \[os\] section/);
  });

  test("bad values name file, key and line", () => {
    const p = file('[qemu]\ncpus = 2\naccel = "fast"\n', "drivers-b.toml");
    assert.throws(() => loadDriverConfig(p), (err: Error) => err.message === `${p}:3: qemu.accel: must be one of "auto", "kvm", "tcg", got "fast"`);
  });

  test("docker.version is an API version (1.NN); anything else, a path that would send requests elsewhere above all, names file, key and line", () => {
    assert.equal(loadDriverConfig(file('[docker]\nversion = "1.41"\n', "drivers-v1.toml")).docker?.version, "1.41");
    for (const bad of ["../../127.0.0.1:18777/steal", "v1.41", "1.41/x", "2.0", "1.", "1.41 "]) {
      const p = file(`[docker]\npull = "never"\nversion = ${JSON.stringify(bad)}\n`, "drivers-v2.toml");
      assert.throws(() => loadDriverConfig(p), (err: Error) => err instanceof ConfigError && err.message === `${p}:3: docker.version: must be a Docker API version such as "1.41", got ${JSON.stringify(bad)}`, bad);
    }
  });

  test("docker cpus below the engine's floor are refused (they would reach it as no limit); pids defaults to a limit", () => {
    for (const key of ["cpus", "max_cpus"]) {
      const p = file(`[docker]\n${key} = 0.0000000001\n`, "drivers-c1.toml");
      assert.throws(() => loadDriverConfig(p), (err: Error) => err instanceof ConfigError && err.message === `${p}:2: docker.${key}: must be 0 (no limit) or at least 0.01 CPUs, got 1e-10`, key);
    }
    const cfg = loadDriverConfig(file("[docker]\ncpus = 0\nmax_cpus = 0.01\nmax_pids = 4096\n", "drivers-c2.toml")).docker!;
    assert.deepEqual([cfg.cpus, cfg.max_cpus, cfg.pids, cfg.max_pids], [0, 0.01, 1024, 4096]);
    const p = file("[docker]\npids = 0\n", "drivers-c3.toml");
    assert.throws(() => loadDriverConfig(p), (err: Error) => err.message === `${p}:2: docker.pids: must be 1 or more, got 0`);
  });
});

describe("check refuses what the daemon refuses, with the daemon's line", () => {
  const { crypto, database, redis } = DAEMON_SECTIONS;
  const osDrivers = () => file("[os]\n", `drivers-${++n}.toml`);
  /** Each mistake: the files, and the one line both commands give (file names filled in). */
  const mistakes: { what: string; worker: string; drivers?: string; line: (worker: string, drivers: string) => string }[] = [
    { what: "a misspelt [database]", worker: `${crypto}${redis}[databse]\naddr = "127.0.0.1:1"\nname = "djinn"\nusername = "w"\n`, line: (w) => `${w}:5: unknown section [databse] — did you mean "database"?` },
    { what: "a misspelt [docker]", worker: `driver = "*"\n${crypto}${database}${redis}`, drivers: '[dockre]\nhost = "unix:///var/run/docker.sock"\n', line: (_, d) => `${d}:1: unknown section [dockre] — did you mean "docker"?` },
    { what: "no [crypto]", worker: `${database}${redis}`, line: (w) => `${w}: [crypto] section is required` },
    { what: "no [database]", worker: `${crypto}${redis}`, line: (w) => `${w}: [database] section is required` },
    { what: "no [redis]", worker: `${crypto}${database}`, line: (w) => `${w}: [redis] section is required` },
    { what: "redis.addr without a port", worker: `${crypto}${database}[redis]\naddr = "127.0.0.1"\n`, line: (w) => `${w}:8: redis.addr: must be host:port, e.g. "127.0.0.1:6379", got "127.0.0.1"` },
    { what: "database.addr without a port", worker: `${crypto}${redis}[database]\naddr = "localhost"\nname = "djinn"\nusername = "w"\n`, line: (w) => `${w}:6: database.addr: must be host:port, e.g. "127.0.0.1:5432", got "localhost"` },
    { what: "smtp.addr without a port", worker: `${crypto}${database}${redis}[smtp]\naddr = "mail.example"\nadmin = "a@b"\n`, line: (w) => `${w}:10: smtp.addr: must be host:port, e.g. "127.0.0.1:25", got "mail.example"` },
    { what: "a driver driver.toml lacks", worker: `driver = "docker"\n${crypto}${database}${redis}`, line: (w, d) => `${w}:1: driver: driver "docker" is not configured: add a [docker] section to ${d}` },
  ];
  for (const mistake of mistakes) {
    test(`${mistake.what}: check and the daemon exit 1 with the same line`, () => {
      const worker = file(mistake.worker);
      const drivers = mistake.drivers === undefined ? osDrivers() : file(mistake.drivers, `drivers-${++n}.toml`);
      const want = `djinn-worker: ${mistake.line(worker, drivers)}\n`;
      for (const args of [["check", "-config", worker, "-driver", drivers], ["-config", worker, "-driver", drivers]]) {
        // A daemon that took the files would wait for servers that never answer: the time limit ends it.
        const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: "utf8", timeout: 60_000 });
        assert.deepEqual({ status: r.status, stderr: r.stderr, stdout: r.stdout }, { status: 1, stderr: want, stdout: "" }, args.join(" "));
      }
    });
  }
});

describe("djinn-worker check", () => {
  test("prints the effective configuration with secrets hidden, and fails on an unreachable server", () => {
    const worker = file('driver = "os"\n[database]\naddr = "127.0.0.1:1"\nname = "djinn"\nusername = "w"\npassword = "pg-pass-Zq9"\n[crypto]\nblock = "0123456789abcdef"\n[redis]\naddr = "127.0.0.1:1"\n');
    const drivers = file("[os]\n", "drivers-c.toml");
    const r = spawnSync(process.execPath, [cliPath, "check", "-config", worker, "-driver", drivers], { encoding: "utf8" });
    assert.match(r.stdout, /database\.password = \*\*\*/);
    assert.match(r.stdout, /crypto\.block = \*\*\*/);
    assert.match(r.stdout, /timeout = 30m0s/);
    assert.match(r.stdout, /\[os\] \(configured\)/);
    assert.match(r.stdout, /queues: builds_os/);
    assert.match(r.stdout, /FAIL postgresql: cannot connect to PostgreSQL at 127\.0\.0\.1:1/);
    assert.equal(r.status, 1);
    assert.ok(!(r.stdout + r.stderr).includes("pg-pass-Zq9") && !(r.stdout + r.stderr).includes("0123456789abcdef"));
  });

  test("shows secrets read from files as ***", () => {
    const secret = file("pg-file-pass-Kx7\n", "check.secret");
    const worker = file(`driver = "os"\n[redis]\naddr = "127.0.0.1:1"\npassword_file = "${secret}"\n${DAEMON_SECTIONS.crypto}${DAEMON_SECTIONS.database}`);
    const r = spawnSync(process.execPath, [cliPath, "check", "-config", worker, "-driver", file("[os]\n", "drivers-e.toml")], { encoding: "utf8" });
    assert.match(r.stdout, /redis\.password = \*\*\*/);
    assert.ok(!(r.stdout + r.stderr).includes("pg-file-pass-Kx7"));
  });

  test("a bad file exits 1 with one line naming file, key and line, and starts nothing", () => {
    const worker = file('parallelism = "two"\n');
    const r = spawnSync(process.execPath, [cliPath, "check", "--config", worker, "-driver=" + file("[os]\n", "drivers-d.toml")], { encoding: "utf8" });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `djinn-worker: ${worker}:1: parallelism: expected an integer, got string "two"\n`);
    assert.equal(r.stdout, "");
  });

  test("-version prints name, version and platform", () => {
    const r = spawnSync(process.execPath, [cliPath, "-version"], { encoding: "utf8" });
    assert.equal(r.status, 0);
    assert.match(r.stdout.trim(), /^djinn-worker \d+\.\d+\.\d+ linux\/(amd64|arm64)$/);
  });
});

describe("documentation", () => {
  function keys(spec: SectionSpec, prefix = ""): string[] {
    const own = Object.entries(spec.keys).filter(([, k]) => k.kind !== "ignored").map(([k]) => prefix + k);
    const nested = Object.entries({ ...spec.sections, ...spec.tables }).flatMap(([name, sub]) => keys(sub, `${prefix}${name}.`));
    return [...own, ...nested];
  }
  const readme = fs.readFileSync(path.join(repoRoot, "README.md"), "utf8");

  test("README and the example files explain every key the worker reads", () => {
    const workerExample = fs.readFileSync(path.join(repoRoot, "worker.toml.example"), "utf8");
    const driverExample = fs.readFileSync(path.join(repoRoot, "driver.toml.example"), "utf8");
    for (const key of keys(workerSchema)) {
      const leaf = key.split(".").pop()!;
      assert.ok(readme.includes(`\`${key}\``) || readme.includes(`.${leaf}\``), `README documents ${key}`);
      assert.match(workerExample, new RegExp(`^#? ?${leaf} +=`, "m"), `worker.toml.example shows ${key}`);
    }
    for (const key of keys(driverSchema)) {
      const leaf = key.split(".").pop()!;
      assert.ok(readme.includes(`\`${key}\``) || readme.includes(`\`${key.split(".")[0]}.${leaf}\``) || readme.includes(`, \`${key}\``), `README documents ${key}`);
      assert.match(driverExample, new RegExp(`^#? ?${leaf} +=`, "m"), `driver.toml.example shows ${key}`);
    }
  });

  test("README and worker.toml.example say what each of Djinn's keys that does nothing here is", () => {
    const workerExample = fs.readFileSync(path.join(repoRoot, "worker.toml.example"), "utf8");
    const ignored = (spec: SectionSpec, prefix = ""): string[] => [
      ...Object.entries(spec.keys).filter(([, k]) => k.kind === "ignored").map(([k]) => prefix + k),
      ...Object.entries({ ...spec.sections, ...spec.tables }).flatMap(([name, sub]) => ignored(sub, `${prefix}${name}.`)),
    ];
    const keys = ignored(workerSchema);
    assert.deepEqual(keys.sort(), ["crypto.salt", "images.limit", "objects.limit", "providers.client_id", "providers.client_secret"]);
    for (const key of keys) {
      const shown = key;
      assert.ok(readme.includes(`\`${shown}\``), `README explains ${shown}`);
      assert.ok(workerExample.includes(shown) || workerExample.includes(`${key.split(".")[0]}]`) && new RegExp(`^# ?${key.split(".").pop()} +=`, "m").test(workerExample), `worker.toml.example mentions ${shown}`);
    }
  });
});
