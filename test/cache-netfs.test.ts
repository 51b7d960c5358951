// The file cache store on a network filesystem: two stores, each through its own sshfs mount (SFTP
// to an sshd of the suite's own on 127.0.0.1), share one `path`, as two workers sharing a folder
// do. Saves of one key at once leave one whole entry, a reader restoring meanwhile sees a whole
// entry, and eviction by quota works across the mounts.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { HEADER_BYTES } from "../internal/cache/format.js";
import { CacheStore, type SectionSource } from "../internal/cache/store.js";
import { freeLocalPort } from "../internal/net/port.js";
import { requireService, which } from "./helpers/env.js";
import { tarOf } from "./helpers/one-file-tar.js";
import { SFTP_SERVER } from "./helpers/ssh-server.js";

function missing(): string | undefined {
  for (const cmd of ["sshfs", "fusermount", "ssh-keygen"]) if (!which(cmd)) return `${cmd} not found (apt-get install sshfs openssh-server)`;
  if (!existsSync("/usr/sbin/sshd")) return "/usr/sbin/sshd not found (apt-get install openssh-server)";
  if (!SFTP_SERVER) return "sftp-server not found";
  if (!existsSync("/dev/fuse")) return "/dev/fuse is missing";
  if (process.getuid?.() !== 0) return "needs root (sshd logs in as the suite's user)";
  return undefined;
}
const skip = requireService("sshfs", missing());

const section = (bytes: Buffer): SectionSource => ({ base: "workspace", paths: ["deps"], tar: async () => tarOf(bytes) });
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The file the entry of `key` restores, by the store. */
async function restored(store: CacheStore, key: string): Promise<Buffer | undefined> {
  const entry = await store.open("ns", key); // a damaged or half entry throws
  if (!entry) return undefined;
  try {
    const tar = await readAll(entry.sections[0].tar());
    const size = parseInt(tar.subarray(124, 136).toString().replace(/\0.*$/s, ""), 8);
    return tar.subarray(512, 512 + size);
  } finally {
    await entry.close();
  }
}

/** Resolves once `child` writes a line matching `ready` to stderr; rejects if it exits first. */
function readyLine(child: ChildProcess, ready: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = "";
    child.stderr!.on("data", (d: Buffer) => {
      seen += d.toString();
      if (ready.test(seen)) resolve();
    });
    child.once("exit", (code) => reject(new Error(`exited (${code}) before it was ready: ${seen.slice(-2000)}`)));
  });
}

describe("the file cache store on sshfs, shared by two mounts", { skip, timeout: 300_000 }, () => {
  let dir = "";
  let sshd: ChildProcess | undefined;
  const mounts: string[] = [];
  let remote = "";

  before(async () => {
    dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "djinn-cache-netfs-")));
    remote = path.join(dir, "remote");
    await fs.mkdir(remote);
    await fs.mkdir("/run/sshd", { recursive: true, mode: 0o755 });
    for (const key of ["host", "client"]) {
      const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, key)], { encoding: "utf8", timeout: 30_000 });
      assert.equal(r.status, 0, r.stderr);
    }
    await fs.copyFile(path.join(dir, "client.pub"), path.join(dir, "authorized_keys"));
    const port = await freeLocalPort();
    const config = [
      `ListenAddress 127.0.0.1`,
      `Port ${port}`,
      `HostKey ${path.join(dir, "host")}`,
      `AuthorizedKeysFile ${path.join(dir, "authorized_keys")}`,
      `PidFile none`,
      `PermitRootLogin prohibit-password`,
      `PasswordAuthentication no`,
      `KbdInteractiveAuthentication no`,
      `StrictModes no`,
      `UsePAM no`,
      `Subsystem sftp ${SFTP_SERVER}`,
    ].join("\n");
    await fs.writeFile(path.join(dir, "sshd_config"), config + "\n");
    sshd = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", path.join(dir, "sshd_config")], { stdio: ["ignore", "ignore", "pipe"] });
    await readyLine(sshd, /Server listening on 127\.0\.0\.1 port/);
    for (const name of ["a", "b", "c"]) {
      const mount = path.join(dir, `mount-${name}`);
      await fs.mkdir(mount);
      // sshfs returns once mounted (it goes on in the background).
      const r = spawnSync("sshfs", [
        `root@127.0.0.1:${remote}`, mount,
        "-p", String(port),
        "-o", `IdentityFile=${path.join(dir, "client")},IdentitiesOnly=yes,BatchMode=yes,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,LogLevel=ERROR`,
        // What docs/cache.md asks of a shared store on sshfs: no cache of names and attributes.
        "-o", "dir_cache=no,entry_timeout=0,attr_timeout=0,negative_timeout=0",
      ], { encoding: "utf8", timeout: 60_000 });
      assert.equal(r.status, 0, `sshfs: ${r.stderr}`);
      mounts.push(mount);
    }
  });

  after(async () => {
    for (const m of mounts) spawnSync("fusermount", ["-u", "-z", m], { timeout: 30_000 });
    if (sshd && sshd.exitCode === null) {
      const gone = new Promise((r) => sshd!.once("exit", r));
      sshd.kill();
      await gone;
    }
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  test("the mounts are sshfs and show one folder", async () => {
    const mountinfo = await fs.readFile("/proc/self/mounts", "utf8");
    for (const m of mounts) assert.match(mountinfo, new RegExp(` ${m.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} fuse\\.sshfs `));
    await fs.writeFile(path.join(mounts[0], "probe"), "x");
    assert.equal(await fs.readFile(path.join(mounts[1], "probe"), "utf8"), "x");
    await fs.rm(path.join(mounts[1], "probe"));
  });

  test("saves of one key at once through both mounts leave one whole entry; a reader restoring meanwhile sees an old or a new whole one", { timeout: 240_000 }, async () => {
    const root = "store-race";
    // Two workers save; a third only restores, so nothing it does itself refreshes what its mount knows.
    const [a, b, c] = mounts.map((m) => new CacheStore({ root: path.join(m, root) }));
    const first = randomBytes(1 << 20);
    await a.save("ns", "k", [section(first)]);
    // Of different lengths: a reader going by a length it knew before the rename would be caught.
    const contents = Array.from({ length: 8 }, (_, i) => randomBytes((1 << 20) + i * 300_000));
    const whole = new Set([first, ...contents].map(sha));
    let saving = true;
    let reads = 0;
    const reader = (async () => {
      while (saving) {
        const got = await restored(c, "k");
        assert.ok(got, "the entry is there all along: a rename replaces it, never removes it first");
        assert.ok(whole.has(sha(got)), "a whole save");
        reads++;
      }
    })();
    // In rounds of two at once, one through each mount.
    for (let i = 0; i < contents.length; i += 2) await Promise.all([a.save("ns", "k", [section(contents[i])]), b.save("ns", "k", [section(contents[i + 1])])]);
    saving = false;
    await reader;
    assert.ok(reads > 0);
    for (const store of [a, b, c]) {
      assert.deepEqual(await fs.readdir(path.join(store.root, "ns-ns")), ["k.cache"], "one entry, nothing left aside");
      const got = await restored(store, "k");
      assert.ok(got && contents.slice(-2).some((x) => x.equals(got)), "one of the last two saves, whole");
    }
  });

  test("over the quota, a save through one mount evicts the least recently used entries the other saved", async () => {
    const root = "store-quota";
    const entry = HEADER_BYTES + 40_000;
    const a = new CacheStore({ root: path.join(mounts[0], root), quota: 3 * entry });
    const b = new CacheStore({ root: path.join(mounts[1], root), quota: 3 * entry });
    await b.save("ns", "one", [section(randomBytes(30_000))]);
    await b.save("ns", "two", [section(randomBytes(30_000))]);
    await b.save("ns", "three", [section(randomBytes(30_000))]);
    // Told apart here: file times may be coarser than the saves are apart.
    const ago = (s: number) => new Date(Date.now() - s * 1000);
    for (const [key, s] of [["one", 300], ["two", 200], ["three", 100]] as const) await fs.utimes(b.entryPath("ns", key), ago(s), ago(s));
    // "one" restored through the other mount since: "two" is now the least recently used.
    assert.ok(await restored(a, "one"));
    const saved = await a.save("ns", "four", [section(randomBytes(30_000))]);
    assert.deepEqual(saved.evicted, [path.join("ns-ns", "two.cache")]);
    assert.deepEqual((await b.list("ns")).map((e) => e.key).sort(), ["four", "one", "three"]);
    assert.equal(await restored(b, "two"), undefined);
  });
});
