// Channels a busy SSH server refuses: asked for again with a pause, never more open at once than
// the server allows, given up with a clear line. The server is a real one (ssh2's) on 127.0.0.1
// that runs what it is asked to and refuses channel opens and exec requests as its policy says.
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PassThrough, Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { after, describe, test } from "node:test";
import pino from "pino";
import type { DriverConfig } from "../internal/config/config.js";
import { CollectError, getDriver } from "../internal/driver/driver.js";
import "../internal/driver/all.js";
import { FIRST_CIPHER } from "../internal/driver/ssh/connect.js";
import type { ChannelRetry } from "../internal/driver/ssh/gate.js";
import { SshSession, type SessionOptions } from "../internal/driver/ssh/session.js";
import { ArtifactStore } from "../internal/fs/store.js";
import { parseManifest } from "../internal/manifest/manifest.js";
import { planBuild } from "../internal/runner/plan.js";
import { runBuild } from "../internal/runner/runner.js";
import { requireService } from "./helpers/env.js";
import { collectingReporter } from "./helpers/qemu.js";
import { SFTP_SERVER, startRefusingServer, type RefusalPolicy, type RefusingServer } from "./helpers/ssh-server.js";

const log = pino({ level: "silent" });
const skip = requireService("sftp-server", SFTP_SERVER ? undefined : "no sftp-server: Debian package openssh-sftp-server");

/** Short pauses: these tests are about which refusals are retried, not how long the pauses are. */
const QUICK: ChannelRetry = { attempts: 8, firstDelayMs: 5, maxDelayMs: 20 };

describe("ssh channels a server refuses", { skip, timeout: 3 * 60_000 }, () => {
  const servers: RefusingServer[] = [];
  const sessions: SshSession[] = [];

  after(async () => {
    for (const s of sessions) await s.close();
    for (const s of servers) await s.close();
  });

  async function serve(policy: RefusalPolicy): Promise<RefusingServer> {
    const server = await startRefusingServer(policy);
    servers.push(server);
    return server;
  }

  async function open(server: RefusingServer, opts: Partial<SessionOptions> = {}): Promise<SshSession> {
    const session = await SshSession.open({ host: "127.0.0.1", port: server.port, user: "djinn" }, { timeoutMs: 20_000, channelRetry: QUICK, ...opts });
    sessions.push(session);
    return session;
  }

  /** Runs `script` as a job and returns its exit code and output. */
  async function job(session: SshSession, script: string): Promise<{ exitCode: number; output: string }> {
    const output = new PassThrough();
    const said = text(output);
    const { exitCode } = await session.execute({ name: "s/j", script, env: {}, output, signal: new AbortController().signal });
    output.end();
    return { exitCode, output: await said };
  }

  for (const sftp of [true, false]) {
    test(`every other channel open and exec refused: jobs, patterns and files still go through, ${sftp ? "over SFTP" : "over exec channels"}`, async () => {
      const server = await serve({ sftp, refuseOpen: (n) => n % 2 === 1, refuseExec: (n) => n % 2 === 1 });
      const session = await open(server);
      assert.equal(session.transferNote === "", sftp, `files go ${sftp ? "over SFTP" : "over exec channels"}`);

      await session.place("deep/dir/object.txt", Readable.from(["object bytes\n"]), 13);
      const ran = await job(session, "cat deep/dir/object.txt\necho made > out.log\nexit 3\n");
      assert.match(ran.output, /^object bytes$/m);
      // A command that ran and failed is its result, not a refusal: it ran once.
      assert.equal(ran.exitCode, 3);
      assert.equal(server.counts.ran.filter((c) => c.startsWith("exec sh -c") && c.includes("/job-1.sh")).length, 1);

      assert.deepEqual(await session.glob("*.log"), [path.join(server.home, "out.log")]);
      assert.equal(await text(await session.collect("out.log")), "made\n");
      await assert.rejects(session.collect("nowhere.log"), (err: Error) => err instanceof CollectError && err.reason === "missing");
      assert.ok(server.counts.refusedOpens >= 3, `channel opens refused: ${server.counts.refusedOpens}`);
      assert.ok(server.counts.refusedExecs >= 3, `exec requests refused: ${server.counts.refusedExecs}`);
    });
  }

  test("the connection asks for chacha20-poly1305 first, as OpenSSH does, though the server offers AES-GCM first", async () => {
    const server = await serve({});
    const session = await open(server);
    assert.equal((await job(session, "true\n")).exitCode, 0);
    assert.ok(server.counts.ciphers.length > 0, "a connection was made");
    assert.deepEqual([...new Set(server.counts.ciphers)], [FIRST_CIPHER]);
  });

  test("no more channels at once than the server allows, with no retry to hide behind", async () => {
    const server = await serve({ sftp: false, maxOpen: 3 });
    for (let i = 0; i < 6; i++) await fs.writeFile(path.join(server.home, `f${i}.txt`), `file ${i}\n`);
    // Every open is sent before the server can answer any: without a limit here, the fourth is refused.
    const session = await open(server, { maxChannels: 3, channelRetry: { ...QUICK, attempts: 1 } });
    const globs = Array.from({ length: 6 }, (_, i) => session.glob(`f${i}.*`));
    const reads = Array.from({ length: 6 }, (_, i) => session.collect(`f${i}.txt`).then(text));
    assert.deepEqual(await Promise.all(globs), Array.from({ length: 6 }, (_, i) => [path.join(server.home, `f${i}.txt`)]));
    assert.deepEqual(await Promise.all(reads), Array.from({ length: 6 }, (_, i) => `file ${i}\n`));
    assert.equal(server.counts.refusedOpens, 0);
    assert.ok(server.counts.mostOpen <= 3, `${server.counts.mostOpen} channels open at once`);

    // The same burst with room for more than the server allows: it refuses, and says so clearly.
    const greedy = await open(server, { maxChannels: 20, channelRetry: { ...QUICK, attempts: 1 } });
    const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => greedy.glob(`f${i}.*`)));
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    assert.ok(refused.length >= 3, "the server's limit was not reached");
    assert.match(refused[0].reason.message, /^cannot expand f\d\.\*: djinn@127\.0\.0\.1:\d+ refused a channel \(1 try in [\d.]+s\): \(SSH\) Channel open failure/);
  });

  test("a connection the server drops while it is being prepared is made again, and its dying SFTP channel is not taken for no SFTP", async () => {
    const server = await serve({ sftp: true, dropAtSftp: (n) => n <= 2 });
    const session = await open(server);
    assert.equal(server.counts.connections, 3, "two dropped connections, a third kept");
    await session.place("in/x.txt", Readable.from(["placed over sftp\n"]), 17);
    assert.deepEqual(await job(session, "cat in/x.txt"), { exitCode: 0, output: "placed over sftp\n" });
    assert.ok(!server.counts.ran.some((c) => c.includes("cat >")), "files went over SFTP, not exec channels");
  });

  test("an SFTP subsystem that starts and dies is not taken for no SFTP: the session connects again and uses SFTP; dying every time, it goes over exec channels and says why", async () => {
    const flaky = await serve({ sftp: true, sftpDiesAt: (n) => n === 1 });
    const session = await open(flaky);
    assert.equal(flaky.counts.connections, 2);
    assert.equal(session.transferNote, "");
    await session.place("in/y.txt", Readable.from(["over sftp\n"]), 10);
    assert.ok(!flaky.counts.ran.some((c) => c.includes("cat >")), "files went over SFTP, not exec channels");
    const broken = await serve({ sftp: true, sftpDiesAt: () => true });
    const fallback = await open(broken);
    assert.equal(broken.counts.connections, 3);
    assert.match(fallback.transferNote, /no SFTP on the machine: files go over exec channels \(Received signal SIGHUP while establishing SFTP session\)$/);
    await fallback.place("in/z.txt", Readable.from(["over exec\n"]), 10);
    assert.deepEqual(await job(fallback, "cat in/z.txt"), { exitCode: 0, output: "over exec\n" });
  });

  test("over exec channels, a read cut short lets the command finish rather than hang up on it, and the connection goes on", async () => {
    const server = await serve({ sftp: false });
    const session = await open(server);
    await fs.writeFile(path.join(server.home, "big.bin"), Buffer.alloc(8 << 20, 97));
    const stream = await session.collect("big.bin");
    // The artifact limit: the first bytes are kept, the reader stops.
    await new Promise<void>((resolve) => stream.once("data", () => resolve()));
    stream.destroy();
    const { exitCode, output } = await job(session, "echo still-connected");
    assert.deepEqual({ exitCode, output }, { exitCode: 0, output: "still-connected\n" });
    assert.equal(server.counts.closedWhileRunning, 0, "a channel was closed while its cat still ran");
  });

  test("a connection the machine drops between jobs is made again for collecting: patterns and files after it are not lost", async () => {
    const server = await serve({ sftp: false });
    const session = await open(server);
    assert.deepEqual(await job(session, "echo kept > out.log"), { exitCode: 0, output: "" });
    const seen = session as unknown as { lost: boolean; client: { once(e: string, f: () => void): void } };
    const gone = new Promise<void>((resolve) => seen.client.once("close", () => resolve()));
    server.dropConnections();
    await gone;
    assert.deepEqual(await session.glob("*.log"), [path.join(server.home, "out.log")]);
    assert.equal(await text(await session.collect("out.log")), "kept\n");
    assert.equal(server.counts.connections, 2);
  });

  test("a server that keeps dropping the connection while it is being prepared fails the build's setup with a line saying so", async () => {
    const server = await serve({ sftp: true, dropAtSftp: () => true });
    await assert.rejects(open(server), /closed the connection while it was being prepared/);
    assert.equal(server.counts.connections, 3);
  });

  test("a server that keeps refusing fails the job, and the collection, each with a clear line", async () => {
    // Setup and file transfers go through; jobs and pattern expansion are always refused.
    const server = await serve({ sftp: true, refuseExec: (_n, command) => command.startsWith("exec sh -c") || command.includes("'*.log'") });
    const { manifest } = parseManifest(`
driver: {type: ssh, address: "127.0.0.1:${server.port}"}
stages: [s, t]
allow_failures: [s]
jobs:
  - {stage: s, name: gather, artifacts: ["*.log"]}
  - {stage: t, name: work, commands: ["echo never"]}
`);
    const temp = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-ssh-channels-"));
    try {
      const config: DriverConfig = { ssh: { timeoutMs: 20_000, user: "djinn" }, warnings: [] };
      const driver = (await getDriver("ssh")).create({ buildId: "ssh-channels", manifest: manifest.driver, config, log });
      const reporter = collectingReporter();
      const status = await runBuild({ plan: planBuild(manifest, "t"), driver, env: {}, masks: [], artifacts: new ArtifactStore(temp), reporter });
      assert.equal(status, "failed", reporter.all() + JSON.stringify([...reporter.jobs.values()].map((j) => [j.name, j.status])));
      assert.match(reporter.jobs.get("gather")!.output, /artifact \*\.log not collected: cannot expand \*\.log: djinn@127\.0\.0\.1:\d+ refused a channel \(8 tries in [\d.]+s\): Unable to exec\n/);
      // The pattern's files were lost, not absent: the job fails rather than pass without them.
      assert.match(reporter.jobs.get("gather")!.output, /job gather failed: an artifact could not be collected \(see above\)\n/);
      assert.equal(reporter.jobs.get("gather")!.status, "passed_with_failures", "failed, in a stage allowed to fail");
      assert.match(reporter.jobs.get("work")!.output, /cannot start job t\/work: djinn@127\.0\.0\.1:\d+ refused a channel \(8 tries in [\d.]+s\): Unable to exec\n/);
      assert.ok(!server.counts.ran.some((c) => c.startsWith("exec sh -c")), "a refused job ran after all");
    } finally {
      await fs.rm(temp, { recursive: true, force: true });
    }
  });

  test("once the build is aborted, a refused channel is not asked for again", async () => {
    const server = await serve({ sftp: true, refuseExec: (_n, command) => command.includes("'*.log'") });
    const build = new AbortController();
    // A pause far past the test's time limit: only the abort can end it.
    const session = await open(server, { buildSignal: build.signal, channelRetry: { attempts: 8, firstDelayMs: 3_600_000, maxDelayMs: 3_600_000 } });
    server.onRefusal = () => build.abort();
    await assert.rejects(session.glob("*.log"), /cannot expand \*\.log: aborted/);
    assert.equal(server.counts.refusedExecs, 1);
    // Cleaning up after an abort still gets its channels.
    await session.close();
    assert.ok(server.counts.ran.some((c) => c.startsWith("rm -rf")), "the scripts were not removed");
  });
});
