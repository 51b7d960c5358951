// The packaged logrotate file, run by Debian's logrotate: the SysVinit script's OUTPUT (the
// daemon's stdout and stderr) is rotated while the daemon still holds it open for appending.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { repoRoot, requireService, which } from "./helpers/env.js";

const skip = requireService("logrotate", which("logrotate") ? undefined : "logrotate not found (apt-get install logrotate)");
const OUTPUT = "/var/log/djinn-worker.out";

/** The packaged stanza for `file`, pointed at `at`. */
function stanza(file: string, at: string): string {
  const text = fs.readFileSync(path.join(repoRoot, "dist", "djinn-worker.logrotate"), "utf8");
  const start = text.indexOf(`${file} {`);
  assert.ok(start >= 0, `dist/djinn-worker.logrotate has a stanza for ${file}`);
  const end = text.indexOf("\n}", start);
  return text.slice(start, end + 2).replace(file, at) + "\n";
}

describe("logrotate: the SysVinit script's output file", { skip }, () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-logrotate-"));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("is rotated under a writer that keeps it open, which goes on writing into the live file", () => {
    const output = path.join(dir, "djinn-worker.out");
    const conf = path.join(dir, "logrotate.conf");
    fs.writeFileSync(conf, stanza(OUTPUT, output));
    // As the init script's `>>`: one descriptor opened for appending, never reopened.
    assert.match(fs.readFileSync(path.join(repoRoot, "dist", "djinn-worker"), "utf8"), />>"\$OUTPUT" 2>&1/, "the SysVinit script appends to OUTPUT");
    const fd = fs.openSync(output, "a");
    try {
      fs.writeSync(fd, "started\n");
      const r = spawnSync("logrotate", ["--force", "--state", path.join(dir, "state"), conf], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      fs.writeSync(fd, "after the rotation\n");
    } finally {
      fs.closeSync(fd);
    }
    assert.equal(fs.readFileSync(`${output}.1`, "utf8"), "started\n", "what was written before is kept in the rotated file");
    assert.equal(fs.readFileSync(output, "utf8"), "after the rotation\n", "the live file holds only what came after, with no gap of NUL bytes");
  });
});
