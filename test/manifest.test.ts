import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { decodeManifest, ManifestError, MAX_DEPTH, parseManifest, parseSource } from "../internal/manifest/manifest.js";
import { planBuild } from "../internal/runner/plan.js";

function refuse(yaml: string): ManifestError {
  try {
    parseManifest(yaml);
  } catch (err) {
    assert.ok(err instanceof ManifestError, `expected a ManifestError, got ${err}`);
    return err;
  }
  assert.fail("expected the manifest to be refused");
}

// The shape of Djinn's documented manifests: a qemu image, sources, env with spaces and
// '=' in values, a user stage named "setup", jobs without names, artifacts by path.
const djinnStyle = `namespace: djinn
driver:
  type: qemu
  image: djinn-dev
sources:
- https://github.com/djinn-ci/djinn
env:
- LDFLAGS=-s -w
- PGDSN=host=localhost port=5432 dbname=djinn
stages:
- setup
- make
jobs:
- stage: setup
  commands:
  - printf "127.0.0.1\\tlocal.dev\\n" | tee -a /etc/hosts
  - cd djinn
- stage: make
  commands:
  - cd djinn
  - ./make.sh
  artifacts:
  - djinn/bin/djinn
  - djinn/bin/djinn-worker => worker
`;

describe("manifest", () => {
  test("Djinn's manifest format parses", () => {
    const { manifest, warnings } = parseManifest(djinnStyle);
    assert.deepEqual(warnings, []);
    assert.equal(manifest.namespace, "djinn");
    assert.deepEqual(manifest.driver, { type: "qemu", image: "djinn-dev" });
    assert.deepEqual(manifest.env, [["LDFLAGS", "-s -w"], ["PGDSN", "host=localhost port=5432 dbname=djinn"]]);
    assert.deepEqual(manifest.sources, [{ url: "https://github.com/djinn-ci/djinn", ref: undefined, dir: "djinn" }]);
    assert.deepEqual(manifest.jobs.map((j) => j.name), ["setup.1", "make.1"]);
    assert.deepEqual(manifest.jobs[1].artifacts, [{ source: "djinn/bin/djinn", dest: "djinn" }, { source: "djinn/bin/djinn-worker", dest: "worker" }]);
  });

  test("the plan puts Djinn's setup stage first, apart from a user stage named setup", () => {
    const plan = planBuild(parseManifest(djinnStyle).manifest, "42");
    assert.deepEqual(plan.stages.map((s) => s.name), ["setup - #42", "setup", "make"]);
    assert.deepEqual(plan.stages[0].jobs.map((j) => j.name), ["create-driver", "clone.1"]);
    assert.deepEqual(plan.stages[0].jobs[1].commands, ["git clone -q https://github.com/djinn-ci/djinn djinn"]);
  });

  test("sources take a ref and a directory", () => {
    assert.deepEqual(parseSource("https://example.com/a/b.git v1.2 => src/b"), { url: "https://example.com/a/b.git", ref: "v1.2", dir: "src/b" });
    assert.deepEqual(parseSource("https://example.com/a/b.git"), { url: "https://example.com/a/b.git", ref: undefined, dir: "b" });
    const plan = planBuild(parseManifest("driver: {type: os}\nsources: ['https://x/y.git main => d']\nstages: [a]\njobs: [{stage: a, commands: [true]}]").manifest, "1");
    assert.deepEqual(plan.stages[0].jobs[1].commands, ["git clone -q https://x/y.git d", "cd d", "git checkout -q main"]);
  });

  test("allow_failures marks stages", () => {
    const plan = planBuild(parseManifest("driver: {type: os}\nstages: [a, b]\nallow_failures: [b]\njobs: [{stage: a, commands: [x]}, {stage: b, commands: [y]}]").manifest, "1");
    assert.deepEqual(plan.stages.map((s) => s.canFail), [false, false, true]);
  });

  test("a job in a stage that is not listed is ignored with a warning", () => {
    const { manifest, warnings } = parseManifest("driver: {type: os}\nstages: [a]\njobs:\n- {stage: a, commands: [x]}\n- {stage: nope, commands: [y]}\n");
    assert.equal(manifest.jobs.length, 1);
    assert.match(warnings[0], /line 5: jobs\[1\] is in stage "nope", which is not in stages: ignored/);
  });

  test("not YAML", () => {
    const err = refuse("driver: {type: os\nstages: [a\n");
    assert.match(err.message, /not valid YAML/);
    assert.ok(err.line, "the line is given");
  });

  test("not a mapping", () => {
    assert.match(refuse("- a\n- b\n").message, /a manifest must be a YAML mapping/);
  });

  test("no stages", () => {
    assert.match(refuse("driver: {type: os}\njobs: [{stage: a, commands: [x]}]\n").message, /stages: required/);
  });

  test("no jobs", () => {
    assert.match(refuse("driver: {type: os}\nstages: [a]\n").message, /jobs: required/);
    assert.match(refuse("driver: {type: os}\nstages: [a]\njobs: [{stage: b, commands: [x]}]\n").message, /jobs: no job belongs to a listed stage/);
  });

  test("errors name the field and the job", () => {
    const err = refuse("driver: {type: os}\nstages: [a]\njobs:\n- {stage: a, commands: [x]}\n- {stage: a, commands: [y]}\n- stage: a\n  commands: echo hi\n");
    assert.equal(err.field, "jobs[2].commands");
    assert.equal(err.message, "line 7: jobs[2].commands: expected a list of strings");
  });

  test("the driver is checked", () => {
    assert.match(refuse("stages: [a]\njobs: [{stage: a, commands: [x]}]\n").message, /driver: required/);
    assert.match(refuse("driver: {type: lxc}\nstages: [a]\njobs: [{stage: a, commands: [x]}]\n").message, /driver\.type: unknown driver "lxc"/);
    assert.match(refuse("driver: {type: docker}\nstages: [a]\njobs: [{stage: a, commands: [x]}]\n").message, /driver\.image: required by the docker driver/);
    assert.match(refuse("driver: {type: ssh}\nstages: [a]\njobs: [{stage: a, commands: [x]}]\n").message, /driver\.address: required by the ssh driver/);
  });

  test("env entries must be KEY=value", () => {
    assert.match(refuse("driver: {type: os}\nenv: [JUSTKEY]\nstages: [a]\njobs: [{stage: a, commands: [x]}]\n").message, /env\[0\]: expected KEY=value/);
  });

  test("duplicate stage and job names are refused", () => {
    assert.match(refuse("driver: {type: os}\nstages: [a, a]\njobs: [{stage: a, commands: [x]}]\n").message, /stages\[1\]: stage "a" is listed twice/);
    assert.match(refuse("driver: {type: os}\nstages: [a]\njobs: [{stage: a, name: j, commands: [x]}, {stage: a, name: j, commands: [y]}]\n").message, /jobs\[1\]\.name: stage "a" already has a job named "j"/);
  });
});

describe("hostile manifests", () => {
  const ok = (lines: Record<string, string>) =>
    ["namespace", "driver", "env", "objects", "sources", "stages", "jobs"].map((k) => lines[k] ?? "").filter(Boolean).join("\n") + "\n";
  const base = {
    driver: "driver: {type: os}",
    stages: "stages: [a]",
    jobs: "jobs:\n- stage: a\n  name: j\n  commands: [true]\n  artifacts: [out => out]",
  };

  test("a NUL byte in any name, path or value is refused naming the field", () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ namespace: 'namespace: "n\\0s"' }, /^line 1: namespace: contains a NUL byte$/],
      [{ driver: 'driver: {type: os, image: "a\\0b"}' }, /driver\.image: contains a NUL byte/],
      [{ env: 'env: ["A=x\\0y"]' }, /env\[0\]: contains a NUL byte/],
      [{ objects: 'objects: ["obj\\0 => /tmp/x"]' }, /objects\[0\]: contains a NUL byte/],
      [{ objects: 'objects: ["obj => /tmp/x\\0"]' }, /objects\[0\]: contains a NUL byte/],
      [{ sources: 'sources: ["https://x/y\\0.git"]' }, /sources\[0\]: contains a NUL byte/],
      [{ stages: 'stages: ["a", "b\\0"]' }, /stages\[1\]: contains a NUL byte/],
      [{ jobs: 'jobs:\n- stage: a\n  name: "j\\0"\n  commands: [true]' }, /jobs\[0\]\.name: contains a NUL byte/],
      [{ jobs: 'jobs:\n- stage: a\n  commands: ["echo \\0"]' }, /jobs\[0\]\.commands\[0\]: contains a NUL byte/],
      [{ jobs: 'jobs:\n- stage: a\n  commands: [true]\n  artifacts: ["out\\0 => x"]' }, /jobs\[0\]\.artifacts\[0\]: contains a NUL byte/],
    ];
    for (const [fields, reason] of cases) assert.match(refuse(ok({ ...base, ...fields })).message, reason, JSON.stringify(fields));
    // Written raw, not as an escape.
    assert.equal(refuse(ok({ ...base, jobs: "jobs:\n- stage: a\n  commands: [echo a\0b]" })).message, "line 5: jobs: contains a NUL byte (column 20)");
  });

  test("a command YAML reads as a map (an unquoted ': ') is refused with the line quoted as it was meant", () => {
    const text = ok({ ...base, jobs: "jobs:\n- stage: a\n  commands:\n  - echo key: value\n  - echo it's: 'quoted'" });
    assert.equal(refuse(text).message, `line 6: jobs[0].commands[0]: expected a string, got a map (YAML reads "key: value" as a map: quote the whole line, 'echo key: value')`);
    const twice = ok({ ...base, jobs: "jobs:\n- stage: a\n  commands:\n  - \"echo ok\"\n  - echo it's: quoted" });
    assert.equal(refuse(twice).message, `line 7: jobs[0].commands[1]: expected a string, got a map (YAML reads "key: value" as a map: quote the whole line, 'echo it''s: quoted')`);
    // A map written as one gets no guess.
    assert.equal(refuse(ok({ ...base, jobs: "jobs:\n- stage: a\n  commands:\n  - {a: 1, b: 2}" })).message, "line 6: jobs[0].commands[0]: expected a string, got a map");
  });

  test("stage names of the worker's setup stage are reserved", () => {
    for (const name of ["setup - #1", "setup - #", "setup - #local", "setup - #99 extra"]) {
      assert.match(refuse(ok({ ...base, stages: `stages: [a, ${JSON.stringify(name)}]` })).message, /stages\[1\]: stage names starting "setup - #" are reserved for the setup stage the worker adds/, name);
    }
    assert.doesNotThrow(() => parseManifest(ok({ ...base, stages: "stages: [setup, a]" })), "a user stage named setup is fine");
  });

  test(`nesting deeper than ${MAX_DEPTH} levels is refused naming the field, however deep`, () => {
    const flow = (n: number) => ok({ ...base, env: `env: ${"[".repeat(n)}${"]".repeat(n)}` });
    const block = (n: number) => ok({ ...base, objects: "objects:\n" + Array.from({ length: n }, (_, i) => `${" ".repeat(i * 2 + 2)}- `).join("\n") + "x" });
    for (const manifest of [flow(MAX_DEPTH + 1), flow(100_000), block(MAX_DEPTH + 1), block(5_000)]) {
      const err = refuse(manifest);
      assert.match(err.message, new RegExp(`^line \\d+: (env|objects): nested more than ${MAX_DEPTH} levels deep$`));
      assert.equal(err.field === "env" || err.field === "objects", true);
    }
    assert.match(refuse(flow(MAX_DEPTH - 2)).message, /env/, "shallower nesting is judged as usual");
  });

  test("invalid UTF-8 is refused with its line, column and field, never replaced silently", () => {
    const bytes = Buffer.concat([Buffer.from("driver: {type: os}\nstages: [a]\njobs:\n- stage: a\n  commands: [echo caf"), Buffer.from([0xc3, 0x28]), Buffer.from("]\n")]);
    assert.throws(() => decodeManifest(bytes), (err: Error) => err instanceof ManifestError && err.message === "line 5: jobs: not valid UTF-8: byte 0xc3 at column 22 (save the manifest as UTF-8)");
    const lone = Buffer.concat([Buffer.from("driver: {type: os}\nstages: [a"), Buffer.from([0xff]), Buffer.from("]\n")]);
    assert.throws(() => decodeManifest(lone), /^ManifestError: line 2: stages: not valid UTF-8: byte 0xff at column 11/);
    assert.equal(decodeManifest(Buffer.from("stages: [café, ✓]\n")), "stages: [café, ✓]\n");
  });
});

