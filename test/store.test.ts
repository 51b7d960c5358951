import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { after, describe, test } from "node:test";
import { confinedPath } from "../internal/fs/confine.js";
import { ArtifactStore, ArtifactWriteError, ObjectStore, StoreError } from "../internal/fs/store.js";

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

  test("a name stored twice by one store (one build) is kept apart, never overwritten; a failed write frees its name", async () => {
    const store = new ArtifactStore(path.join(dir, "art-dup"));
    fs.mkdirSync(store.root, { recursive: true });
    const put = async (name: string, data: string) => {
      const a = await store.put(name, Readable.from([Buffer.from(data)]));
      assert.equal(fs.readFileSync(a.path, "utf8"), data);
      return [a.name, a.requested];
    };
    assert.deepEqual(await put("dist/app.tar.gz", "1"), ["dist/app.tar.gz", undefined]);
    assert.deepEqual(await put("dist/app.tar.gz", "2"), ["dist/app-2.tar.gz", "dist/app.tar.gz"]);
    // The same file however the name is written.
    assert.deepEqual(await put("dist/.//app.tar.gz", "3"), ["dist/app-3.tar.gz", "dist/.//app.tar.gz"]);
    assert.deepEqual(await put(".env", "a"), [".env", undefined]);
    assert.deepEqual(await put(".env", "b"), [".env-2", ".env"]);
    const broken = new Readable({
      read() {
        this.destroy(new Error("connection lost"));
      },
    });
    await assert.rejects(store.put("log", broken), (err: Error) => !(err instanceof ArtifactWriteError) && /connection lost/.test(err.message));
    assert.deepEqual(await put("log", "kept"), ["log", undefined]);
    // A name that clashes with a stored file is the name's fault, not the disk's.
    await assert.rejects(store.put("log/inner", Readable.from(["x"])), (err: Error) => err instanceof StoreError && !(err instanceof ArtifactWriteError) && /clashes with what the store holds \((ENOTDIR|EEXIST)\)/.test(err.message));
    assert.deepEqual(fs.readdirSync(path.join(store.root, "dist")).sort(), ["app-2.tar.gz", "app-3.tar.gz", "app.tar.gz"]);
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
