// `djinn-worker run` end to end on the os driver: the runner's semantics, the terminal output,
// artifacts, objects, masking, timeout, kill and exit codes.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { hostStatePath } from "../internal/driver/run.js";
import { cliPath, repoRoot, requireService } from "./helpers/env.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-run-test-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
interface Run {
  status: number | null;
  stdout: Buffer;
  out: string;
  stderr: string;
  artifacts: string;
  tmp: string;
}

/** Runs a manifest with its own TMPDIR, so leftover workspaces can be asserted. */
function run(manifest: string, args: string[] = [], env: Record<string, string> = {}): Run {
  const case_ = path.join(dir, `case-${++n}`);
  const tmp = path.join(case_, "tmp");
  fs.mkdirSync(tmp, { recursive: true });
  const file = path.join(case_, "manifest.yml");
  fs.writeFileSync(file, manifest);
  // A case may name its own artifact store.
  const own = args.indexOf("--artifacts");
  const artifacts = own === -1 ? path.join(case_, "artifacts") : args.splice(own, 2)[1];
  const r = spawnSync(process.execPath, [cliPath, "run", file, "--artifacts", artifacts, ...args], { cwd: case_, env: { ...process.env, TMPDIR: tmp, ...env } });
  return { status: r.status, stdout: r.stdout, out: r.stdout.toString("latin1"), stderr: r.stderr.toString(), artifacts, tmp };
}

/** A process that still runs: neither gone nor a zombie waiting to be reaped. */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

const job = (commands: string[], extra = "") => `driver: {type: os}\nstages: [build]\njobs:\n- stage: build\n  commands:\n${commands.map((c) => `  - ${JSON.stringify(c)}`).join("\n")}\n${extra}`;

describe("djinn-worker run (os driver)", () => {
  test("the example build passes with failures allowed, collects its artifact and masks the secret", () => {
    const r = spawnSync(process.execPath, [cliPath, "run", path.join(repoRoot, "examples/hello.yml"), "--objects", path.join(repoRoot, "examples"), "--artifacts", path.join(dir, "hello-art"), "--secret", "TOKEN=hunter2-s3cret"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\+ mkdir -p out\n/);
    assert.match(r.stdout, /the token is xxxxxx\n/);
    assert.ok(!r.stdout.includes("hunter2-s3cret"));
    assert.match(r.stdout, /lint \/ lint\.1: passed_with_failures/);
    assert.match(r.stdout, /Done\. Build passed_with_failures/);
    assert.equal(fs.readFileSync(path.join(dir, "hello-art/hello.txt"), "utf8"), "hello from Linux\nplaced by the worker as an object\n");
  });

  test("env from the manifest and --env, on a minimal base env", () => {
    const r = run(job(['echo "A=$A B=$B HOME_IS_WS=$([ \\"$HOME\\" = \\"$PWD\\" ] && echo yes) CI=$CI"', 'echo "LEAK=${DJINN_TEST_LEAK:-none}"'], "env: [A=from-manifest, B=overridden]\n"), ["--env", "B=from-flag"], { DJINN_TEST_LEAK: "host-value" });
    assert.equal(r.status, 0, r.out + r.stderr);
    assert.match(r.out, /A=from-manifest B=from-flag HOME_IS_WS=yes CI=true\n/);
    assert.match(r.out, /LEAK=none\n/, "the host's environment does not leak into jobs");
  });

  test("a failed job fails the build and the jobs after it do not run", () => {
    const r = run("driver: {type: os}\nstages: [one, two]\njobs:\n- {stage: one, commands: [echo first, 'false', echo never]}\n- {stage: one, commands: [echo also-never]}\n- {stage: two, commands: [echo never-either]}\n");
    assert.equal(r.status, 1);
    assert.match(r.out, /\+ false\njob one\.1 failed: exit status 1\n==> one \/ one\.1: failed/);
    assert.ok(!r.out.includes("never"), "nothing after the failing command ran");
    assert.match(r.out, /one \/ one\.2\s+skipped\n\s+two \/ two\.1\s+skipped\n/);
    assert.match(r.out, /Done\. Build failed/);
    assert.deepEqual(fs.readdirSync(hostStatePath(r.tmp)), [], "the workspace is removed");
  });

  test("jobs share the workspace; output keeps its order with stderr merged", () => {
    const r = run("driver: {type: os}\nstages: [a, b]\njobs:\n- {stage: a, commands: ['echo state > f', 'echo out; echo err >&2; echo out2']}\n- {stage: b, commands: [cat f]}\n");
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /\+ echo out; echo err >&2; echo out2\nout\nerr\nout2\n/, "a command is shown as written, then its output in order");
    assert.match(r.out, /\+ cat f\nstate\n/);
  });

  test("a timeout stops the build as timed_out and kills what it started", () => {
    const marker = `djinn-timeout-${process.pid}`;
    const started = Date.now();
    const r = run(job([`sh -c 'sleep 60; : ${marker}' & sleep 60`]), ["--timeout", "1s"]);
    assert.equal(r.status, 4, r.out + r.stderr);
    assert.ok(Date.now() - started < 20_000, "stopped long before the job would have ended");
    assert.match(r.out, /build timed out after 1s/);
    assert.match(r.out, /Done\. Build timed_out/);
    assert.equal(spawnSync("pgrep", ["-f", marker]).status, 1, "no process of the job is left");
    assert.deepEqual(fs.readdirSync(hostStatePath(r.tmp)), []);
  });

  test("Ctrl-C kills the build cleanly: status killed, exit 3, nothing left", async () => {
    const case_ = path.join(dir, "sigint");
    const tmp = path.join(case_, "tmp");
    fs.mkdirSync(tmp, { recursive: true });
    const marker = `djinn-sigint-${process.pid}`;
    fs.writeFileSync(path.join(case_, "m.yml"), job([`echo ready; sleep 300; : ${marker}`]));
    const child = spawn(process.execPath, [cliPath, "run", "m.yml", "--artifacts", "art"], { cwd: case_, env: { ...process.env, TMPDIR: tmp } });
    let out = "";
    await new Promise<void>((resolve) => {
      child.stdout.on("data", (c: Buffer) => {
        out += c.toString();
        if (out.includes("\nready\n")) resolve();
      });
    });
    child.kill("SIGINT");
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 3, out);
    assert.match(out, /build killed/);
    assert.match(out, /Done\. Build killed/);
    assert.equal(spawnSync("pgrep", ["-f", marker]).status, 1, "the job's processes are gone");
    assert.deepEqual(fs.readdirSync(hostStatePath(tmp)), [], "the workspace is removed");
  });

  test("NUL bytes and invalid UTF-8 pass through untouched", () => {
    const r = run(job(["printf 'a\\000b\\377\\376c\\n'"]));
    assert.equal(r.status, 0);
    assert.ok(r.stdout.includes(Buffer.from([0x61, 0x00, 0x62, 0xff, 0xfe, 0x63, 0x0a])), "raw bytes reach the output");
  });

  test("a secret split across two writes is still masked", () => {
    // The inner shell is not traced, so the two halves reach the worker as two separate writes.
    const r = run(job([`sh -c "printf 'value: hunt'; sleep 0.2; printf 'er2-xyz\\n'"`, 'echo "$PASSWORD"']), ["--secret", "PASSWORD=hunter2-xyz"]);
    assert.equal(r.status, 0);
    assert.ok(!r.out.includes("hunter2-xyz"), r.out);
    assert.match(r.out, /value: xxxxxx\n/);
    assert.match(r.out, /\+ echo "\$PASSWORD"\nxxxxxx\n/);
  });

  test("a secret quoted by a shell's own trace (bash, busybox ash) or shown by a job's command is masked; commands show as written", () => {
    const secret = `Tr0ub4dor'3-horse-staple "dq" \\bs $dollar`;
    const r = run(job(['bash -xc \': "$PASSWORD"\'', 'busybox sh -xc \': "pre$PASSWORD"\'', 'printf "%s\\n" "$PASSWORD"']), ["--secret", `PASSWORD=${secret}`]);
    assert.equal(r.status, 0, r.out + r.stderr);
    for (const fragment of ["Tr0ub4dor", "horse-staple", "dollar"]) assert.ok(!r.out.includes(fragment), `${fragment} shows:\n${r.out}`);
    assert.match(r.out, /\+ printf "%s\\n" "\$PASSWORD"\nxxxxxx\n/, "the command as written, then its output masked");
    assert.equal(r.out.match(/xxxxxx/g)?.length, 3, r.out);
  });

  test("a file whose name holds a secret is not collected by a pattern: the job fails with a line that shows it masked, the others are collected", () => {
    const r = run(job(['mkdir out && echo hi > "out/$TOKEN.txt" && echo ok > out/plain.txt'], "  artifacts:\n  - out/* => out/*\n"), ["--secret", "TOKEN=tok-Vq83-secret"]);
    assert.equal(r.status, 1, r.out + r.stderr);
    assert.ok(!r.out.includes("tok-Vq83-secret"), r.out);
    assert.match(r.out, /artifact out\/\*: a matching file's name holds a masked value: not collected/);
    assert.match(r.out, /Collected artifact .*out\/plain\.txt => out\/plain\.txt/);
    assert.match(r.out, /build \/ build\.1: failed/);
    const stored = fs.readdirSync(r.artifacts, { recursive: true }).map(String);
    assert.deepEqual(stored.sort(), ["out", "out/plain.txt"]);
  });

  test("a stage, job or artifact name holding a secret is refused before anything runs, the name shown masked", () => {
    const cases: [string, RegExp][] = [
      [`driver: {type: os}\nstages: [deploy-nm-Kx41-secret]\njobs:\n- {stage: deploy-nm-Kx41-secret, commands: [echo never]}\n`, /stage "deploy-xxxxxx" holds a masked value/],
      [`driver: {type: os}\nstages: [build]\njobs:\n- {stage: build, name: "to nm-Kx41-secret", commands: [echo never]}\n`, /job "to xxxxxx" holds a masked value/],
      [job(["echo never"], "  artifacts:\n  - out.txt => nm-Kx41-secret.txt\n"), /artifact "xxxxxx\.txt" holds a masked value/],
    ];
    for (const [manifest, expected] of cases) {
      const r = run(manifest, ["--secret", "NAME=nm-Kx41-secret"]);
      assert.equal(r.status, 2, r.out + r.stderr);
      assert.match(r.stderr, expected);
      assert.equal(r.stderr.split("\n").length, 2, "one line");
      assert.ok(!(r.out + r.stderr).includes("nm-Kx41-secret"), r.stderr);
      assert.ok(!r.out.includes("never"));
    }
  });

  test("an error never repeats a secret: a bad --secret name, a bare value, a manifest error quoting it", () => {
    const secret = "val-Mz52-secret";
    const bad = run(job(["true"]), ["--secret", `API-TOKEN=${secret}`]);
    assert.equal(bad.status, 2);
    assert.equal(bad.stderr, `djinn-worker: --secret "API-TOKEN"=...: expected KEY=value with KEY a shell variable name (letters, digits and _, not starting with a digit)\n`);
    const bare = run(job(["true"]), ["--secret", `${secret}!`]);
    assert.equal(bare.status, 2);
    assert.ok(!bare.stderr.includes(secret), bare.stderr);
    const quoted = run(`driver: {type: os}\nenv: ["${secret}"]\nstages: [build]\njobs:\n- {stage: build, commands: [true]}\n`, ["--secret", `TOKEN=${secret}`]);
    assert.equal(quoted.status, 2);
    assert.match(quoted.stderr, /env\[0\]: expected KEY=value with KEY a shell variable name, got "xxxxxx"/);
    assert.ok(!quoted.stderr.includes(secret), quoted.stderr);
  });

  test("--secret KEY takes the value from the environment, off the command line", () => {
    const r = run(job(['echo "token=$API_TOKEN"']), ["--secret", "API_TOKEN"], { API_TOKEN: "from-env-Qx81" });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.out, /token=xxxxxx\n/);
    assert.ok(!r.out.includes("from-env-Qx81"));
    const unset = run(job(["true"]), ["--secret", "DJINN_TEST_UNSET_VARIABLE"]);
    assert.equal(unset.status, 2);
    assert.match(unset.stderr, /--secret "DJINN_TEST_UNSET_VARIABLE": expected KEY=value, or KEY naming a variable set in this environment/);
  });

  test("artifacts: missing, escaping and symlinked-out paths are refused in the output; the build goes on", () => {
    const r = run(job(["echo data > ok.txt", "ln -s /etc/passwd link", "mkdir d"], "  artifacts:\n  - ok.txt\n  - missing.txt\n  - ../../escape\n  - /etc/passwd => passwd\n  - link => link\n  - d\n  - ok.txt => ../outside\n"));
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /Collected artifact ok\.txt => ok\.txt \(5 bytes\)/);
    assert.match(r.out, /artifact missing\.txt not collected: missing\.txt does not exist/);
    assert.match(r.out, /artifact \.\.\/\.\.\/escape not collected: \.\.\/\.\.\/escape is outside the workspace/);
    assert.match(r.out, /artifact \/etc\/passwd not collected: \/etc\/passwd is outside the workspace/);
    assert.match(r.out, /artifact link not collected: link links outside the workspace/);
    assert.match(r.out, /artifact d not collected: d is not a regular file/);
    assert.match(r.out, /artifact ok\.txt not collected: name "\.\.\/outside" reaches outside the store/);
    assert.deepEqual(fs.readdirSync(r.artifacts), ["ok.txt"]);
  });

  test("artifacts: a name two jobs collect to is kept apart, the second under name-2, and the output says so", () => {
    const collect = (text: string) => `- stage: build\n  commands: ["echo ${text} > out.txt"]\n  artifacts: [out.txt => app.txt, out.txt => app.txt]\n`;
    const r = run(`driver: {type: os}\nstages: [build]\njobs:\n${collect("first")}${collect("second")}`);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /Collected artifact out\.txt => app\.txt \(6 bytes\)\n/);
    assert.match(r.out, /Collected artifact out\.txt => app-2\.txt \(6 bytes\): app\.txt was collected earlier in this build, so this one is kept as app-2\.txt/);
    assert.match(r.out, /Collected artifact out\.txt => app-3\.txt \(7 bytes\): app\.txt was collected earlier in this build, so this one is kept as app-3\.txt/);
    assert.deepEqual(fs.readdirSync(r.artifacts).sort(), ["app-2.txt", "app-3.txt", "app-4.txt", "app.txt"]);
    assert.deepEqual(["app.txt", "app-2.txt", "app-3.txt", "app-4.txt"].map((f) => fs.readFileSync(path.join(r.artifacts, f), "utf8")), ["first\n", "first\n", "second\n", "second\n"]);
  });

  // Like a missing service: without root it says so and skips, and under DJINN_TEST_REQUIRE=all it fails.
  const notRoot = requireService("root", process.getuid?.() === 0 ? undefined : "mounting a tmpfs needs root");
  test("artifacts: a store that is full (a 1 MiB tmpfs) fails the job that collected, with the reason, and the build", { skip: notRoot }, () => {
    const store = path.join(dir, "full-store");
    fs.mkdirSync(store, { recursive: true });
    const mount = spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", store], { encoding: "utf8" });
    assert.equal(mount.status, 0, mount.stderr);
    try {
      const r = run(job(["echo small > small.txt", "head -c 3000000 /dev/zero > big.bin"], "  artifacts:\n  - small.txt\n  - big.bin\n"), ["--artifacts", store]);
      assert.equal(r.status, 1, r.out);
      assert.match(r.out, /Collected artifact small\.txt => small\.txt \(6 bytes\)/);
      assert.match(r.out, /artifact big\.bin not collected: the artifact store cannot write big\.bin: ENOSPC: no space left on device/);
      assert.match(r.out, /job build\.1 failed: an artifact could not be collected \(see above\)/);
      assert.match(r.out, /Done\. Build failed/);
      // Nothing half written is left behind.
      assert.deepEqual(fs.readdirSync(store), ["small.txt"]);
    } finally {
      const umount = spawnSync("umount", [store], { encoding: "utf8" });
      assert.equal(umount.status, 0, umount.stderr);
    }
  });

  test("objects: placed in the workspace; one that cannot be placed (missing, escaping) fails the build in setup, every reason said", () => {
    const objects = path.join(dir, "objs");
    fs.mkdirSync(objects, { recursive: true });
    fs.writeFileSync(path.join(objects, "config.json"), '{"a":1}');
    fs.writeFileSync(path.join(dir, "private"), "not an object");
    const placed = run(job(["cat conf/config.json"], "objects:\n- config.json => conf/config.json\n"), ["--objects", objects]);
    assert.equal(placed.status, 0, placed.out);
    assert.match(placed.out, /Placed object config\.json => conf\/config\.json\n[\s\S]*\{"a":1\}/);
    const r = run(job(["echo never"], "objects:\n- config.json => conf/config.json\n- ../private => x\n- config.json => /etc/djinn-should-not-exist\n- nothing.bin => n\n"), ["--objects", objects]);
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /Placed object config\.json => conf\/config\.json/);
    assert.match(r.out, /object \.\.\/private not placed: name "\.\.\/private" reaches outside the store/);
    assert.match(r.out, /object config\.json not placed: the os driver places objects inside the workspace only/);
    assert.match(r.out, /object nothing\.bin not placed: object "nothing\.bin" not found in /);
    assert.match(r.out, /3 objects were not placed: the build does not run without them\n/);
    assert.match(r.out, /create-driver: failed/);
    assert.ok(!r.out.includes("+ echo never"));
    assert.ok(!fs.existsSync("/etc/djinn-should-not-exist"));
  });

  test("a driver that cannot be created fails the build with its message", () => {
    const r = run(job(["echo never"]), [], { TMPDIR: "/nonexistent-djinn-dir" });
    assert.equal(r.status, 1);
    assert.match(r.out, /driver: .*nonexistent-djinn-dir/);
    assert.match(r.out, /create-driver: failed/);
    assert.ok(!r.out.includes("+ echo never"));
  });

  test("bad input exits 2 with one line naming what and where", () => {
    const missing = spawnSync(process.execPath, [cliPath, "run", path.join(dir, "nope.yml")], { encoding: "utf8" });
    assert.equal(missing.status, 2);
    assert.equal(missing.stderr, `djinn-worker: ${path.join(dir, "nope.yml")}: cannot read manifest: no such file\n`);
    const notYaml = run("driver: [os\n");
    assert.equal(notYaml.status, 2);
    assert.match(notYaml.stderr, /manifest\.yml: line \d+: not valid YAML/);
    const noJobs = run("driver: {type: os}\nstages: [a]\n");
    assert.equal(noJobs.status, 2);
    assert.match(noJobs.stderr, /jobs: required/);
    const badEnv = run(job(["true"]), ["--env", "NOEQUALS"]);
    assert.equal(badEnv.status, 2);
    assert.match(badEnv.stderr, /--env "NOEQUALS": expected KEY=value/);
    const badTimeout = run(job(["true"]), ["--timeout", "30 minutes"]);
    assert.equal(badTimeout.status, 2);
    assert.match(badTimeout.stderr, /--timeout: invalid duration "30 minutes"/);
    const unconfigured = run("driver: {type: docker, image: x}\nstages: [a]\njobs: [{stage: a, commands: [true]}]\n", ["-driver", path.join(repoRoot, "examples/driver.toml")]);
    assert.equal(unconfigured.status, 2);
    assert.match(unconfigured.stderr, /the manifest's driver "docker" is not configured: add a \[docker\] section/);
  });
  test("a manifest over 1 MiB is refused in one line, exit 2, and nothing runs", () => {
    const marker = path.join(dir, `ran-${process.pid}`);
    const r = run(job([`touch ${marker}`]) + `# ${"x".repeat(1024 * 1024)}\n`);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr, `djinn-worker: ${path.join(dir, `case-${n}`, "manifest.yml")}: the manifest is larger than the limit of 1048576 bytes\n`);
    assert.ok(!fs.existsSync(marker), "the build did not run");
    assert.deepEqual(fs.readdirSync(r.tmp), []);
  });

  test("run /dev/zero stops reading at the limit: one line, exit 2", () => {
    const r = spawnSync(process.execPath, [cliPath, "run", "/dev/zero"], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 2, `ended by ${r.signal ?? "its exit"}: ${r.stderr}`);
    assert.equal(r.stderr, "djinn-worker: /dev/zero: the manifest is larger than the limit of 1048576 bytes\n");
  });

  test("SIGTERM ends a run still reading its manifest from a pipe that never closes: one line, exit 3", async () => {
    const fifo = path.join(dir, `endless-${process.pid}`);
    spawnSync("mkfifo", [fifo]);
    const child = spawn(process.execPath, [cliPath, "run", fifo], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const closed = new Promise<[number | null, string | null]>((resolve) => child.on("close", (code, signal) => resolve([code, signal])));
    // Opening the writing end waits for the reader: the run is reading (its signal handling is set first).
    const writer = await fs.promises.open(fifo, "w");
    try {
      await writer.write("driver: {type: os}\n");
      child.kill("SIGTERM");
      const [code, signal] = await closed;
      assert.equal(signal, null, stderr);
      assert.equal(code, 3, stderr);
      assert.match(stderr, new RegExp(`djinn-worker: ${fifo}: reading the manifest was interrupted\n$`));
    } finally {
      await writer.close();
    }
  });

  test("a --timeout longer than a timer holds is refused, not fired at once", () => {
    const r = run(job(["echo ran"]), ["--timeout", "597h"]);
    assert.equal(r.status, 2, r.out + r.stderr);
    assert.equal(r.stderr, 'djinn-worker: --timeout: must be at most 596h31m23.647s (the longest a timer can wait), got "597h"\n');
    assert.doesNotMatch(r.out, /ran/);
  });

  test("a process that left the job's session (setsid) ends with the build", async () => {
    const pidFile = path.join(dir, `escaped-${n + 1}`);
    const escape = `setsid sleep 300 >/dev/null 2>&1 & p=$!; while [ "$(cat /proc/$p/comm)" != sleep ]; do sleep 0.01; done; echo $p > ${pidFile}`;
    const r = run(job([escape, "echo left behind"]));
    assert.equal(r.status, 0, r.out + r.stderr);
    const pid = Number(fs.readFileSync(pidFile, "utf8"));
    assert.ok(pid > 1);
    // The sleeper was killed before `run` exited; only init reaping the orphan may still lag.
    const deadline = Date.now() + 5000;
    while (running(pid) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
    assert.equal(running(pid), false, `the setsid sleeper ${pid} outlived the build`);
  });
});
