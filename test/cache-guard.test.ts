// What a restored cache may write (internal/cache/guard.ts), without a driver: entries that would
// land outside the directory they are unpacked into are left out and named, whatever the tar's
// format (ustar, pax, GNU long names) and however the stream is cut; what belongs passes unchanged;
// a stream the guard cannot read as tar readers do fails. Then the host's GNU tar unpacks what
// passed, and nothing is found outside.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { after, describe, test } from "node:test";
import { leadsOut, TarGuard, TarGuardError } from "../internal/cache/guard.js";
import { CacheStore } from "../internal/cache/store.js";
import { hostileTar } from "./helpers/hostile-tar.js";

const dir = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-cache-guard-"));
after(() => fs.rm(dir, { recursive: true, force: true }));

function inPieces(bytes: Buffer, piece: number): Readable {
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += piece) chunks.push(bytes.subarray(at, at + piece));
  return Readable.from(chunks);
}

async function guarded(bytes: Buffer, piece = 65536): Promise<{ out: Buffer; refused: string[] }> {
  const guard = new TarGuard();
  const out = await buffer(inPieces(bytes, piece).pipe(guard));
  return { out, refused: guard.refused.map((r) => r.replace(/ \(.*\)$/, "")) };
}

/** Every file and link under `root`, relative to it. */
async function tree(root: string): Promise<string[]> {
  return (await fs.readdir(root, { recursive: true })).map(String).sort();
}

describe("a restored cache writes only under its base", () => {
  test("names leading out, hard links to them and files beneath the archive's own symlinks are left out and named, in any pieces; GNU tar then writes nothing outside", async () => {
    const root = await fs.mkdtemp(path.join(dir, "t-"));
    const outside = path.join(root, "outside");
    const ws = path.join(root, "outer", "ws");
    await fs.mkdir(outside);
    await fs.mkdir(ws, { recursive: true });
    const hostile = await hostileTar(outside, "ESCAPED");
    let first: Buffer | undefined;
    for (const piece of [1, 7, 512, 513, 1 << 20]) {
      const { out, refused } = await guarded(hostile.bytes, piece);
      assert.deepEqual(refused, hostile.refused, `pieces of ${piece}`);
      if (first) assert.ok(out.equals(first), `the same stream in pieces of ${piece}`);
      first ??= out;
    }
    const r = spawnSync("tar", ["-x", "-f", "-", "-C", ws], { input: first });
    assert.equal(r.status, 0, r.stderr.toString());
    assert.deepEqual(await fs.readdir(outside), [], "nothing written where the absolute symlink points");
    assert.deepEqual(await fs.readdir(path.join(root, "outer")), ["ws"], "nothing written beside the workspace");
    assert.ok(!(await tree(root)).some((f) => f.includes("ESCAPED")), "no escaping name anywhere");
    // What belongs is all there: the file, the long name, the hard link and both symlinks as links.
    assert.equal(await fs.readFile(path.join(ws, "deps/ok"), "utf8"), "ok\n");
    assert.equal(await fs.readFile(path.join(ws, "deps", "l".repeat(150)), "utf8"), "long\n");
    assert.equal((await fs.stat(path.join(ws, "deps/hard"))).ino, (await fs.stat(path.join(ws, "deps/ok"))).ino);
    assert.equal(await fs.readlink(path.join(ws, "deps/abs")), outside);
    assert.equal(await fs.readlink(path.join(ws, "deps/up")), "../..");
    assert.equal(await fs.readFile(path.join(ws, "deps/after"), "utf8"), "after\n");
  });

  test("GNU long names and long links (as GNU tar writes them) that climb out are left out with their headers; an archive of a real tree passes byte for byte", async () => {
    const src = await fs.mkdtemp(path.join(dir, "gnu-"));
    await fs.mkdir(path.join(src, "deps", "sub"), { recursive: true });
    await fs.writeFile(path.join(src, "deps", "sub", "f".repeat(120)), "long\n");
    await fs.writeFile(path.join(src, "deps", "bad"), "bad\n");
    await fs.symlink("/usr/bin/python3", path.join(src, "deps", "python"));
    await fs.link(path.join(src, "deps", "bad"), path.join(src, "deps", "hard"));
    const plain = spawnSync("tar", ["-c", "--format=gnu", "-f", "-", "-C", src, "deps"]).stdout;
    const { out, refused } = await guarded(plain, 100);
    assert.deepEqual(refused, []);
    // Unchanged up to the archive's two end blocks; the padding after them is not read.
    assert.ok(out.equals(plain.subarray(0, out.length)), "a real tree passes unchanged");
    assert.ok(plain.subarray(out.length - 1024).every((b) => b === 0), "only zeros left out");
    const climbing = `../${"x".repeat(120)}`;
    const hostile = spawnSync("tar", ["-c", "--format=gnu", "-P", `--transform=s,^deps/bad$,${climbing},`, "-f", "-", "-C", src, "deps"]).stdout;
    const listed = spawnSync("tar", ["-t", "-P", "-f", "-"], { input: hostile }).stdout.toString();
    assert.ok(listed.includes(climbing), "the archive does hold the climbing long name");
    const g = await guarded(hostile, 300);
    // The hard link to it now names it too, by a GNU long-link header.
    assert.deepEqual(g.refused, [climbing, "deps/hard"]);
    const ws = await fs.mkdtemp(path.join(dir, "gnu-ws-"));
    const r = spawnSync("tar", ["-x", "-f", "-", "-C", ws], { input: g.out });
    assert.equal(r.status, 0, r.stderr.toString());
    assert.ok((await tree(ws)).includes(path.join("deps", "sub", "f".repeat(120))));
    assert.ok(!(await tree(path.dirname(ws))).some((f) => f.includes("x".repeat(120))));
  });

  test("what the guard cannot read as tar readers do fails the stream: a wrong checksum, a symlink with data, a sparse member, an archive cut inside a member", async () => {
    const src = await fs.mkdtemp(path.join(dir, "bad-"));
    await fs.writeFile(path.join(src, "f"), "x".repeat(2000));
    const good = spawnSync("tar", ["-c", "-f", "-", "-C", src, "f"]).stdout;
    const damaged = Buffer.from(good);
    damaged[10] ^= 1;
    await assert.rejects(guarded(damaged), (err: Error) => err instanceof TarGuardError && /checksum/.test(err.message));
    const withData = Buffer.from(good);
    withData[156] = "2".charCodeAt(0);
    rechecksum(withData);
    await assert.rejects(guarded(withData), /link or special file with data after it/);
    const sparse = Buffer.from(good);
    sparse[156] = "S".charCodeAt(0);
    rechecksum(sparse);
    await assert.rejects(guarded(sparse), /tar type "S"/);
    await assert.rejects(guarded(good.subarray(0, 1024)), /ends inside a member/);
  });

  test("a reader that stops early (a tar leaving at the archive's end) leaves the entry's file to the entry: closing it then does not fail", async () => {
    const src = await fs.mkdtemp(path.join(dir, "early-"));
    await fs.writeFile(path.join(src, "big"), randomBytes(8 << 20));
    const store = new CacheStore({ root: path.join(dir, "early-store") });
    await store.save(undefined, "k", [{ base: "workspace", paths: ["big"], tar: async () => Readable.from([spawnSync("tar", ["-c", "-f", "-", "-C", src, "big"], { maxBuffer: 16 << 20 }).stdout]) }]);
    const entry = await store.open(undefined, "k");
    const tar = entry!.sections[0].tar();
    await once(tar, "readable");
    tar.destroy();
    await once(tar, "close");
    // No event says a descriptor was left open: a moment lets a wrongly destroyed file stream close it (with pipeline it did, every time).
    await new Promise((r) => setTimeout(r, 200));
    await entry!.close();
  });

  test("leadsOut: absolute names and `..` parts, not names that merely contain dots", () => {
    for (const n of ["/etc/passwd", "../x", "a/../../x", "a/..", ".."]) assert.equal(leadsOut(n), true, n);
    for (const n of ["a/b", "./a", "a..b/c", "..a", "a/...", ""]) assert.equal(leadsOut(n), false, n);
  });
});

/** Sets a header block's checksum for its present bytes. */
function rechecksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += block[i];
  block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
}
