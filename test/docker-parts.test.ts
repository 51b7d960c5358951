// The docker driver's pure parts, with no engine: container settings and what the engine is asked
// for, the exec stream demuxer, progress streams, and the archives of the copy API.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, test } from "node:test";
import type { DockerConfig } from "../internal/config/config.js";
import { DriverError } from "../internal/driver/driver.js";
import { dockerClient, unreachableReason } from "../internal/driver/docker/engine.js";
import { buildLabels, containerOptions, containerSettings, describeLimits, jobCommand, LABEL_BUILD, LABEL_RUN, MAX_INLINE_SCRIPT, repositoryAndTag, resourceName } from "../internal/driver/docker/settings.js";
import { imageReferenceProblem } from "../internal/driver/docker/reference.js";
import { capture, Demux, followProgress } from "../internal/driver/docker/streams.js";
import { openFirstEntry, singleFileTar } from "../internal/driver/docker/tar.js";
import { directoryHeaders, TarPrefixer } from "../internal/driver/docker/rename.js";

function sha256(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

const config = (overrides: Partial<DockerConfig> = {}): DockerConfig => ({ host: "unix:///nowhere.sock", pull: "if-not-present", network: "", ...overrides });

describe("docker container settings", () => {
  test("defaults: the /workspace, no limits, the bridge network", () => {
    assert.deepEqual(containerSettings({ image: " debian:bookworm " }, config()), { image: "debian:bookworm", workspace: "/workspace", cpus: 0, memoryMb: 0, pids: 1024, network: "bridge" });
    assert.equal(containerSettings({ image: "a", workspace: "/src/app" }, config()).workspace, "/src/app");
  });

  test("image references follow Docker's grammar; anything else is refused before it reaches the engine", () => {
    for (const ok of ["busybox", "debian:bookworm", "registry:5000/team/app:1.2", "ghcr.io/a/b-c_d.e:v1", `x@sha256:${"a".repeat(64)}`]) {
      assert.equal(containerSettings({ image: ok }, config()).image, ok);
    }
    assert.throws(() => containerSettings({}, config()), /^DriverError: driver.image: required by the docker driver$/);
    for (const bad of ["UPPER", "team/App", "../../etc/passwd", "a b", "a:", "a/../b", `a:${"t".repeat(129)}`, `${"a".repeat(256)}`]) {
      assert.throws(() => containerSettings({ image: bad }, config()), (err: Error) => err instanceof DriverError && /is not an image reference/.test(err.message), bad);
    }
  });

  test("a workspace must be an absolute path other than /", () => {
    for (const bad of ["workspace", "/", "/a/../b", "/a\nb"]) {
      assert.throws(() => containerSettings({ image: "a", workspace: bad }, config()), /driver.workspace: expected an absolute path other than \//, JSON.stringify(bad));
    }
  });

  test("cpus and memory: parsed, defaulted from driver.toml and held to its maxima", () => {
    const settings = (manifest: Record<string, string>, c: Partial<DockerConfig>) => containerSettings({ image: "a", ...manifest }, config(c));
    assert.deepEqual([settings({ cpus: "0.5", memory: "2g" }, {}).cpus, settings({ memory: "2g" }, {}).memoryMb, settings({ memory: "512m" }, {}).memoryMb, settings({ memory: "300" }, {}).memoryMb], [0.5, 2048, 512, 300]);
    assert.deepEqual([settings({}, { cpus: 2, memory: 512 }).cpus, settings({}, { cpus: 2, memory: 512 }).memoryMb], [2, 512]);
    // A default above the maximum is capped; with only a maximum, the maximum is the limit.
    assert.equal(settings({}, { memory: 1024, max_memory: 256 }).memoryMb, 256);
    assert.equal(settings({}, { max_cpus: 3 }).cpus, 3);
    assert.equal(settings({ memory: "256" }, { max_memory: 256 }).memoryMb, 256);
    assert.throws(() => settings({ memory: "2g" }, { memory: 128, max_memory: 256 }), /^DriverError: driver.memory: 2048 MB is more than this worker allows \(max_memory = 256 MB\)$/);
    assert.throws(() => settings({ cpus: "4" }, { max_cpus: 2 }), /^DriverError: driver.cpus: 4 is more than this worker allows \(max_cpus = 2\)$/);
    for (const bad of ["0", "-1", "two", ""]) assert.throws(() => settings({ cpus: bad }, {}), /driver.cpus: expected a number of CPUs/, bad);
    for (const bad of ["0", "1t", "lots", "-5m"]) assert.throws(() => settings({ memory: bad }, {}), /driver.memory: expected megabytes/, bad);
  });

  test("a CPU request below the engine's floor is refused, not turned into no limit", () => {
    const settings = (cpus: string) => containerSettings({ image: "a", cpus }, config({ max_cpus: 2 }));
    assert.throws(() => settings("0.0000000001"), /^DriverError: driver.cpus: 0.0000000001 is less than the least a container can be given \(0.01\)$/);
    assert.throws(() => settings("0.009"), /is less than the least a container can be given/);
    const floor = containerOptions(settings("0.01"), { name: "n", volume: "v", labels: {}, env: [] }).HostConfig!;
    assert.equal(floor.NanoCpus, 10_000_000);
  });

  test("pids: every container has a limit, defaulted from driver.toml and held to max_pids", () => {
    const settings = (manifest: Record<string, string>, c: Partial<DockerConfig>) => containerSettings({ image: "a", ...manifest }, config(c));
    const pidsLimit = (s: ReturnType<typeof settings>) => containerOptions(s, { name: "n", volume: "v", labels: {}, env: [] }).HostConfig!.PidsLimit;
    assert.equal(pidsLimit(settings({}, {})), 1024);
    assert.equal(pidsLimit(settings({}, { pids: 64 })), 64);
    assert.equal(pidsLimit(settings({}, { pids: 4096, max_pids: 512 })), 512);
    assert.equal(pidsLimit(settings({ pids: "200" }, { pids: 64, max_pids: 256 })), 200);
    assert.throws(() => settings({ pids: "5000" }, { max_pids: 256 }), /^DriverError: driver.pids: 5000 processes is more than this worker allows \(max_pids = 256 processes\)$/);
    for (const bad of ["0", "-1", "1.5", "many", ""]) assert.throws(() => settings({ pids: bad }, {}), /driver.pids: expected a number of processes/, bad);
    assert.equal(describeLimits(settings({}, { pids: 64 })), "no CPU limit, no memory limit, 64 processes, network bridge");
  });

  test("the API version reaches requests only as v1.NN", () => {
    assert.equal((dockerClient(config({ version: "1.41" })).modem as unknown as { version: string }).version, "v1.41");
    assert.throws(() => dockerClient(config({ version: "../../127.0.0.1:18777/steal" })), /^DriverError: \[docker\] version "..\/..\/127.0.0.1:18777\/steal": must be a Docker API version such as "1.41"$/);
  });

  test("the container asked for: limited, swapless, unprivileged, with only the build's volume", () => {
    const settings = containerSettings({ image: "team/app:1", cpus: "1.5", memory: "64", workspace: "/src" }, config({ network: "none" }));
    const labels = buildLabels({ buildId: "b-1", run: "0123456789abcdef" });
    assert.equal(labels[LABEL_BUILD], "b-1");
    assert.equal(labels[LABEL_RUN], "0123456789abcdef");
    const options = containerOptions(settings, { name: "djinn-x", volume: "vol-x", labels, env: ["CI=true"] });
    assert.equal(options.Image, "team/app:1");
    assert.equal(options.WorkingDir, "/src");
    assert.deepEqual(options.Labels, labels);
    assert.deepEqual(options.Env, ["CI=true"]);
    const host = options.HostConfig!;
    assert.deepEqual(host.Mounts, [{ Type: "volume", Source: "vol-x", Target: "/src" }]);
    assert.equal(host.NanoCpus, 1_500_000_000);
    assert.equal(host.Memory, 64 * 1024 * 1024);
    assert.equal(host.MemorySwap, host.Memory);
    assert.equal(host.NetworkMode, "none");
    assert.equal(host.Privileged, false);
    assert.deepEqual(host.Binds, []);
    assert.equal(containerOptions(containerSettings({ image: "a" }, config()), { name: "n", volume: "v", labels, env: [] }).HostConfig!.MemorySwap, 0);
    assert.equal(describeLimits(settings), "1.5 CPUs, 64 MB memory, 1024 processes, network none");
    assert.equal(describeLimits(containerSettings({ image: "a" }, config())), "no CPU limit, no memory limit, 1024 processes, network bridge");
  });

  test("names, tags and job commands", () => {
    assert.equal(resourceName("build/1 ü", "abcd"), "djinn-build_1__-abcd");
    assert.equal(resourceName("x".repeat(100), "ab").length, "djinn-".length + 64 + "-ab".length);
    assert.deepEqual(repositoryAndTag("registry:5000/team/app"), { repo: "registry:5000/team/app", tag: "latest" });
    assert.deepEqual(repositoryAndTag("registry:5000/team/app:1.2"), { repo: "registry:5000/team/app", tag: "1.2" });
    assert.deepEqual(jobCommand("echo hi", "/.djinn/job-1.sh"), { cmd: ["/bin/sh", "-c", "exec 2>&1\necho hi"], inline: true });
    const long = "x".repeat(MAX_INLINE_SCRIPT + 1);
    assert.deepEqual(jobCommand(long, "/.djinn/job-1.sh"), { cmd: ["/bin/sh", "-c", 'exec 2>&1; exec /bin/sh "$0"', "/.djinn/job-1.sh"], inline: false });
  });
});

/** One frame of Docker's multiplexed stream: stream id, three zero bytes, big-endian length, payload. */
function frame(streamId: 1 | 2, payload: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header[0] = streamId;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

async function demux(chunks: Buffer[]): Promise<Buffer> {
  return buffer(Readable.from(chunks).pipe(new Demux()));
}

describe("docker engine errors", () => {
  test("a socket this user may not open says how to get access; other failures say only what happened", () => {
    const user = os.userInfo().username;
    const denied = Object.assign(new Error("connect EACCES /var/run/docker.sock"), { code: "EACCES", errno: -13, syscall: "connect" });
    assert.equal(unreachableReason(denied, "unix:///var/run/docker.sock"), `permission denied: ${user} may not use the socket; add ${user} to the socket's group (adduser ${user} docker) and start the worker again`);
    assert.equal(unreachableReason(denied, "tcp://10.0.0.5:2375"), "permission denied");
    const refused = Object.assign(new Error("connect ECONNREFUSED /var/run/docker.sock"), { code: "ECONNREFUSED" });
    assert.equal(unreachableReason(refused, "unix:///var/run/docker.sock"), "connection refused");
  });
});

describe("docker image references", () => {
  test("what the engine accepts passes; what it refuses is said in one line", () => {
    for (const ok of ["debian", "debian:12", "library/debian:bookworm-slim", "registry.example.com:5000/team/app:1.2.3", "localhost/app", "Registry.Example.com/app", "a__b/c-d.e_f", "busybox@sha256:" + "a".repeat(64), "app:v1@sha256:" + "0".repeat(64), "[::1]:5000/app:x"]) {
      assert.equal(imageReferenceProblem(ok), undefined, ok);
    }
    assert.match(imageReferenceProblem("Team/App:Latest!")!, /^"Team\/App:Latest!" is not an image reference the Docker Engine accepts .*: repository names are lower case$/);
    for (const bad of ["", "debian:", ":12", "app:-x", "app:" + "t".repeat(129), "a/-b", "a//b", "app@sha256:abc", "UPPER", "with space", "x..y", "a:b:c"]) {
      assert.notEqual(imageReferenceProblem(bad), undefined, bad);
    }
    assert.match(imageReferenceProblem("a/" + "b".repeat(260))!, /longer than 255 characters/);
  });
});

describe("docker streams", () => {
  const payloads = [Buffer.from("out: hello\n"), Buffer.alloc(0), Buffer.from("+ trace\n"), randomBytes(300), Buffer.from("ü€\n")];
  const wire = Buffer.concat(payloads.map((p, i) => frame(i % 2 ? 2 : 1, p)));
  const expected = Buffer.concat(payloads);

  test("the demuxer gives the payloads in order, whatever the chunking", async () => {
    assert.deepEqual(await demux([wire]), expected);
    for (let at = 0; at <= wire.length; at++) {
      assert.deepEqual(await demux([wire.subarray(0, at), wire.subarray(at)]), expected, `split at byte ${at}`);
    }
    assert.deepEqual(await demux([...wire].map((b) => Buffer.from([b]))), expected, "one byte at a time");
  });

  test("a stream cut inside a frame header gives what came before it", async () => {
    assert.deepEqual(await demux([frame(1, Buffer.from("whole")), Buffer.from([1, 0, 0])]), Buffer.from("whole"));
  });

  test("progress: the engine's messages are followed across chunks, and its error is thrown", async () => {
    const seen: unknown[] = [];
    const lines = await followProgress(Readable.from(['{"stream":"Loaded image: a:1\\n"}\n{"sta', 'tus":"Digest: sha256:1"}\nnot json\n', '{"stream":"last"}']), (m) => seen.push(m.status));
    assert.deepEqual(lines, ["Loaded image: a:1", "last"]);
    assert.deepEqual(seen, [undefined, "Digest: sha256:1", undefined]);
    await assert.rejects(followProgress(Readable.from(['{"status":"Pulling"}\n{"errorDetail":{"message":"manifest unknown"},"error":"x"}\n'])), /^Error: manifest unknown$/);
    await assert.rejects(followProgress(Readable.from(['{"error":"denied"}'])), /^Error: denied$/);
  });

  test("capture keeps what is written to it", async () => {
    const { sink, text } = capture();
    sink.write("ke");
    sink.end("pt");
    await new Promise((r) => sink.once("finish", r));
    assert.equal(text(), "kept");
  });
});

describe("docker archives", () => {
  const data = randomBytes(70_001);
  const longName = `dir/${"ü".repeat(80)}-${"n".repeat(60)}.bin`;

  test("a single-file archive with its directories reads back with tar(1) and with openFirstEntry", async () => {
    const archive = await buffer(singleFileTar({ dirs: ["dir"], name: longName, mode: 0o640, size: data.length, source: Readable.from([data.subarray(0, 1000), data.subarray(1000)]) }));
    assert.equal(archive.length % 512, 0);
    const listed = spawnSync("tar", ["-tvf", "-"], { input: archive, encoding: "utf8" });
    assert.equal(listed.status, 0, listed.stderr);
    const lines = listed.stdout.trim().split("\n");
    assert.match(lines[0]!, /^drwxr-xr-x root\/root .* dir\/$/);
    assert.match(lines[1]!, new RegExp(`^-rw-r----- root/root +70001 .* ${longName}$`));
    const extracted = spawnSync("tar", ["-xOf", "-", longName], { input: archive, maxBuffer: 1 << 20 });
    assert.equal(sha256(extracted.stdout), sha256(data));

    const fileOnly = await buffer(singleFileTar({ dirs: [], name: longName, mode: 0o644, size: data.length, source: Readable.from([data]) }));
    const { entry, body } = await openFirstEntry(Readable.from([fileOnly.subarray(0, 700), fileOnly.subarray(700)]));
    assert.deepEqual(entry, { name: longName, type: "file", size: data.length, linkName: "" });
    assert.equal(sha256(await buffer(body)), sha256(data));
  });

  test("a source that gives fewer or more bytes than announced fails the archive", async () => {
    await assert.rejects(buffer(singleFileTar({ dirs: [], name: "a", mode: 0o644, size: 10, source: Readable.from([Buffer.alloc(5)]) })), /ended after 5 of the 10 bytes/);
    await assert.rejects(buffer(singleFileTar({ dirs: [], name: "a", mode: 0o644, size: 3, source: Readable.from([Buffer.alloc(5)]) })), /more than the 3 bytes/);
  });

  test("an archive read partly, then dropped, stops its source", { timeout: 10_000 }, async () => {
    const source = Readable.from((function* () {
      for (let i = 0; i < 1000; i++) yield Buffer.alloc(65536, i);
    })());
    const archive = singleFileTar({ dirs: [], name: "big", mode: 0o644, size: 1000 * 65536, source });
    for await (const _ of archive) break;
    await new Promise((r) => source.once("close", r));
    assert.ok(source.destroyed);
  });

  test("a symlink is opened as one, and a body dropped early ends the archive stream", { timeout: 10_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-tar-test-"));
    try {
      fs.symlinkSync("/etc/passwd", path.join(dir, "link"));
      fs.writeFileSync(path.join(dir, "big"), randomBytes(1 << 20));
      const tarOf = (name: string) => spawnSync("tar", ["-C", dir, "-cf", "-", name], { maxBuffer: 4 << 20 }).stdout;
      const link = await openFirstEntry(Readable.from([tarOf("link")]));
      assert.deepEqual(link.entry, { name: "link", type: "symlink", size: 0, linkName: "/etc/passwd" });
      assert.equal((await buffer(link.body)).length, 0);

      const big = tarOf("big");
      const archive = Readable.from((function* () {
        for (let at = 0; at < big.length; at += 4096) yield big.subarray(at, at + 4096);
      })());
      const { body } = await openFirstEntry(archive);
      for await (const _ of body) break;
      await new Promise((r) => (archive.destroyed ? r(undefined) : archive.once("close", r)));
      assert.ok(archive.destroyed);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a damaged, empty or cut archive is refused", async () => {
    const archive = await buffer(singleFileTar({ dirs: [], name: "a", mode: 0o644, size: 1000, source: Readable.from([Buffer.alloc(1000, 1)]) }));
    const damaged = Buffer.from(archive);
    damaged[0] ^= 0xff;
    await assert.rejects(openFirstEntry(Readable.from([damaged])), /^TarError: the archive is damaged: /);
    await assert.rejects(openFirstEntry(Readable.from([Buffer.alloc(1024)])), /^TarError: the archive holds no entry$/);
    const { body } = await openFirstEntry(Readable.from([archive.subarray(0, 512 + 600)]));
    await assert.rejects(buffer(body), /^TarError: the archive is damaged: /);
  });
});

describe("docker archives renamed on the fly", () => {
  /** Every file, link and directory under `root` with what it is: contents, link target, or "dir". */
  function described(root: string): string[] {
    return (fs.readdirSync(root, { recursive: true }) as string[]).sort().map((rel) => {
      const full = path.join(root, rel);
      const st = fs.lstatSync(full);
      if (st.isSymbolicLink()) return `${rel} -> ${fs.readlinkSync(full)}`;
      if (st.isDirectory()) return `${rel}/`;
      return `${rel}: ${fs.readFileSync(full, "utf8")} (${st.nlink} links, mode ${(st.mode & 0o777).toString(8)})`;
    });
  }

  for (const format of ["gnu", "pax", "ustar"]) {
    test(`${format} archives of two paths, prefixed and joined, unpack as the paths under their parents: long names, hard links, symlinks kept`, async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-rename-test-"));
      try {
        const src = path.join(dir, "src");
        const long = format === "ustar" ? "l".repeat(90) : "l".repeat(150);
        fs.mkdirSync(path.join(src, "deps", "sub", long), { recursive: true });
        fs.writeFileSync(path.join(src, "deps", "sub", long, "f"), "long\n");
        fs.writeFileSync(path.join(src, "deps", "a"), "a\n", { mode: 0o640 });
        fs.linkSync(path.join(src, "deps", "a"), path.join(src, "deps", "hard"));
        fs.symlinkSync(`sub/${long}/f`, path.join(src, "deps", "link"));
        fs.symlinkSync("/usr/bin/python3", path.join(src, "deps", "abs"));
        fs.mkdirSync(path.join(src, "other"));
        fs.writeFileSync(path.join(src, "other", "o"), "o\n");
        const tarOf = (name: string) => spawnSync("tar", [`--format=${format}`, "-C", src, "-cf", "-", name], { maxBuffer: 4 << 20 }).stdout;
        // As the engine names them: from the path's base name; a cache wants them under x/y/ and at the top.
        const joined = await buffer(
          Readable.from(
            (async function* () {
              for (const h of directoryHeaders(["x/", "x/y/"])) yield h;
              for await (const chunk of Readable.from([tarOf("deps")]).pipe(new TarPrefixer("x/y"))) yield chunk;
              for await (const chunk of Readable.from([tarOf("other")]).pipe(new TarPrefixer(""))) yield chunk;
              yield Buffer.alloc(1024);
            })(),
          ),
        );
        const out = path.join(dir, "out");
        fs.mkdirSync(out);
        const r = spawnSync("tar", ["-x", "-f", "-", "-C", out], { input: joined });
        assert.equal(r.status, 0, r.stderr.toString());
        const expected = path.join(dir, "expected");
        fs.mkdirSync(path.join(expected, "x", "y"), { recursive: true });
        spawnSync("tar", ["-x", "-f", "-", "-C", path.join(expected, "x", "y")], { input: tarOf("deps") });
        spawnSync("tar", ["-x", "-f", "-", "-C", expected], { input: tarOf("other") });
        assert.deepEqual(described(out), described(expected));
        assert.ok(described(out).some((l) => l.startsWith("x/y/deps/hard: a\n (2 links")), "the hard link is one");
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
