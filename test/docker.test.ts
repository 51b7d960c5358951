// The docker driver on a real engine, driven through the runner: what a reporter sees, what the
// engine holds during and after a build.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import type { DockerConfig } from "../internal/config/config.js";
import { checkEngine, LABEL_BUILD, LABEL_RUN } from "../internal/driver/docker/docker.js";
import { freshRunToken } from "../internal/driver/run.js";
import { getDriver, type RunRef } from "../internal/driver/driver.js";
import "../internal/driver/all.js";
import { ArtifactStore, ObjectStore } from "../internal/fs/store.js";
import { parseManifest } from "../internal/manifest/manifest.js";
import { planBuild } from "../internal/runner/plan.js";
import type { Status } from "../internal/runner/status.js";
import { runBuild, type BuildReporter } from "../internal/runner/runner.js";
import { busyboxImage, docker, dockerSkip, dockerTestConfig, leftovers, removeImage } from "./helpers/docker.js";

const log = pino({ level: "silent" });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "djinn-docker-test-"));
const builds: string[] = [];
let image = "";

interface BuildOptions {
  config?: Partial<DockerConfig>;
  imagesPath?: string;
  env?: Record<string, string>;
  masks?: string[];
  objects?: ObjectStore;
  artifactLimit?: number;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Called with each chunk of a job's output as it comes. */
  onOutput?: (job: string, text: string) => void;
  onJobStarted?: (job: string, buildId: string) => Promise<void> | void;
  /** Each chunk of output takes a millisecond to write: backpressure all the way to the job. */
  slowReader?: boolean;
}

/** Runs a manifest through the real runner on the docker driver; `{{image}}` is the test image. */
async function build(yaml: string, opts: BuildOptions = {}) {
  const buildId = `t-docker-${randomBytes(4).toString("hex")}`;
  builds.push(buildId);
  const { manifest } = parseManifest(yaml.replaceAll("{{image}}", image));
  const output = new Map<string, string>();
  const status = new Map<string, Status>();
  const reporter: BuildReporter = {
    async jobStarted(job) {
      const name = `${job.stage}/${job.name}`;
      await opts.onJobStarted?.(name, buildId);
      const chunks: Buffer[] = [];
      return new Writable({
        write(c: Buffer, _e, done) {
          chunks.push(c);
          opts.onOutput?.(name, c.toString());
          if (opts.slowReader) setTimeout(done, 1);
          else done();
        },
        final(done) {
          output.set(name, Buffer.concat(chunks).toString());
          done();
        },
      });
    },
    jobFinished(job, result) {
      status.set(`${job.stage}/${job.name}`, result.status);
    },
  };
  const artifacts = new ArtifactStore(fs.mkdtempSync(path.join(dir, "art-")), opts.artifactLimit ?? 0);
  const driver = (await getDriver("docker")).create({ buildId, manifest: manifest.driver, config: { docker: dockerTestConfig(opts.config), warnings: [] }, imagesPath: opts.imagesPath, log });
  const result = await runBuild({
    plan: planBuild(manifest, "t"),
    driver,
    env: opts.env ?? {},
    masks: opts.masks ?? [],
    objects: opts.objects ? { store: opts.objects, list: manifest.objects } : undefined,
    artifacts,
    reporter,
    signal: opts.signal,
    timeoutMs: opts.timeoutMs,
    // Long, so a job the driver fails to stop shows as a test that never ends rather than passing.
    abortGraceMs: 120_000,
  });
  const left = await leftovers(buildId);
  return { buildId, status: result, jobs: status, output, artifacts: artifacts.root, left };
}

const SETUP = "setup - #t/create-driver";

function sha256(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

describe("docker driver", { skip: dockerSkip }, () => {
  before(async () => {
    image = await busyboxImage();
  });

  after(async () => {
    fs.rmSync(dir, { recursive: true, force: true });
    for (const id of builds) {
      const left = await leftovers(id);
      assert.deepEqual(left, { containers: [], volumes: [] }, `build ${id} left things behind`);
    }
  });

  test("jobs share the workspace and the build env; output is live, in order, masked; nothing is left", async () => {
    let containersDuring: string[] = [];
    const r = await build(
      `driver: {type: docker, image: "{{image}}"}
env: [GREETING=hello world]
stages: [one, two]
jobs:
- stage: one
  name: write
  commands:
  - echo "$GREETING" > state.txt
  - echo out1; echo err1 >&2; echo out2
  - echo "token=$TOKEN"
- stage: two
  name: read
  commands:
  - cat state.txt
  - pwd
  - echo "CI=$CI"
`,
      {
        env: { GREETING: "hello world", TOKEN: "s3cr3t-value" },
        masks: ["s3cr3t-value"],
        onJobStarted: async (job, buildId) => {
          if (job === "two/read") containersDuring = (await leftovers(buildId)).containers;
        },
      },
    );
    assert.equal(r.status, "passed", [...r.output.values()].join("\n"));
    assert.equal(r.jobs.get("one/write"), "passed");
    assert.equal(r.jobs.get("two/read"), "passed");
    const first = r.output.get("one/write")!;
    // stderr (the shown command, err1) and stdout keep the order they were written in.
    assert.match(first, /\+ echo out1; echo err1 >&2; echo out2\nout1\nerr1\nout2\n/);
    assert.match(first, /token=xxxxxx/);
    assert.doesNotMatch(first, /s3cr3t/);
    const second = r.output.get("two/read")!;
    assert.match(second, /^hello world$/m);
    assert.match(second, /^\/workspace$/m);
    assert.match(second, /^CI=true$/m);
    assert.equal(containersDuring.length, 1, "one container serves the whole build");
    assert.deepEqual(r.left, { containers: [], volumes: [] });
  });

  test("a large output arrives whole through a slow reader", async () => {
    let lines = 0;
    let partial = "";
    const r = await build(
      `driver: {type: docker, image: "{{image}}"}
stages: [s]
jobs:
- {stage: s, commands: ['yes abcdefghijklmno | head -c 8000000', 'echo finished']}
`,
      {
        slowReader: true,
        onOutput: (job, text) => {
          if (job !== "s/s.1") return;
          const parts = (partial + text).split("\n");
          partial = parts.pop()!;
          lines += parts.filter((l) => l === "abcdefghijklmno").length;
        },
      },
    );
    assert.equal(r.status, "passed");
    assert.equal(lines, 500_000);
    assert.match(r.output.get("s/s.1")!, /\n\+ echo finished\nfinished\n$/);
  });

  test("a script too long for one argument still runs, and a custom workspace is used", async () => {
    const padding = `# ${"x".repeat(150_000)}`;
    const r = await build(
      `driver: {type: docker, image: "{{image}}", workspace: /src/app}
stages: [s]
jobs:
- stage: s
  commands:
  - echo first
  - ${JSON.stringify(padding)}
  - echo last; pwd
`,
    );
    assert.equal(r.status, "passed", r.output.get("s/s.1"));
    assert.match(r.output.get("s/s.1")!, /^first\n\+ echo last; pwd\nlast\n\/src\/app\n$/m);
  });

  test("objects are streamed into the workspace and to absolute paths before the first job", async () => {
    const objRoot = path.join(dir, "objects");
    fs.mkdirSync(objRoot, { recursive: true });
    const big = randomBytes(3 * 1024 * 1024 + 17);
    fs.writeFileSync(path.join(objRoot, "big.bin"), big);
    fs.writeFileSync(path.join(objRoot, "note.txt"), "a note\n");
    const longName = `${"n".repeat(120)}.txt`;
    const r = await build(
      `driver: {type: docker, image: "{{image}}"}
objects:
- big.bin => deep/er/big.bin
- note.txt => /opt/notes/note.txt
- note.txt => ${longName}
- note.txt => ~/.config/note.txt
stages: [s]
jobs:
- stage: s
  commands:
  - sha256sum deep/er/big.bin
  - cat /opt/notes/note.txt
  - cat ${longName}
  - cat "$HOME/.config/note.txt"
`,
      { objects: new ObjectStore(objRoot) },
    );
    assert.equal(r.status, "passed", [...r.output.values()].join("\n"));
    assert.match(r.output.get(SETUP)!, /Placed object big.bin => deep\/er\/big.bin/);
    const out = r.output.get("s/s.1")!;
    assert.match(out, new RegExp(`^${sha256(big)}  deep/er/big.bin$`, "m"));
    assert.equal(out.match(/^a note$/gm)?.length, 3, "placed in the workspace, at an absolute path and under ~/");
  });

  test("artifacts: collected from anywhere in the container (links followed), cut at the limit, refused when missing or not a file", async () => {
    const r = await build(
      `driver: {type: docker, image: "{{image}}"}
stages: [s]
jobs:
- stage: s
  commands:
  - printf 'small artifact\\n' > small.txt
  - head -c 300000 /dev/zero > big.bin
  - ln -s /etc/passwd leak
  - ln -s small.txt inner
  - mkdir sub && ln -s /etc sub/etc
  - mkdir adir
  - echo long > ${"l".repeat(150)}.txt
  artifacts:
  - small.txt
  - big.bin
  - inner => inner.txt
  - missing.txt
  - ../etc/passwd => escaped
  - leak
  - sub/etc/passwd => viadir
  - adir
  - ${"l".repeat(150)}.txt => long.txt
`,
      { artifactLimit: 100_000 },
    );
    assert.equal(r.status, "passed", r.output.get("s/s.1"));
    const out = r.output.get("s/s.1")!;
    assert.equal(fs.readFileSync(path.join(r.artifacts, "small.txt"), "utf8"), "small artifact\n");
    assert.equal(fs.readFileSync(path.join(r.artifacts, "inner.txt"), "utf8"), "small artifact\n");
    assert.equal(fs.statSync(path.join(r.artifacts, "big.bin")).size, 100_000);
    assert.match(out, /artifact big.bin => big.bin: cut to 100000 bytes/);
    assert.match(out, /artifact missing.txt not collected: missing.txt does not exist/);
    // The container is thrown away: paths outside the workspace and links out of it are collected, as in Djinn.
    for (const name of ["escaped", "leak", "viadir"]) assert.match(fs.readFileSync(path.join(r.artifacts, name), "utf8"), /^root:/m, name);
    assert.match(out, /artifact adir not collected: adir is not a regular file/);
    assert.equal(fs.readFileSync(path.join(r.artifacts, "long.txt"), "utf8"), "long\n");
    assert.deepEqual(fs.readdirSync(r.artifacts).sort(), ["big.bin", "escaped", "inner.txt", "leak", "long.txt", "small.txt", "viadir"]);
  });

  test("artifacts as Djinn collects them: absolute and ~/ paths, patterns, an artifact-only job", async () => {
    const r = await build(
      `driver: {type: docker, image: "{{image}}"}
stages: [make, collect]
jobs:
- stage: make
  commands:
  - mkdir -p dist /opt/out
  - echo one > dist/app-1.tar.gz && echo two > dist/app-2.tar.gz && echo other > dist/app.zip
  - echo a > dist/a.log && echo b > dist/b.log
  - echo absolute > /opt/out/report.txt
  - echo home > ~/home.txt
  - head -c 3000 /dev/zero > dist/big-1.bin && head -c 10 /dev/zero > dist/big-2.bin
- stage: collect
  name: gather
  artifacts:
  - /opt/out/report.txt
  - ~/home.txt => from-home.txt
  - dist/*.tar.gz
  - /workspace/dist/?.log => logs/*
  - dist/big-[12].bin
  - dist/*.nothing
  - ../../../../../../op*/out/report.txt => ../../escape-*
`,
      { artifactLimit: 1000 },
    );
    assert.equal(r.status, "passed", [...r.output.values()].join("\n"));
    const out = r.output.get("collect/gather")!;
    const read = (name: string) => fs.readFileSync(path.join(r.artifacts, name), "utf8");
    assert.equal(read("report.txt"), "absolute\n");
    assert.equal(read("from-home.txt"), "home\n");
    assert.equal(read("app-1.tar.gz"), "one\n");
    assert.equal(read("app-2.tar.gz"), "two\n");
    assert.equal(read("logs/a.log"), "a\n");
    assert.equal(read("logs/b.log"), "b\n");
    // The limit is per file: each match is cut on its own.
    assert.equal(fs.statSync(path.join(r.artifacts, "big-1.bin")).size, 1000);
    assert.equal(fs.statSync(path.join(r.artifacts, "big-2.bin")).size, 10);
    assert.match(out, /Collected artifact \/workspace\/dist\/app-1\.tar\.gz => app-1\.tar\.gz \(4 bytes\)/);
    assert.match(out, /artifact dist\/\*\.nothing: the pattern matches nothing, nothing collected/);
    // A name in the store never leaves it, whatever the manifest writes.
    assert.match(out, /artifact \/opt\/out\/report\.txt not collected: .*reaches outside the store/);
    assert.deepEqual(fs.readdirSync(r.artifacts).sort(), ["app-1.tar.gz", "app-2.tar.gz", "big-1.bin", "big-2.bin", "from-home.txt", "logs", "report.txt"]);
  });

  test("a failing job fails the build and skips the rest; allow_failures lets the build go on", async () => {
    const failing = await build(
      `driver: {type: docker, image: "{{image}}"}
stages: [a, b]
jobs:
- {stage: a, commands: ['echo before', 'exit 3', 'echo never']}
- {stage: b, commands: ['echo later']}
`,
    );
    assert.equal(failing.status, "failed");
    assert.equal(failing.jobs.get("a/a.1"), "failed");
    assert.equal(failing.jobs.get("b/b.1"), "skipped");
    assert.match(failing.output.get("a/a.1")!, /job a.1 failed: exit status 3/);
    assert.doesNotMatch(failing.output.get("a/a.1")!, /^never$/m);
    assert.deepEqual(failing.left, { containers: [], volumes: [] });

    const allowed = await build(
      `driver: {type: docker, image: "{{image}}"}
stages: [flaky, b]
allow_failures: [flaky]
jobs:
- {stage: flaky, commands: ['false']}
- {stage: b, commands: ['echo after']}
`,
    );
    assert.equal(allowed.status, "passed_with_failures");
    assert.equal(allowed.jobs.get("flaky/flaky.1"), "passed_with_failures");
    assert.equal(allowed.jobs.get("b/b.1"), "passed");
    assert.match(allowed.output.get("b/b.1")!, /^after$/m);
  });

  // The runner waits 120 s for a job that does not stop; the test timeout makes that a failure.
  test("a timeout stops the running job at once and removes the container and volume", { timeout: 60_000 }, async () => {
    const r = await build(
      `driver: {type: docker, image: "{{image}}"}
stages: [s]
jobs:
- {stage: s, commands: ['echo started', 'sleep 600', 'echo never']}
- {stage: s, commands: ['echo skipped']}
`,
      { timeoutMs: 3000 },
    );
    assert.equal(r.status, "timed_out");
    assert.equal(r.jobs.get("s/s.1"), "timed_out");
    assert.equal(r.jobs.get("s/s.2"), "skipped");
    assert.match(r.output.get("s/s.1")!, /^started$[\s\S]*build timed out after/m);
    assert.deepEqual(r.left, { containers: [], volumes: [] });
  });

  test("a kill stops the running job at once and removes the container and volume", { timeout: 60_000 }, async () => {
    const kill = new AbortController();
    let seen = "";
    const r = await build(
      `driver: {type: docker, image: "{{image}}"}
stages: [s]
jobs:
- {stage: s, commands: ['echo started', 'sleep 600']}
`,
      // Output may arrive in pieces: look at all of the job's output so far.
      { signal: kill.signal, onOutput: (job, text) => job === "s/s.1" && /^started$/m.test((seen += text)) && kill.abort() },
    );
    assert.equal(r.status, "killed");
    assert.equal(r.jobs.get("s/s.1"), "killed");
    assert.match(r.output.get("s/s.1")!, /build killed/);
    assert.deepEqual(r.left, { containers: [], volumes: [] });
  });

  test("an image that is nowhere fails the build with one clear line", async () => {
    const r = await build(`driver: {type: docker, image: djinn-test/no-such-image:1}\nstages: [s]\njobs:\n- {stage: s, commands: [true]}\n`, { imagesPath: path.join(dir, "images") });
    assert.equal(r.status, "failed");
    assert.equal(r.jobs.get("s/s.1"), "skipped");
    const out = r.output.get(SETUP)!;
    assert.match(out, /^driver: image djinn-test\/no-such-image:1 is not available: not in the engine and the pull failed \(.+\); no .*docker\/_base\/djinn-test\/no-such-image:1\.tar to load$/m);
    assert.doesNotMatch(out, /^\s+at /m, "no stack trace");
    assert.deepEqual(r.left, { containers: [], volumes: [] });
  });

  test('pull = "never" with an image not in the engine fails without a pull', async () => {
    const r = await build(`driver: {type: docker, image: djinn-test/absent:1}\nstages: [s]\njobs:\n- {stage: s, commands: [true]}\n`, { config: { pull: "never" } });
    assert.equal(r.status, "failed");
    const out = r.output.get(SETUP)!;
    assert.match(out, /^driver: image djinn-test\/absent:1 is not available: not in the engine and pull = never; no images path to load a tar from$/m);
    assert.doesNotMatch(out, /Pulling/);
  });

  test("an image missing from the engine is loaded from <images>/docker/_base/<name>.tar; names cannot leave that directory", async () => {
    const name = `djinn-test/loaded:${randomBytes(3).toString("hex")}`;
    const images = path.join(dir, "images-load");
    const tar = path.join(images, "docker", "_base", `${name}.tar`);
    fs.mkdirSync(path.dirname(tar), { recursive: true });
    await docker.getImage(image).tag({ repo: name.split(":")[0]!, tag: name.split(":")[1]! });
    const saved = spawnSync("docker", ["save", "-o", tar, name], { encoding: "utf8" });
    assert.equal(saved.status, 0, saved.stderr);
    await docker.getImage(name).remove();
    try {
      const r = await build(`driver: {type: docker, image: "${name}"}\nstages: [s]\njobs:\n- {stage: s, commands: ['echo from-tar']}\n`, { imagesPath: images, config: { pull: "never" } });
      assert.equal(r.status, "passed", r.output.get(SETUP));
      assert.match(r.output.get(SETUP)!, new RegExp(`Loading image ${name} from ${tar.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
      assert.match(r.output.get("s/s.1")!, /^from-tar$/m);
      await docker.getImage(name).inspect();

      // A name that would leave the images directory is no image reference: refused when the manifest is read.
      await assert.rejects(build(`driver: {type: docker, image: "djinn-test/../../../x"}\nstages: [s]\njobs:\n- {stage: s, commands: [true]}\n`, { imagesPath: images, config: { pull: "never" } }), /driver\.image: "djinn-test\/\.\.\/\.\.\/\.\.\/x" is not an image reference/);
    } finally {
      await removeImage(name);
    }
  });

  test("a pull that hangs is cut off at pull_timeout with a clear line", { timeout: 60_000 }, async () => {
    // A "registry" on loopback that accepts connections and never answers.
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      sockets.add(s);
      s.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const r = await build(`driver: {type: docker, image: "127.0.0.1:${port}/hangs:1"}\nstages: [s]\njobs:\n- {stage: s, commands: [true]}\n`, { config: { pull_timeout: 1500 } });
      assert.equal(r.status, "failed");
      assert.match(r.output.get(SETUP)!, new RegExp(`^driver: image 127.0.0.1:${port}/hangs:1 is not available: not in the engine and the pull failed \\(timed out after 1500 ms \\(pull_timeout\\)\\)`, "m"));
    } finally {
      for (const s of sockets) s.destroy();
      server.close();
    }
  });

  test("a container that cannot start fails the build clearly and leaves nothing", async () => {
    const r = await build(`driver: {type: docker, image: "{{image}}"}\nstages: [s]\njobs:\n- {stage: s, commands: [true]}\n`, { config: { network: "djinn-no-such-network" } });
    assert.equal(r.status, "failed");
    assert.match(r.output.get(SETUP)!, /^driver: cannot start a container of djinn-test\/busybox:\w+: .*djinn-no-such-network/m);
    assert.deepEqual(r.left, { containers: [], volumes: [] });
  });

  test("limits: defaults, per-build overrides up to the maxima, never privileged, no host mounts", async () => {
    let hostConfig: Record<string, unknown> | undefined;
    let mounts: { Type: string; Source: string }[] = [];
    const r = await build(`driver: {type: docker, image: "{{image}}", memory: "256", cpus: "0.5", pids: "300"}\nstages: [s]\njobs:\n- {stage: s, commands: [true]}\n`, {
      config: { cpus: 1, memory: 128, max_cpus: 1, max_memory: 256, pids: 100, max_pids: 300, network: "none" },
      onJobStarted: async (job, buildId) => {
        if (job !== "s/s.1") return;
        const [id] = (await leftovers(buildId)).containers;
        const info = await docker.getContainer(id!).inspect();
        hostConfig = info.HostConfig as unknown as Record<string, unknown>;
        mounts = info.Mounts as unknown as { Type: string; Source: string }[];
      },
    });
    assert.equal(r.status, "passed", r.output.get(SETUP));
    assert.equal(hostConfig?.Memory, 256 * 1024 * 1024);
    assert.equal(hostConfig?.MemorySwap, 256 * 1024 * 1024);
    assert.equal(hostConfig?.NanoCpus, 0.5e9);
    assert.equal(hostConfig?.PidsLimit, 300);
    assert.equal(hostConfig?.Privileged, false);
    assert.equal(hostConfig?.NetworkMode, "none");
    // Podman lists the workspace volume among Binds ("name:/workspace:..."); a host path would start with "/".
    assert.deepEqual(((hostConfig?.Binds ?? []) as string[]).filter((b) => b.startsWith("/")), []);
    assert.deepEqual(mounts.map((m) => m.Type), ["volume"]);

    const tooMuch = await build(`driver: {type: docker, image: "{{image}}", memory: "2g"}\nstages: [s]\njobs:\n- {stage: s, commands: [true]}\n`, { config: { memory: 128, max_memory: 256 } });
    assert.equal(tooMuch.status, "failed");
    assert.match(tooMuch.output.get(SETUP)!, /^driver: driver.memory: 2048 MB is more than this worker allows \(max_memory = 256 MB\)$/m);
    assert.deepEqual(tooMuch.left, { containers: [], volumes: [] });
  });

  test("a job that forks past the pids limit fails to fork, and the limit holds without any configuration", async () => {
    // 40 background sleeps against a limit of 16: the shell cannot fork and the job fails.
    const bomb = "for i in $(seq 1 40); do sleep 300 </dev/null >/dev/null 2>&1 & done; echo all-started";
    const r = await build(`driver: {type: docker, image: "{{image}}"}\nstages: [s]\njobs:\n- {stage: s, commands: ['${bomb}']}\n`, { config: { pids: 16 } });
    assert.equal(r.status, "failed");
    const out = r.output.get("s/s.1")!;
    assert.match(out, /can't fork/);
    assert.doesNotMatch(out, /^all-started$/m);
    assert.deepEqual(r.left, { containers: [], volumes: [] });

    // With no pids in driver.toml, the container still has the default limit.
    let pidsLimit: unknown;
    const plain = await build(`driver: {type: docker, image: "{{image}}"}\nstages: [s]\njobs:\n- {stage: s, commands: [true]}\n`, {
      onJobStarted: async (job, buildId) => {
        if (job !== "s/s.1") return;
        const [id] = (await leftovers(buildId)).containers;
        pidsLimit = (await docker.getContainer(id!).inspect()).HostConfig.PidsLimit;
      },
    });
    assert.equal(plain.status, "passed");
    assert.equal(pidsLimit, 1024);
  });

  test("a job past its memory limit is reported as out of memory", async () => {
    const r = await build(
      `driver: {type: docker, image: "{{image}}"}
stages: [s, t]
jobs:
- {stage: s, commands: ['head -c 200m /dev/zero | tail']}
- {stage: t, commands: [true]}
`,
      { config: { memory: 64 } },
    );
    assert.equal(r.status, "failed");
    const out = r.output.get("s/s.1")!;
    assert.match(out, /^out of memory \(limit 64 MB\): the kernel killed a process of this job\njob s.1 failed: exit status \d+$/m);
  });

  test("execute says how a job ended: its exit code, and whether the OOM killer acted under which limit", async () => {
    const buildId = `t-docker-oom-${randomBytes(4).toString("hex")}`;
    builds.push(buildId);
    const driver = (await getDriver("docker")).create({ buildId, manifest: { type: "docker", image }, config: { docker: dockerTestConfig({ memory: 64 }), warnings: [] }, log });
    const output = new Writable({ write: (_c, _e, done) => done() });
    const job = (script: string) => driver.execute({ name: "s/s.1", script, env: {}, output, signal: new AbortController().signal });
    try {
      await driver.create(output, new AbortController().signal);
      assert.deepEqual(await job("set -e\nexit 3\n"), { exitCode: 3, memoryLimitMb: 64 });
      const oom = await job("set -e\nhead -c 200m /dev/zero | tail\n");
      assert.notEqual(oom.exitCode, 0);
      assert.deepEqual({ ...oom, exitCode: 0 }, { exitCode: 0, oomKilled: true, memoryLimitMb: 64 });
      // The counter is read since the last look: a later failure is not blamed on memory.
      assert.deepEqual(await job("set -e\nexit 4\n"), { exitCode: 4, memoryLimitMb: 64 });
    } finally {
      await driver.destroy();
    }
  });

  test("reap removes what a run left when its worker died, and nothing of another run with the same build id", async () => {
    const buildId = `t-docker-crash-${randomBytes(4).toString("hex")}`;
    builds.push(buildId);
    const entry = await getDriver("docker");
    const config = { docker: dockerTestConfig(), warnings: [] };
    const dead: RunRef = { buildId, run: freshRunToken() };
    // The same build id in another installation (its own database), running now.
    const other: RunRef = { buildId, run: freshRunToken() };
    const sink = new Writable({ write: (_c, _e, done) => done() });
    const otherDriver = entry.create({ ...other, manifest: { type: "docker", image }, config, log });
    try {
      await otherDriver.create(sink, new AbortController().signal);
      const driver = entry.create({ ...dead, manifest: { type: "docker", image }, config, log });
      await driver.create(sink, new AbortController().signal);
      // The worker "dies" here: no destroy.
      const before = await leftovers(buildId);
      assert.equal(before.containers.length, 2);
      assert.equal(before.volumes.length, 2);
      const info = await docker.getContainer(before.containers[0]!).inspect();
      assert.equal(info.Config.Labels[LABEL_BUILD], buildId);
      assert.equal(info.Config.Labels["djinn.worker"], "1");
      await entry.reap!(dead, config, log);
      const after = await leftovers(buildId);
      assert.equal(after.containers.length, 1);
      assert.equal(after.volumes.length, 1);
      const survivor = await docker.getContainer(after.containers[0]!).inspect();
      assert.equal(survivor.Config.Labels[LABEL_RUN], other.run, "the other run's container is untouched");
      assert.equal(survivor.State.Running, true);
      // Reaping twice, or a run that left nothing, is fine.
      await entry.reap!(dead, config, log);
    } finally {
      await otherDriver.destroy();
    }
    assert.deepEqual(await leftovers(buildId), { containers: [], volumes: [] });
  });

  test("check names the engine and its API version, and fails clearly when nothing answers", async () => {
    const [line] = await checkEngine({ docker: dockerTestConfig(), warnings: [] });
    const version = await docker.version();
    assert.equal(line, `docker: engine ${version.Version} at ${dockerTestConfig().host}, API ${version.ApiVersion}`);
    await assert.rejects(checkEngine({ docker: dockerTestConfig({ host: `unix://${path.join(dir, "nothing.sock")}` }), warnings: [] }), /^DriverError: the engine at unix:\/\/.*nothing\.sock does not answer: no such file or directory$/);
  });
});
