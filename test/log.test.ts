import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { createLogger } from "../internal/log/log.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-log-test-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("logging", () => {
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
    assert.equal(lines[0].level, 30);
    assert.equal(lines[1].level, 50);
    const raw = fs.readFileSync(file, "utf8");
    assert.ok(!raw.includes("smtp-pass-123") && !raw.includes("pg-pass-456"), raw);
  });

  test("log.level error drops info", () => {
    const file = path.join(dir, "errors.log");
    const log = createLogger({ log: { level: "error", file } });
    log.info("quiet");
    log.error("loud");
    log.flush();
    assert.deepEqual(fs.readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l).msg), ["loud"]);
  });
});
