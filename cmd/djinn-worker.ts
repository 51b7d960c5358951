#!/usr/bin/env node
// The build's command. It runs the CLI (cmd/main.ts) bundled as the release executable carries
// it, with a V8 code cache, both made by `npm run build`: a command starts some 40 ms sooner than
// by loading the project's and its packages' 150-odd module files one by one (bench/run.ts), and
// the tests run the code a release runs. DJINN_DEBUG=1 runs the modules themselves, so that a
// stack trace names the project's files and lines.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { debugEnabled, fileReadReason } from "../internal/errors/errors.js";
import { BUNDLE, BUNDLE_CACHE, runBundle } from "../internal/release/bundled.js";
import { BUILD_EXIT } from "../internal/runner/status.js";

function readBundle(): { file: string; source: string; cache: Buffer | undefined } {
  const file = fileURLToPath(new URL(`../${BUNDLE}`, import.meta.url));
  try {
    const source = readFileSync(file, "utf8");
    let cache: Buffer | undefined;
    try {
      cache = readFileSync(fileURLToPath(new URL(`../${BUNDLE_CACHE}`, import.meta.url)));
    } catch {
      // Without its cache the bundle is compiled from its text: slower to start, the same program.
    }
    return { file, source, cache };
  } catch (err) {
    process.stderr.write(`djinn-worker: cannot read ${file}: ${fileReadReason(err)} (run \`npm run build\`)\n`);
    process.exit(BUILD_EXIT.failed);
  }
}

if (debugEnabled()) {
  await import("./main.js");
} else {
  const { file, source, cache } = readBundle();
  runBundle(file, source, cache);
}
