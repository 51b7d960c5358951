import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { after, describe, test } from "node:test";
import { createLogger, deferredLogger, reopenLog } from "../internal/log/log.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-log-test-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("logging", () => {
  test("a deferred logger is made at its first line at or above its level, once, and writes that line", () => {
    const file = path.join(dir, "deferred.log");
    let made = 0;
    const log = deferredLogger("info", () => (made++, createLogger({ log: { level: "info", file } })));
    log.debug("below the level");
    log.trace("below the level");
    assert.equal(made, 0, "a line below the level made the logger");
    log.warn({ n: 1 }, "first");
    log.info("second");
    assert.equal(made, 1);
    log.debug("quiet still");
    const lines = fs.readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => [l.level, l.msg]), [["warn", "first"], ["info", "second"]]);
    assert.equal(lines[0].n, 1);
  });

  test("a log file that cannot be reopened on SIGHUP is logged and logging goes on to the old one", async () => {
    const sub = path.join(dir, "reopen");
    const file = path.join(sub, "worker.log");
    const log = createLogger({ log: { level: "info", file } });
    log.info("before");
    const moved = path.join(dir, "reopen-moved");
    fs.renameSync(sub, moved);
    fs.writeFileSync(sub, ""); // a file where the directory was
    reopenLog(log);
    log.info("after");
    await new Promise((r) => setImmediate(r)); // the error event of the failed reopen comes on the next tick
    log.info("still alive");
    const lines = fs.readFileSync(path.join(moved, "worker.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.msg), ["before", "cannot reopen the log file: still writing to the one opened before", "after", "still alive"]);
    assert.equal(lines[1].file, file);
    assert.equal(lines[1].err, "EEXIST");
  });

  test("a log file that cannot be opened is a configuration error in one line, naming key and path", () => {
    const plain = path.join(dir, "plain-file");
    fs.writeFileSync(plain, "");
    const file = path.join(plain, "worker.log");
    assert.throws(
      () => createLogger({ file: "/etc/djinn/worker.toml", log: { level: "info", file } }),
      (err: Error) => err.name === "ConfigError" && err.message === `/etc/djinn/worker.toml: log.file: cannot open ${JSON.stringify(file)}: a directory on its path is a file`,
    );
  });

  test("log.file gets JSON lines at log.level, with secrets redacted", () => {
    const file = path.join(dir, "sub", "worker.log");
    const log = createLogger({ log: { level: "info", file } });
    log.debug("not at info");
    log.info({ build: 7, smtp: { password: "smtp-pass-123" }, password: "pg-pass-456" }, "build started");
    log.error("something failed");
    log.flush();
    const lines = fs.readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines.length, 2);
    assert.equal(lines[0].msg, "build started");
    assert.equal(lines[0].build, 7);
    assert.equal(lines[0].level, "info");
    assert.equal(lines[1].level, "error");
    assert.match(lines[0].time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, "an ISO time, not epoch milliseconds");
    const raw = fs.readFileSync(file, "utf8");
    assert.ok(!raw.includes("smtp-pass-123") && !raw.includes("pg-pass-456"), raw);
  });

  for (const to of ["file", "stdout"] as const) {
    test(`each line is written (to the ${to}) before the call returns: a process killed right after loses none`, () => {
      const file = path.join(dir, `killed-${to}.log`);
      const logModule = new URL("../internal/log/log.js", import.meta.url).href;
      // 2,000 lines, then SIGKILL from inside: nothing runs after the last call, no flush, no exit handler.
      const script = `const { createLogger } = await import(${JSON.stringify(logModule)});
        const log = createLogger({ log: { level: "info"${to === "file" ? `, file: ${JSON.stringify(file)}` : ""} } }, { pretty: false });
        for (let i = 1; i <= 2000; i++) log.info({ i }, "line");
        process.kill(process.pid, "SIGKILL");`;
      const out = fs.openSync(path.join(dir, `killed-${to}.out`), "w");
      const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", out, "pipe"] });
      fs.closeSync(out);
      assert.equal(r.signal, "SIGKILL", r.stderr?.toString());
      const text = fs.readFileSync(to === "file" ? file : path.join(dir, `killed-${to}.out`), "utf8");
      const lines = text.trim().split("\n").map((l) => JSON.parse(l));
      assert.equal(lines.length, 2000);
      assert.equal(lines[1999].i, 2000);
    });
  }

  test("log.level error drops info", () => {
    const file = path.join(dir, "errors.log");
    const log = createLogger({ log: { level: "error", file } });
    log.info("quiet");
    log.error("loud");
    log.flush();
    assert.deepEqual(fs.readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l).msg), ["loud"]);
  });
});
