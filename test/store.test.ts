import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { after, describe, test } from "node:test";
import { confinedPath } from "../internal/fs/confine.js";
import { ArtifactStore, ObjectStore, StoreError } from "../internal/fs/store.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-store-test-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("stores", () => {
  test("names can never reach outside the store", () => {
    const root = path.join(dir, "root");
    for (const bad of ["../x", "/etc/passwd", "a/../../x", "", "a/\0b", ".", "a/.."]) {
      assert.throws(() => confinedPath(root, bad), /store|name/, bad);
    }
    assert.equal(confinedPath(root, "a/b.txt"), path.join(root, "a/b.txt"));
  });

  test("an artifact over the limit is cut to exactly the limit", async () => {
    const store = new ArtifactStore(path.join(dir, "art1"), 1000);
    fs.mkdirSync(store.root, { recursive: true });
    const big = await store.put("big.bin", Readable.from([Buffer.alloc(600, 1), Buffer.alloc(600, 2), Buffer.alloc(5000, 3)]));
    assert.equal(big.truncated, true);
    assert.equal(big.size, 1000);
    assert.equal(fs.statSync(big.path).size, 1000);
    const exact = await store.put("exact.bin", Readable.from([Buffer.alloc(1000, 7)]));
    assert.equal(exact.truncated, false);
    assert.equal(exact.size, 1000);
    assert.match(exact.sha256, /^[0-9a-f]{64}$/);
  });

  test("limit 0 means no limit, and a failed stream leaves nothing half written", async () => {
    const store = new ArtifactStore(path.join(dir, "art2"), 0);
    fs.mkdirSync(store.root, { recursive: true });
    const ok = await store.put("sub/dir/a.txt", Readable.from([Buffer.alloc(70_000, 65)]));
    assert.equal(ok.size, 70_000);
    const failing = new Readable({
      read() {
        this.push(Buffer.from("partial"));
        this.destroy(new Error("connection lost"));
      },
    });
    await assert.rejects(store.put("broken.txt", failing), /connection lost/);
    assert.deepEqual(fs.readdirSync(store.root).sort(), ["sub"]);
  });

  test("an artifact name cannot follow a symlink out of the store", async () => {
    const root = path.join(dir, "art3");
    fs.mkdirSync(root, { recursive: true });
    fs.mkdirSync(path.join(dir, "elsewhere"), { recursive: true });
    fs.symlinkSync(path.join(dir, "elsewhere"), path.join(root, "link"));
    await assert.rejects(new ArtifactStore(root).put("link/x.txt", Readable.from(["x"])), (err: Error) => err instanceof StoreError && /outside the store/.test(err.message));
    assert.deepEqual(fs.readdirSync(path.join(dir, "elsewhere")), []);
  });

  test("objects are streamed from the store; escaping names and symlinks are refused", async () => {
    const root = path.join(dir, "objects");
    fs.mkdirSync(root, { recursive: true });
    fs.writeFileSync(path.join(root, "key.pem"), "object bytes");
    fs.symlinkSync("/etc/passwd", path.join(root, "passwd"));
    const store = new ObjectStore(root);
    const { stream, size } = await store.open("key.pem");
    assert.equal(size, 12);
    assert.equal(await text(stream), "object bytes");
    await assert.rejects(store.open("passwd"), /links outside the store/);
    await assert.rejects(store.open("../etc/passwd"), (err: Error) => err instanceof StoreError && /outside the store/.test(err.message));
    await assert.rejects(store.open("/etc/passwd"), /absolute/);
    await assert.rejects(store.open("missing"), /not found/);
  });
});
