import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ManifestError, parseManifest, parseSource } from "../internal/manifest/manifest.js";
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
