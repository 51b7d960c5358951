// The second step of `npm run build`: the CLI (build/cmd/main.js) bundled as the release carries
// it, and V8's code cache of the bundle, under build/bundle/. build/cmd/djinn-worker.js runs them.
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { bundle } from "../internal/release/bundle.js";
import { BUNDLE, BUNDLE_CACHE, compileBundle } from "../internal/release/bundled.js";

const build = new URL("../", import.meta.url);
const repo = new URL("../", build);
const version = (JSON.parse(readFileSync(new URL("package.json", repo), "utf8")) as { version: string }).version;
const file = fileURLToPath(new URL(BUNDLE, build));
await bundle(fileURLToPath(new URL("cmd/main.js", build)), file, version);
// Made from the compiled text, before any of it runs, as the release executable's cache is.
writeFileSync(new URL(BUNDLE_CACHE, build), compileBundle(file, readFileSync(file, "utf8")).createCachedData());
