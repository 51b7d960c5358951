// Start-up under a booting machine: servers not answering yet are waited for (each try logged),
// servers that never answer end the start with the "try again" status, what waiting cannot cure
// stops it at once, and no start-up error is lost: it reaches the log file, and the SysVinit
// script keeps the daemon's stderr and shows it.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { EXIT_TRY_AGAIN, START_WAIT_MS } from "../internal/worker/startup.js";
import { osManifest, servicesSkip, daemonSuite } from "./helpers/daemon-suite.js";
import { cliPath, repoRoot } from "./helpers/env.js";
import { freePort, until, waitForStatus } from "./helpers/services.js";

const skip = servicesSkip();

describe("worker daemon: start-up", { skip }, () => {
  const suite = daemonSuite();
  const relay = (port: number) => suite.relay(port, "closed");

  it("waits for PostgreSQL and then Redis to answer, logging each try, then starts and runs builds", async () => {
    const pg = await relay(suite.postgres.port);
    const redis = await relay(suite.redis.port);
    const t = await suite.env({ postgres: pg.addr, redis: redis.addr });
    const d = await t.daemon({ ready: false });
    await d.waitFor((l) => /^cannot connect to PostgreSQL at .*: connection refused: waiting for it to start$/.test(String(l.msg)) && l.attempt === 2, "the second try at PostgreSQL");
    await pg.set("open");
    await d.waitFor((l) => /^cannot connect to Redis at .*: connection refused: waiting for it to start$/.test(String(l.msg)) && Number(l.attempt) >= 2, "a try at Redis");
    await redis.set("open");
    await d.waitForMsg("worker started");
    const asRoot = d.lines.filter((l) => /^running as root: /.test(String(l.msg)));
    assert.deepEqual(asRoot.map((l) => l.level), process.getuid?.() === 0 ? ["warn"] : [], "one warning when the daemon runs as root, none otherwise");
    const tries = d.lines.filter((l) => /waiting for it to start/.test(String(l.msg)));
    assert.deepEqual(tries.map((l) => l.attempt), tries.map((_, i) => i + 1), "every try logged, numbered");
    const id = await t.submit(osManifest([["echo booted"]]));
    assert.equal(await waitForStatus(t.pool, id, ["passed", "failed"]), "passed");
  });

  it("what waiting cannot cure stops the start at once: exit 1, one line, no waiting", async () => {
    const t = await suite.env({ database: "no_such_database", logFile: true });
    const d = await t.daemon({ ready: false });
    assert.equal((await d.exit).code, 1);
    assert.match(d.stderr, /^djinn-worker: cannot connect to PostgreSQL at [^\n]*: database "no_such_database" does not exist\n$/);
    assert.ok(!readFileSync(t.cfg.logFile!, "utf8").includes("waiting for it to start"));
  });

  it(`servers that never answer end the start after ${START_WAIT_MS / 1000}s with status ${EXIT_TRY_AGAIN}, said on stderr and in the log file`, async () => {
    const pg = await relay(suite.postgres.port);
    const t = await suite.env({ postgres: pg.addr, logFile: true });
    await fs.writeFile(t.cfg.worker, `pidfile = "${path.join(t.dir, "worker.pid")}"\n${await fs.readFile(t.cfg.worker, "utf8")}`);
    const d = await t.daemon({ ready: false });
    const exit = await d.exit;
    assert.equal(exit.code, EXIT_TRY_AGAIN);
    const line = new RegExp(`cannot connect to PostgreSQL at ${pg.addr}: connection refused \\(still not answering after \\d+s: exiting with status ${EXIT_TRY_AGAIN} to be started again\\)`);
    assert.match(d.stderr, line);
    assert.equal(d.stderr.split("\n").length, 2, d.stderr);
    const logged = readFileSync(t.cfg.logFile!, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(logged.some((l) => l.level === "error" && line.test(l.msg)), "the reason is in the log file");
    assert.ok(logged.filter((l) => /waiting for it to start/.test(l.msg)).length >= 3);
    assert.equal(existsSync(path.join(t.dir, "worker.pid")), false, "the pidfile is removed");
  });

  it("the SysVinit script: start waits until the daemon serves or says what it waits for, status tells the two apart, force-stop re-queues running builds", async () => {
    const redis = await relay(suite.redis.port);
    const t = await suite.env({ redis: redis.addr, logFile: true });
    const pidfile = path.join(t.dir, "worker.pid");
    await fs.writeFile(t.cfg.worker, `pidfile = "${pidfile}"\n${await fs.readFile(t.cfg.worker, "utf8")}`);
    const script = (command: string) =>
      spawnSync("sh", [path.join(repoRoot, "dist", "djinn-worker"), command], {
        env: { ...process.env, DAEMON: cliPath, CONFIG: t.cfg.worker, DRIVER: t.cfg.driver, PIDFILE: pidfile, OUTPUT: path.join(t.dir, "out"), DAEMON_USER: os.userInfo().username, START_TIMEOUT: "3" },
        encoding: "utf8",
        timeout: 60_000,
      });
    try {
      const start = script("start");
      assert.equal(start.status, 1, start.stdout + start.stderr);
      assert.match(start.stderr, /^djinn-worker is not serving after 3s, still waiting for its servers: cannot connect to Redis at 127\.0\.0\.1:\d+: connection refused$/m);
      const waiting = script("status");
      assert.equal(waiting.status, 4, waiting.stdout);
      assert.match(waiting.stdout, /^djinn-worker is running \(pid \d+\) but waiting for its servers: cannot connect to Redis at .*: connection refused$/m);
      await redis.set("open");
      await until("status to say serving", () => (script("status").status === 0 ? true : undefined), 60_000);
      assert.match(script("status").stdout, /^djinn-worker is running \(pid \d+\)\n$/);
      const id = await t.submit(osManifest([["echo started", "sleep 600"]]));
      await until("the build to run", async () => ((await t.build(id)).status === "running" ? true : undefined));
      const stopped = script("force-stop");
      assert.equal(stopped.status, 0, stopped.stdout + stopped.stderr);
      assert.match(stopped.stdout, /^Force-stopping djinn-worker \(pid \d+\): running builds are killed and put back on the queue$/m);
      assert.equal((await t.build(id)).status, "queued", "the running build is put back on the queue");
      assert.equal(existsSync(pidfile), false);
      assert.equal(script("status").status, 3);
    } finally {
      script("force-stop");
    }
  });

  it("a start-up error (metrics port in use) reaches the log file, and the SysVinit script shows it", async () => {
    const taken = net.createServer();
    const port = await freePort();
    await new Promise<void>((r) => taken.listen(port, "127.0.0.1", r));
    try {
      const t = await suite.env({ metrics: `127.0.0.1:${port}`, logFile: true });
      const pidfile = path.join(t.dir, "worker.pid");
      const output = path.join(t.dir, "djinn-worker.out");
      await fs.writeFile(t.cfg.worker, `pidfile = "${pidfile}"\n${await fs.readFile(t.cfg.worker, "utf8")}`);
      // The script as installed, with its paths given through the environment it reads.
      const r = spawnSync("sh", [path.join(repoRoot, "dist", "djinn-worker"), "start"], {
        env: { ...process.env, DAEMON: cliPath, CONFIG: t.cfg.worker, DRIVER: t.cfg.driver, PIDFILE: pidfile, OUTPUT: output, DAEMON_USER: os.userInfo().username },
        encoding: "utf8",
        timeout: 60_000,
      });
      assert.equal(r.status, 1, r.stdout + r.stderr);
      const reason = /metrics: .*127\.0\.0\.1:\d+.*(in use|EADDRINUSE)/i;
      assert.match(r.stderr, /did not start:/);
      assert.match(r.stderr, reason, "the script shows why");
      assert.match(readFileSync(output, "utf8"), reason, "the daemon's stderr is kept");
      await until("the reason in the log file", () => readFileSync(t.cfg.logFile!, "utf8").split("\n").some((l) => reason.test(l) && /"level":"error"/.test(l)) || undefined, 5000);
      assert.equal(existsSync(pidfile), false);
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
  });
});
