// The driver catalogue: a driver is its folder under internal/driver/ and one line of the
// catalogue. A driver registered by half (a folder nobody lists, a line without a schema, a
// loader that registers another name, a section driver.toml.example lacks) fails here.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { driverSchema, loadDriverConfig, loadWorkerConfig } from "../internal/config/config.js";
import { CATALOGUE, DECLARATIONS, DRIVER_TYPES, sweepingDrivers } from "../internal/driver/catalogue.js";
import { driverNames, getDriver } from "../internal/driver/driver.js";
import { parseManifest } from "../internal/manifest/manifest.js";
import { configuredDrivers, driverTypeOfQueue, queueDriverOf } from "../internal/queue/names.js";
import { repoRoot } from "./helpers/env.js";

const driverDir = path.join(repoRoot, "internal", "driver");

/** The folders under internal/driver/ whose code registers a driver (calls registerDriver). */
function foldersWithADriver(): string[] {
  return readdirSync(driverDir).filter((name) => {
    const dir = path.join(driverDir, name);
    if (!statSync(dir).isDirectory()) return false;
    return readdirSync(dir).some((file) => file.endsWith(".ts") && /\bregisterDriver\(/.test(readFileSync(path.join(dir, file), "utf8")));
  });
}

describe("driver catalogue", () => {
  test("a worker loads at start-up the engines of configured drivers that sweep, and no other", () => {
    const every = Object.fromEntries([...CATALOGUE.map((d) => [d.section.name, {}]), ["warnings", []]]);
    const sweeping = DECLARATIONS.filter((d) => d.sweeps).map((d) => d.section.name);
    assert.deepEqual(sweeping, ["os"]);
    assert.deepEqual(sweepingDrivers(every as never), ["os"]);
    assert.deepEqual(sweepingDrivers({ warnings: [], docker: {}, qemu: {}, ssh: {} } as never), []);
    assert.deepEqual(sweepingDrivers({ warnings: [] } as never), []);
  });

  test("every folder under internal/driver/ with a driver has a line in the catalogue, under its folder's name", () => {
    const listed = CATALOGUE.map((d) => d.section.name).sort();
    assert.deepEqual(foldersWithADriver().sort(), listed);
    for (const name of listed) assert.ok(statSync(path.join(driverDir, name, "entry.ts")).isFile(), `${name}: no entry.ts`);
  });

  for (const driver of DECLARATIONS) {
    const name = driver.section.name;
    test(`${name}: a driver.toml section with a schema, typed settings and lines for check`, () => {
      assert.equal(driverSchema.sections?.[name], driver.section.spec, `${name}: driver.toml's schema has no [${name}]`);
      const file = path.join(os.tmpdir(), `catalogue-${process.pid}-${name}.toml`);
      writeFileSync(file, `[${name}]\n`);
      const cfg = loadDriverConfig(file) as Record<string, unknown>;
      assert.deepEqual(cfg.warnings, [], `${name}: an empty [${name}] section is not accepted as it stands`);
      assert.ok(cfg[name], `${name}: [${name}] gives no settings`);
      assert.equal(typeof driver.section.shown(cfg[name]), "object");
      assert.deepEqual(configuredDrivers(cfg as never), [driver.queue()]);
    });

    test(`${name}: a queue rule the worker, the manifest and queue naming agree on`, () => {
      const queue = driver.queue();
      assert.match(queue, /^[a-z0-9_-]+$/);
      assert.equal(queueDriverOf(name), queue);
      assert.equal(driverTypeOfQueue(queue), name);
      assert.ok(DRIVER_TYPES.includes(name));
      const file = path.join(os.tmpdir(), `catalogue-${process.pid}-${name}-worker.toml`);
      writeFileSync(file, `driver = ${JSON.stringify(queue)}\n`);
      assert.equal(loadWorkerConfig(file).driver, queue);
      const manifest = parseManifest(`driver:\n  type: ${name}\n  image: x\n  address: 127.0.0.1:22\nstages:\n- s\njobs:\n- stage: s\n  commands:\n  - "true"\n`);
      assert.equal(manifest.manifest.driver.type, name);
    });

    test(`${name}: the loader imports an engine that registers a driver of that name, which sweeps the host if and only if the line says so`, async () => {
      assert.ok(!driverNames().includes(name), `${name} is registered before its loader ran`);
      await driver.load();
      const engine = await getDriver(name);
      assert.equal(engine.name, name);
      // A worker loads at start-up only the engines whose line says they sweep: an engine with a
      // sweep its line does not declare would never sweep; a line that declares one loads the engine for nothing.
      assert.equal(typeof engine.sweep === "function", driver.sweeps === true, `${name}: the engine ${engine.sweep ? "sweeps" : "does not sweep"}, its line says otherwise`);
    });

    test(`${name}: driver.toml.example has a [${name}] section`, () => {
      const example = readFileSync(path.join(repoRoot, "driver.toml.example"), "utf8");
      assert.match(example, new RegExp(`^\\[${name}\\]$`, "m"));
    });
  }
});
