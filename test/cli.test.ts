// The command line itself: help that wraps at word boundaries, and mistakes answered in one line.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { commandWord, goStyleFlags } from "../internal/cli/args.js";
import { COMMANDS, LONG_FLAGS, plainDaemonLine, plainRunLine, runOptions, VALUE_FLAGS, type RunArgs } from "../internal/cli/commands.js";
import { onceEach } from "../internal/cli/program.js";
import yargs from "../internal/cli/yargs.cjs";
import { freeLocalPort } from "../internal/net/port.js";
import { BUNDLE, BUNDLE_CACHE, compileBundle } from "../internal/release/bundled.js";
import { cliPath } from "./helpers/env.js";
import { runCli } from "./helpers/services.js";

function cli(args: string[], columns = 100) {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: "utf8", env: { ...process.env, COLUMNS: String(columns) } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every word of `text`, punctuation kept: a word cut in two shows up as two words not in the widest text. */
const words = (text: string) => new Set(text.split(/\s+/).filter(Boolean));

describe("the build's command", () => {
  const build = path.resolve(path.dirname(cliPath), "..");

  test("runs the bundle npm run build made, whose code cache V8 takes", () => {
    const file = path.join(build, BUNDLE);
    const script = compileBundle(file, fs.readFileSync(file, "utf8"), fs.readFileSync(path.join(build, BUNDLE_CACHE)));
    assert.equal(script.cachedDataRejected, false, "V8 refused the cache: it was made from other text than the launcher compiles");
    const r = cli(["-version"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^djinn-worker \d+\.\d+\.\d+ linux\/\w+\n$/);
  });

  test("with a cache V8 refuses or none it runs the same; without its bundle one line, unless DJINN_DEBUG runs the modules", () => {
    // A build of its own: the launcher and the program's entry copied, the modules linked, the bundle copied.
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-launch-test-"));
    try {
      fs.mkdirSync(path.join(copy, "cmd"));
      for (const f of ["djinn-worker.js", "main.js"]) fs.copyFileSync(path.join(build, "cmd", f), path.join(copy, "cmd", f));
      fs.symlinkSync(path.join(build, "internal"), path.join(copy, "internal"));
      fs.mkdirSync(path.join(copy, "bundle"));
      fs.copyFileSync(path.join(build, BUNDLE), path.join(copy, BUNDLE));
      const launch = (env: NodeJS.ProcessEnv = {}) => spawnSync(process.execPath, [path.join(copy, "cmd", "djinn-worker.js"), "-version"], { encoding: "utf8", env: { ...process.env, DJINN_DEBUG: "", ...env } });
      const version = cli(["-version"]).stdout;
      for (const cache of ["not a code cache", undefined]) {
        if (cache === undefined) fs.rmSync(path.join(copy, BUNDLE_CACHE), { force: true });
        else fs.writeFileSync(path.join(copy, BUNDLE_CACHE), cache);
        const r = launch();
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout, version);
      }
      fs.rmSync(path.join(copy, BUNDLE));
      const r = launch();
      assert.equal(r.status, 1);
      assert.equal(r.stdout, "");
      assert.equal(r.stderr, `djinn-worker: cannot read ${path.join(copy, BUNDLE)}: no such file (run \`npm run build\`)\n`);
      const debug = launch({ DJINN_DEBUG: "1" });
      assert.equal(debug.status, 0, debug.stderr);
      assert.equal(debug.stdout, version);
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });
});

describe("the daemon's own command line", () => {
  test("-config and -driver once each, with values, start the daemon without the parser; anything else is the parser's", () => {
    const line = (...args: string[]) => plainDaemonLine(goStyleFlags(args, LONG_FLAGS));
    assert.deepEqual(line("-config", "/etc/w.toml", "-driver", "/etc/d.toml"), { config: "/etc/w.toml", driver: "/etc/d.toml" });
    assert.deepEqual(line("--driver=/d.toml", "--config=/w.toml"), { config: "/w.toml", driver: "/d.toml" });
    assert.equal(line("-config", "/w.toml")?.config, "/w.toml");
    for (const args of [["-config", "a", "-config", "b"], ["-config"], ["-config", "-driver"], ["--help"], ["-version"], ["run", "m.yml"], ["-config", "a", "status"], ["--config="]]) {
      assert.equal(line(...args), undefined, args.join(" "));
    }
  });
});

/** What yargs, declared as the program declares `run`, makes of `args`: `run`'s arguments, or its complaint. */
function yargsRun(args: string[]): RunArgs | string {
  let got: RunArgs | string = "no handler ran";
  yargs(args)
    .command("run <manifest>", "", runOptions, (a) => {
      got = { manifest: a.manifest, driver: a.driver, artifacts: a.artifacts, objects: a.objects, cache: a.cache, env: a.env.map(String), secret: a.secret.map(String), timeout: a.timeout };
    })
    .strict()
    .check(onceEach)
    .exitProcess(false)
    .fail((msg, err) => {
      got = msg ?? String(err);
    })
    .parse();
  return got;
}

describe("run's own command line", () => {
  test("a plain `run` line starts without the parser and means what the parser makes of it; anything else is the parser's", () => {
    const line = (...args: string[]) => goStyleFlags(args, LONG_FLAGS);
    const plain = [
      line("run", "m.yml"),
      line("run", "ci/build.yml", "-artifacts", "out", "-objects=objs", "-driver", "d.toml", "-timeout", "1h30m", "-cache", "c"),
      line("run", "m.yml", "--env", "A=1", "--secret=S", "--env=B=x=y", "-env", "C= spaced value ", "--secret", "T=2"),
      line("run", "m.yml", "--timeout=30s", "--artifacts", "a b"),
      // Words a parser might take for booleans, numbers or null stay strings, as yargs keeps them.
      line("run", "true", "--artifacts", "0x10", "--objects", "null", "--env", "true", "--env=A=1\nB"),
    ];
    for (const args of plain) {
      const fast = plainRunLine(args);
      assert.ok(fast, `${args.join(" ")} is plain`);
      assert.deepEqual(fast, yargsRun(args), args.join(" "));
    }
    // The parser's: help, mistakes (it words them), and spellings it reads its own way.
    const others = [
      ["run"],
      ["run", "--help"],
      ["run", "m.yml", "-h"],
      ["run", "m.yml", "--artifacts", "a", "--artifacts", "b"],
      ["run", "m.yml", "extra.yml"],
      ["run", "m.yml", "--artifacts"],
      ["run", "m.yml", "--artifacts="],
      ["run", "m.yml", "--artifacts", "-x"],
      ["run", "m.yml", "--env", "A=1", "B=2"],
      ["run", "m.yml", "--unknown", "x"],
      ["run", "m.yml", "--config", "w.toml"],
      ["run", "m.yml", "--no-cache"],
      ["run", "m.yml", "--", "x"],
      ["run", "--artifacts", "a", "m.yml"],
      ["run", "0x10"],
      ["run", "-"],
      ["--config", "w.toml", "run", "m.yml"],
      ["status", "1"],
    ];
    for (const args of others) assert.equal(plainRunLine(args), undefined, args.join(" "));
  });
});

describe("djinn-worker command line", () => {
  test("help wraps at word boundaries at any width", () => {
    for (const args of [["--help"], ["run", "--help"], ["submit", "--help"], ["check", "--help"], ["logs", "--help"]]) {
      const wide = words(cli(args, 110).stdout);
      for (const columns of [48, 57, 64, 71, 80, 89, 97, 104]) {
        const r = cli(args, columns);
        assert.equal(r.status, 0);
        const cut = [...words(r.stdout)].filter((w) => !wide.has(w));
        assert.deepEqual(cut, [], `${args.join(" ")} at ${columns} columns cuts words: ${cut.join(", ")}\n${r.stdout}`);
        for (const line of r.stdout.split("\n")) assert.ok(line.length <= columns, `${args.join(" ")}: line longer than ${columns}: ${line}`);
      }
    }
  });

  test("a mistyped command gets a suggestion, an unknown one the list, in one line, exit 2", () => {
    const typo = cli(["sumbit", "x.yml"]);
    assert.equal(typo.status, 2);
    assert.equal(typo.stderr, 'djinn-worker: unknown command "sumbit" — did you mean "submit"? (djinn-worker --help describes them)\n');
    assert.equal(typo.stdout, "");
    const flagsFirst = cli(["-config", "worker.toml", "stauts", "3"]);
    assert.equal(flagsFirst.status, 2);
    assert.match(flagsFirst.stderr, /unknown command "stauts" — did you mean "status"\?/);
    const unknown = cli(["frobnicate"]);
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /^djinn-worker: unknown command "frobnicate": the commands are migrate, submit, status, logs, kill, run, check/);
    assert.equal(unknown.stderr.split("\n").length, 2, "one line");
  });

  test("without -config, operator commands read djinn-worker.toml here, else /etc/djinn/worker.toml", () => {
    const here = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-cli-defaults-"));
    const inDir = (args: string[]) => spawnSync(process.execPath, [cliPath, ...args], { encoding: "utf8", cwd: here });
    try {
      fs.writeFileSync(path.join(here, "djinn-worker.toml"), "parallelism = \"two\"\n");
      const local = inDir(["status", "1"]);
      assert.equal(local.status, 1);
      assert.equal(local.stderr, 'djinn-worker: djinn-worker.toml:1: parallelism: expected an integer, got string "two"\n');
      fs.rmSync(path.join(here, "djinn-worker.toml"));
      // The installed file, when there is one and no installation is in the way.
      if (fs.existsSync("/etc/djinn/worker.toml") || process.getuid?.() !== 0) {
        assert.match(inDir(["status", "1"]).stderr, /^djinn-worker: (\/etc\/djinn\/worker\.toml|djinn-worker\.toml)/);
        return;
      }
      const made = !fs.existsSync("/etc/djinn");
      fs.mkdirSync("/etc/djinn", { recursive: true });
      fs.writeFileSync("/etc/djinn/worker.toml", "queue = 7\n");
      try {
        assert.equal(inDir(["check"]).stderr, "djinn-worker: /etc/djinn/worker.toml:1: queue: expected a string, got integer 7\n");
      } finally {
        fs.rmSync("/etc/djinn/worker.toml");
        if (made) fs.rmdirSync("/etc/djinn");
      }
      assert.equal(inDir(["status", "1"]).stderr, "djinn-worker: djinn-worker.toml: cannot read configuration: no such file\n");
    } finally {
      fs.rmSync(here, { recursive: true, force: true });
    }
  });

  test("a single-value flag given twice is refused in one line, exit 2; repeatable ones add up", () => {
    const twice = cli(["run", "examples/hello.yml", "--artifacts", "a", "--artifacts", "b"]);
    assert.equal(twice.status, 2);
    assert.equal(twice.stderr, "djinn-worker: -artifacts is given 2 times: give it once\n");
    const goStyle = cli(["status", "1", "-config", "a.toml", "-config=b.toml"]);
    assert.equal(goStyle.status, 2);
    assert.equal(goStyle.stderr, "djinn-worker: -config is given 2 times: give it once\n");
    // Two --env are two variables: the run gets past the flags to the missing manifest.
    const env = cli(["run", "no-such-manifest.yml", "--env", "A=1", "--env", "B=2"]);
    assert.equal(env.status, 2);
    assert.match(env.stderr, /no-such-manifest\.yml/);
  });

  test("a command without its manifest or id says what is missing in one line, exit 2", () => {
    const run = cli(["run"]);
    assert.equal(run.status, 2);
    assert.equal(run.stderr, "djinn-worker: run needs <manifest>, the build manifest file (YAML): djinn-worker run <manifest> [options]\n");
    const status = cli(["status"]);
    assert.equal(status.status, 2);
    assert.match(status.stderr, /^djinn-worker: status needs <id>, a build id/);
    assert.doesNotMatch(run.stderr + status.stderr, /non-option arguments/);
  });

  test("Go-style flags: -flag VALUE and -flag=VALUE are --flag, other single-dash words are left alone", () => {
    assert.deepEqual(goStyleFlags(["-config", "w.toml", "-driver=d.toml", "-f", "-x", "--env", "A=1", "-"], LONG_FLAGS), ["--config", "w.toml", "--driver=d.toml", "-f", "-x", "--env", "A=1", "-"]);
    assert.equal(commandWord(["--config", "w.toml", "--follow", "logs", "3"], VALUE_FLAGS), "logs");
    const missing = path.join(os.tmpdir(), `djinn-no-such-dir-${process.pid}-${Date.now()}`, "w.toml");
    for (const args of [["-config=" + missing], ["-config", missing], ["status", "1", "-config=" + missing]]) {
      const r = cli(args);
      assert.equal(r.status, 1, args.join(" "));
      assert.equal(r.stderr, `djinn-worker: ${missing}: cannot read configuration: no such file\n`);
    }
  });

  test("every flag a command's help lists can be typed Go-style, and the command word is found after its value", () => {
    for (const command of [[], ...COMMANDS.map((c) => [c.name])]) {
      const help = cli([...command, "--help"]).stdout;
      const flags = [...help.matchAll(/^\s+(?:-\w, )?--(\w[\w-]*)\s+(.*(?:\n\s{10,}.*)*)/gm)];
      assert.ok(flags.length >= 2, `the help of ${command[0] ?? "the daemon"} lists its flags:\n${help}`);
      for (const [, name, rest] of flags) {
        const where = `${command[0] ?? "daemon"} --${name}`;
        assert.ok(LONG_FLAGS.has(name), `${where} is missing from LONG_FLAGS`);
        assert.deepEqual(goStyleFlags([`-${name}`], LONG_FLAGS), [`--${name}`], where);
        if (/\[(string|array)\]/.test(rest)) assert.ok(VALUE_FLAGS.has(name), `${where} takes a value: missing from VALUE_FLAGS`);
        else assert.ok(!VALUE_FLAGS.has(name), `${where} takes no value: it must not be in VALUE_FLAGS`);
      }
    }
  });

  test("`help [command]` is `[command] --help`", () => {
    const r = cli(["help", "run"]);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^djinn-worker run <manifest>/);
    assert.match(r.stdout, /--artifacts/);
  });
});

test("the daemon with a log file it cannot open says so in one line, exit 1", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-cli-test-"));
  try {
    const plain = path.join(dir, "plain-file");
    fs.writeFileSync(plain, "");
    const worker = path.join(dir, "worker.toml");
    // Unreachable servers: the log file is opened before any connection.
    fs.writeFileSync(worker, `[crypto]\nblock = "0123456789abcdef"\n[database]\naddr = "127.0.0.1:9"\nname = "x"\nusername = "x"\n[redis]\naddr = "127.0.0.1:9"\n[log]\nfile = "${plain}/worker.log"\n`);
    const driver = path.join(dir, "driver.toml");
    fs.writeFileSync(driver, "[os]\n");
    const r = cli(["-config", worker, "-driver", driver]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `djinn-worker: ${worker}:10: log.file: cannot open "${plain}/worker.log": a directory on its path is a file\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("check warns about an absurd parallelism, naming file and line; a sensible one passes quietly", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-cli-test-"));
  try {
    const driver = path.join(dir, "driver.toml");
    fs.writeFileSync(driver, "[os]\n");
    const worker = path.join(dir, "worker.toml");
    // The sections the daemon needs, on servers that do not answer: check fails on them alone, on stdout.
    const sections = `[crypto]\nblock = "0123456789abcdef"\n[database]\naddr = "127.0.0.1:1"\nname = "djinn"\nusername = "w"\n[redis]\naddr = "127.0.0.1:1"\n`;
    fs.writeFileSync(worker, `queue = "builds"\nparallelism = 100000\n${sections}`);
    const r = cli(["check", "-config", worker, "-driver", driver]);
    assert.equal(r.status, 1, r.stderr);
    assert.deepEqual(r.stdout.split("\n").filter((l) => l.startsWith("FAIL")).map((l) => l.split(":")[0]), ["FAIL postgresql", "FAIL redis"]);
    const most = Math.max(16, 4 * os.availableParallelism());
    assert.equal(
      r.stderr,
      `warning: ${worker}:2: parallelism = 100000 is more than ${most} (4 builds per CPU, this machine has ${os.availableParallelism()}): builds would compete for CPU and memory, and the worker would ask PostgreSQL for up to 200002 connections\n`,
    );
    fs.writeFileSync(worker, `parallelism = ${most}\n${sections}`);
    assert.equal(cli(["check", "-config", worker, "-driver", driver]).stderr, "");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});


test("check validates [web]: what djinn-worker web refuses, and whether its port is free, each a line", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-cli-test-"));
  // Another program on a port: it answers HTTP, but not as a djinn-worker.
  const other = http.createServer((_req, res) => res.end("hello\n"));
  await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
  try {
    const driver = path.join(dir, "driver.toml");
    fs.writeFileSync(driver, "[os]\n");
    const worker = path.join(dir, "worker.toml");
    const sections = `[crypto]\nblock = "0123456789abcdef"\n[database]\naddr = "127.0.0.1:1"\nname = "djinn"\nusername = "w"\n[redis]\naddr = "127.0.0.1:1"\n`;
    const webLines = async (web: string) => {
      fs.writeFileSync(worker, `${sections}[web]\n${web}`);
      const r = await runCli(["check", "-config", worker, "-driver", driver]);
      return r.stdout.split("\n").filter((l) => /^(ok  |FAIL) web:/.test(l));
    };
    const free = await freeLocalPort();
    assert.deepEqual(await webLines(`addr = "127.0.0.1:${free}"\n`), [`ok   web: 127.0.0.1:${free} is free to listen on`]);
    const taken = (other.address() as AddressInfo).port;
    assert.deepEqual(await webLines(`addr = "127.0.0.1:${taken}"\n`), [`FAIL web: cannot listen on 127.0.0.1:${taken}: address already in use`]);
    // A [web] key the web process refuses: check refuses it with the same line, word for word.
    fs.writeFileSync(worker, `${sections}[web]\naddr = "127.0.0.1:${free}"\nsession = "1s"\n`);
    const checked = await runCli(["check", "-config", worker, "-driver", driver]);
    const web = await runCli(["web", "-config", worker]);
    assert.equal(web.code, 1);
    assert.notEqual(checked.code, 0);
    assert.equal(checked.stderr, web.stderr);
    assert.match(web.stderr, new RegExp(`^djinn-worker: ${worker.replace(/[.]/g, "\\.")}:\\d+: web\\.session: `));
  } finally {
    other.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("submit refuses a manifest over manifest_limit, and stops reading /dev/zero at the limit, before any server", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-cli-test-"));
  try {
    // Unreachable servers: the manifest is refused before any connection.
    const servers = `[crypto]\nblock = "0123456789abcdef"\n[database]\naddr = "127.0.0.1:9"\nname = "x"\nusername = "x"\n[redis]\naddr = "127.0.0.1:9"\n`;
    const worker = path.join(dir, "worker.toml");
    fs.writeFileSync(worker, `manifest_limit = 100\n${servers}`);
    const manifest = path.join(dir, "m.yml");
    fs.writeFileSync(manifest, `driver: {type: os}\nstages: [s]\njobs: [{stage: s, commands: [true]}]\n# ${"x".repeat(100)}\n`);
    const r = cli(["submit", "-config", worker, manifest]);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr, `djinn-worker: ${manifest}: the manifest is larger than the limit of 100 bytes (manifest_limit in worker.toml)\n`);
    fs.writeFileSync(worker, servers);
    const zero = spawnSync(process.execPath, [cliPath, "submit", "-config", worker, "/dev/zero"], { encoding: "utf8", timeout: 60_000 });
    assert.equal(zero.status, 2, `ended by ${zero.signal ?? "its exit"}: ${zero.stderr}`);
    assert.equal(zero.stderr, "djinn-worker: /dev/zero: the manifest is larger than the limit of 1048576 bytes (manifest_limit in worker.toml)\n");
    // An image the Docker Engine would refuse is refused here, as the worker's driver would.
    fs.writeFileSync(manifest, `driver: {type: docker, image: "Team/App:Latest!"}\nstages: [s]\njobs: [{stage: s, commands: [true]}]\n`);
    const image = cli(["submit", "-config", worker, manifest]);
    assert.equal(image.status, 2, image.stderr);
    assert.equal(image.stderr, `djinn-worker: ${manifest}: line 1: driver.image: "Team/App:Latest!" is not an image reference the Docker Engine accepts (name[:tag][@digest], e.g. debian:12 or registry.example.com/team/app:1.2): repository names are lower case\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
