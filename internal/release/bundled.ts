// The bundled CLI as a build carries it: where `npm run build` puts the bundle and its V8 code
// cache, and how the bundle is compiled. It is compiled the same way when the cache is made as
// when it runs: V8 refuses a cache made from other source text.
import { createRequire } from "node:module";
import path from "node:path";
import { Script } from "node:vm";

/** The bundle and its code cache, relative to the build's folder (build/). */
export const BUNDLE = "bundle/djinn-worker.cjs";
export const BUNDLE_CACHE = "bundle/djinn-worker.cache";

/** The bundle as Node.js wraps a CommonJS module, on the first line so that line numbers hold. */
export function compileBundle(file: string, source: string, cachedData?: Buffer): Script {
  return new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: file, cachedData });
}

/**
 * Runs the bundle `file` (its text `source`) as the process's program. A cache V8 refuses (made
 * by another Node.js) costs only time: the bundle is compiled from its text.
 */
export function runBundle(file: string, source: string, cachedData: Buffer | undefined): void {
  const script = compileBundle(file, source, cachedData);
  const module = { exports: {} };
  const main = script.runInThisContext() as (exports: object, require: NodeJS.Require, module: object, filename: string, dirname: string) => void;
  main(module.exports, createRequire(file), module, file, path.dirname(file));
}
