// The contract every driver keeps, asked the same way of each (./helpers/driver-fixtures.ts says
// how to get each one here): create, execute (output, exit codes, env), kill, place, collect,
// glob, destroy and reap, through the Driver interface. One environment serves a driver's tests
// (a qemu machine boots once for them) and is destroyed by the last; reap takes one of its own.
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import { CollectError, getDriver, type Driver, type DriverEntry, type ExecResult, type RunRef } from "../internal/driver/driver.js";
import { freshRunToken } from "../internal/driver/run.js";
import "../internal/driver/all.js";
import { ArtifactStore } from "../internal/fs/store.js";
import { parseManifest } from "../internal/manifest/manifest.js";
import { planBuild } from "../internal/runner/plan.js";
import { runBuild } from "../internal/runner/runner.js";
import { collectingReporter } from "./helpers/qemu.js";
import { driverFixtures, type DriverFixture } from "./helpers/driver-fixtures.js";
import { requireService } from "./helpers/env.js";

const log = pino({ level: "silent" });

/** A Writable keeping all it is given, as text. */
function sink(): Writable & { text(): string } {
  const chunks: Buffer[] = [];
  const w = new Writable({ write: (c: Buffer, _e, done) => (chunks.push(c), done()) });
  return Object.assign(w, { text: () => Buffer.concat(chunks).toString("utf8") });
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** A job as the runner gives one: the script starts with `set -ex`. */
async function run(driver: Driver, commands: string, opts: { env?: Record<string, string> } = {}): Promise<{ result: ExecResult; output: string }> {
  const output = sink();
  const result = await driver.execute({ name: "contract/job", script: `set -ex\n${commands}\n`, env: opts.env ?? {}, output, signal: new AbortController().signal });
  return { result, output: output.text() };
}

async function created(entry: DriverEntry, fixture: DriverFixture, ref: RunRef): Promise<{ driver: Driver; output: string }> {
  const driver = entry.create({ ...ref, manifest: fixture.manifest(), config: fixture.config(), log });
  const output = sink();
  try {
    await driver.create(output, new AbortController().signal);
  } catch (err) {
    await driver.destroy();
    throw new Error(`create failed: ${(err as Error).message}\n${output.text()}`);
  }
  return { driver, output: output.text() };
}

for (const fixture of driverFixtures) {
  const skip = requireService(fixture.service, await fixture.missing());

  describe(`driver contract: ${fixture.name}`, { skip, timeout: 10 * 60_000 }, () => {
    let entry: DriverEntry;
    let ref: RunRef;
    let driver: Driver | undefined;
    let createOutput = "";
    let started = 0;

    before(async () => {
      started = Date.now();
      await fixture.setup();
      entry = await getDriver(fixture.manifest().type);
      ref = { buildId: `contract-${fixture.name}-${process.pid}`, run: freshRunToken() };
      ({ driver, output: createOutput } = await created(entry, fixture, ref));
    });

    after(async () => {
      await driver?.destroy();
      await fixture.teardown();
      process.stderr.write(`driver contract: ${fixture.name} took ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    });

    test("create says what it did in its output", () => {
      assert.match(createOutput, /\S/, "create wrote nothing");
    });

    test("execute: stdout and stderr merged in order, exit codes 0 and 3, a signal as 128 + n", async () => {
      const ok = await run(driver!, "echo out-1\necho err-2 >&2\necho out-3\nexit 0");
      assert.deepEqual(ok.result, { exitCode: 0 });
      const lines = ok.output.split("\n").filter((l) => /^(out|err)-\d$/.test(l));
      assert.deepEqual(lines, ["out-1", "err-2", "out-3"], ok.output);
      assert.match(ok.output, /\+ echo out-1\n/, "the shell's trace (stderr) is in the output");
      assert.equal((await run(driver!, "echo before\nexit 3")).result.exitCode, 3);
      const killed = await run(driver!, "kill -TERM $$\necho not-reached");
      assert.equal(killed.result.exitCode, 128 + 15, killed.output);
      assert.doesNotMatch(killed.output, /^not-reached$/m);
    });

    test("execute: the build's variables reach the job as given", async () => {
      const value = "hi 'there' \"$HOME\" `x` \\ end";
      const { result, output } = await run(driver!, 'printf "<%s>\\n" "$CONTRACT_VAR" "$CONTRACT_EMPTY"', { env: { CONTRACT_VAR: value, CONTRACT_EMPTY: "" } });
      assert.equal(result.exitCode, 0, output);
      assert.match(output, new RegExp(`^<${value.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&")}>\n<>$`, "m"));
    });

    test("place: a file (0644) in the workspace and a key (0600) under ~/, read back by a job", async () => {
      const data = "object bytes\nsecond line\n";
      await driver!.place("contract/data.txt", Readable.from([Buffer.from(data)]), Buffer.byteLength(data));
      await driver!.place(`~/.contract-${ref.run}/key`, Readable.from([Buffer.from("KEY\n")]), 4, 0o600);
      const { result, output } = await run(driver!, `stat -c "mode %a" contract/data.txt\ncat contract/data.txt\nstat -c "mode %a" ~/.contract-${ref.run}/key\ncat ~/.contract-${ref.run}/key`);
      assert.equal(result.exitCode, 0, output);
      const shown = output.split("\n").filter((l) => !l.startsWith("+ ")).join("\n");
      assert.equal(shown, `mode 644\n${data}mode 600\nKEY\n`);
    });

    test("collect: a relative path, a ~/ path; a missing file is CollectError missing", async () => {
      const made = await run(driver!, `mkdir -p contract ~/.contract-${ref.run}\nprintf 'relative\\n' > contract/out.txt\nprintf 'home\\n' > ~/.contract-${ref.run}/home.txt`);
      assert.equal(made.result.exitCode, 0, made.output);
      assert.equal(await readAll(await driver!.collect("contract/out.txt")), "relative\n");
      assert.equal(await readAll(await driver!.collect(`~/.contract-${ref.run}/home.txt`)), "home\n");
      await assert.rejects(driver!.collect("contract/no-such-file"), (err: unknown) => err instanceof CollectError && err.reason === "missing");
    });

    test("glob: a pattern gives every match as paths collect takes; no match gives none", async () => {
      assert.ok(driver!.glob, `${fixture.name} has no glob`);
      const made = await run(driver!, "mkdir -p contract/g\nfor n in a b c; do echo $n > contract/g/$n.txt; done\necho x > contract/g/other.log");
      assert.equal(made.result.exitCode, 0, made.output);
      const matches = (await driver!.glob("contract/g/*.txt")).sort();
      assert.deepEqual(matches.map((m) => m.split("/").pop()), ["a.txt", "b.txt", "c.txt"]);
      assert.deepEqual(await Promise.all(matches.map(async (m) => (await readAll(await driver!.collect(m))).trim())), ["a", "b", "c"]);
      assert.deepEqual(await driver!.glob("contract/g/*.none"), []);
    });

    if (fixture.noReap) {
      test(`declares no reap (${fixture.noReap})`, () => assert.equal(entry.reap, undefined, "a reap this contract does not test"));
    } else test("reap removes what a run whose worker died left", async () => {
      assert.ok(entry.reap, `${fixture.name} has no reap`);
      const dead: RunRef = { buildId: ref.buildId, run: freshRunToken() };
      const { driver: orphan } = await created(entry, fixture, dead);
      // The worker "dies" here: the driver object is dropped without destroy.
      void orphan;
      assert.notDeepEqual(await fixture.leftovers(dead), [], "the leftovers probe sees nothing of a live run: it proves nothing");
      await entry.reap(dead, fixture.config(), log);
      assert.deepEqual(await fixture.leftovers(dead), []);
      assert.notDeepEqual(await fixture.leftovers(ref), [], "reap left another run of the same build alone");
    });

    test("through the runner: a job's exit code, artifacts (a file, a pattern) in the store, a missing one a line of output", async () => {
      // The environment above, lent to the runner: its create and destroy are the suite's.
      const lent: Driver = {
        create: async (output) => void output.write("environment of the contract suite\n"),
        execute: (job) => driver!.execute(job),
        place: (dest, source, size, mode) => driver!.place(dest, source, size, mode),
        collect: (p) => driver!.collect(p),
        glob: (p) => driver!.glob!(p),
        destroy: async () => undefined,
      };
      const { manifest } = parseManifest(`
driver: {type: os}
env: ["CONTRACT_GREETING=hello"]
stages: [make, fail]
jobs:
  - stage: make
    name: make
    commands: ["mkdir -p runner/out", "echo $CONTRACT_GREETING > runner/out/one.txt", "echo two > runner/out/two.txt"]
    artifacts: ["runner/out/one.txt => first.txt", "runner/out/*.txt => all/*", "runner/out/none.txt"]
  - {stage: fail, name: fail, commands: ["exit 3"]}
`);
      const store = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-contract-art-"));
      try {
        const reporter = collectingReporter();
        const status = await runBuild({ plan: planBuild(manifest, "t"), driver: lent, env: Object.fromEntries(manifest.env), masks: [], artifacts: new ArtifactStore(store), reporter });
        assert.equal(status, "failed", reporter.all());
        assert.deepEqual([reporter.jobs.get("make")?.status, reporter.jobs.get("fail")?.status, reporter.jobs.get("fail")?.exitCode], ["passed", "failed", 3], reporter.all());
        assert.equal(await fs.readFile(path.join(store, "first.txt"), "utf8"), "hello\n");
        assert.deepEqual((await fs.readdir(path.join(store, "all"))).sort(), ["one.txt", "two.txt"]);
        assert.match(reporter.jobs.get("make")!.output, /runner\/out\/none\.txt.*(does not exist|not collected)/);
      } finally {
        await fs.rm(store, { recursive: true, force: true });
      }
    });

    // A kill is the build's: a driver may end the whole environment with the job (docker does), so it comes last but destroy.
    test("kill: aborting the signal ends a running job at once as 137", { timeout: 60_000 }, async () => {
      const abort = new AbortController();
      const output = sink();
      let seen = "";
      const watched = new Writable({
        write(c: Buffer, e, done) {
          seen += c.toString();
          if (/^started$/m.test(seen)) abort.abort();
          output.write(c, e, done);
        },
      });
      const job = driver!.execute({ name: "contract/kill", script: "set -ex\necho started\nsleep 300\necho not-reached\n", env: {}, output: watched, signal: abort.signal });
      const result = await job;
      assert.equal(result.exitCode, 137, seen);
      assert.doesNotMatch(seen, /^not-reached$/m);
    });

    // Last: it ends the environment the tests above shared.
    test("destroy leaves nothing of the run and may be called again", async () => {
      if (!fixture.noReap) assert.notDeepEqual(await fixture.leftovers(ref), [], "the leftovers probe sees nothing of a live run: it proves nothing");
      await driver!.destroy();
      assert.deepEqual(await fixture.leftovers(ref), []);
      await driver!.destroy();
      assert.deepEqual(await fixture.leftovers(ref), []);
    });
  });
}
