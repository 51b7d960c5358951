// Collecting artifacts from a qemu machine over SFTP (image tiny) against over exec channels
// (image tiny-nosftp, no SFTP subsystem): one --mb MiB artifact's throughput, the worker's RSS
// growth while it streams, and expanding a pattern that matches --files files.
// Usage: node build/bench/artifacts.js [--mb N] [--files N]
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { getDriver, type Driver } from "../internal/driver/driver.js";
import "../internal/driver/all.js";
import { ArtifactStore } from "../internal/fs/store.js";
import { ensureFixtureImage, qemuConfig } from "../test/helpers/qemu.js";
import { numberArg } from "./lib/args.js";

const mb = numberArg("mb", 64);
const files = numberArg("files", 1000);
const log = pino({ level: "silent" });
const sink = () => new Writable({ write: (_c, _e, done) => done() });

async function run(driver: Driver, script: string): Promise<void> {
  const code = await driver.execute({ name: "bench", script, env: {}, output: sink(), signal: new AbortController().signal });
  if (code.exitCode !== 0) throw new Error(`job exited ${code.exitCode}`);
}

async function measure(image: string, dir: string): Promise<void> {
  const driver = (await getDriver("qemu")).create({ buildId: `bench-artifacts-${process.pid}-${image}`, manifest: { type: "qemu", image }, config: qemuConfig({ accel: "tcg", memory: 512 }), log });
  try {
    await driver.create(sink(), new AbortController().signal);
    await run(driver, `head -c ${mb * 1024 * 1024} /dev/urandom > big.bin\nmkdir many && cd many && i=0; while [ $i -lt ${files} ]; do : > f$i.log; i=$((i+1)); done\n`);
    const store = new ArtifactStore(await fs.mkdtemp(path.join(dir, `${image}-`)));
    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    const timer = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 20);
    const t0 = performance.now();
    const stored = await store.put("big.bin", await driver.collect("big.bin"));
    const t1 = performance.now();
    clearInterval(timer);
    const t2 = performance.now();
    const matches = await driver.glob!("many/*.log");
    const t3 = performance.now();
    if (stored.size !== mb * 1024 * 1024 || matches.length !== files) throw new Error(`collected ${stored.size} bytes, ${matches.length} matches`);
    const secs = (t1 - t0) / 1000;
    console.log(`${image.padEnd(12)} ${mb} MiB in ${secs.toFixed(2)} s = ${(mb / secs).toFixed(1)} MiB/s; RSS +${((rssPeak - rssBefore) / 1048576).toFixed(1)} MiB while streaming; pattern with ${files} matches expanded in ${(t3 - t2).toFixed(0)} ms`);
  } finally {
    await driver.destroy();
  }
}

await ensureFixtureImage();
const dir = await fs.mkdtemp(path.join(os.tmpdir(), "djinn-bench-artifacts-"));
try {
  console.log(`artifact collection from a qemu machine (TCG), ${mb} MiB file, ${files}-file pattern`);
  await measure("tiny", dir);
  await measure("tiny-nosftp", dir);
} finally {
  await fs.rm(dir, { recursive: true, force: true });
}
