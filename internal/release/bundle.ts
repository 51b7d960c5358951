// The release binary: the CLI bundled by esbuild into one CommonJS script, made a Node.js
// single executable application (the node binary with the script injected by postject).
import { execFileSync } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { builtinModules, createRequire } from "node:module";
import path from "node:path";
import * as esbuild from "esbuild";

/** The fuse Node.js checks to know it carries an application (fixed by Node.js). */
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

/**
 * Optional parts the libraries ask for in a try block and do without: ssh2's crypto binding and
 * cpu-features, pg-native, and supports-color (debug, under ioredis, at load). The executable's
 * require() loads built-in modules only and prints a warning on the first other one, so each is
 * bundled as a module that is not there: require() fails as for a missing package, quietly.
 */
const absentOptionalParts: esbuild.Plugin = {
  name: "absent-optional-parts",
  setup(build) {
    build.onResolve({ filter: /\.node$|^cpu-features$|^pg-native$|^supports-color$/ }, (args) => ({ path: args.path, namespace: "absent" }));
    build.onLoad({ filter: /.*/, namespace: "absent" }, (args) => ({
      contents: `throw Object.assign(new Error(${JSON.stringify(`Cannot find module '${args.path}'`)}), { code: "MODULE_NOT_FOUND" });`,
      loader: "js",
    }));
  },
};

/** Bundles `entry` (the compiled CLI) into `outfile`; returns the npm packages it carries. */
export async function bundle(entry: string, outfile: string, version: string): Promise<string[]> {
  const result = await esbuild.build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: "node",
    target: "node20",
    // A single executable application runs one CommonJS script, whose require() knows only built-in modules.
    format: "cjs",
    define: { DJINN_VERSION: JSON.stringify(version), "import.meta.url": "__djinn_import_meta_url" },
    // ES modules among the dependencies ask for import.meta.url: they get the executable's.
    banner: { js: 'const __djinn_import_meta_url = require("node:url").pathToFileURL(__filename).href;' },
    plugins: [absentOptionalParts],
    minifySyntax: true,
    minifyWhitespace: true,
    minifyIdentifiers: true,
    keepNames: true,
    legalComments: "none",
    metafile: true,
    logLevel: "warning",
  });
  // What the bundle still requires at run time: built-in modules only.
  for (const output of Object.values(result.metafile.outputs)) {
    for (const imported of output.imports) {
      if (!imported.external || imported.path.startsWith("node:") || builtinModules.includes(imported.path)) continue;
      throw new Error(`the bundle would load ${imported.path} from disk at run time`);
    }
  }
  requireAscii(outfile);
  const packages = new Set<string>();
  for (const input of Object.keys(result.metafile.inputs)) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m) packages.add(m[1]);
  }
  return [...packages].sort();
}

/**
 * The executable holds its script in memory as a string: one non-ASCII character makes all of it a
 * two-byte string, twice the size (some 4 MiB more). esbuild escapes such characters in strings,
 * but not in regular expressions or tagged templates: those are escaped in the source.
 */
function requireAscii(script: string): void {
  const text = readFileSync(script, "utf8");
  const at = text.search(/[^\x00-\x7f]/);
  if (at >= 0) throw new Error(`the bundle has a non-ASCII character near ${JSON.stringify(text.slice(Math.max(0, at - 40), at + 20))}: escape it in the source (a regular expression or tagged template)`);
}

/** Makes `exe` from the node binary running this script and the bundled `script`. */
export function singleExecutable(script: string, exe: string, workDir: string): void {
  const blob = path.join(workDir, "sea.blob");
  const config = path.join(workDir, "sea-config.json");
  writeFileSync(config, JSON.stringify({ main: script, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true }));
  execFileSync(process.execPath, ["--experimental-sea-config", config], { stdio: ["ignore", "pipe", "pipe"] });
  copyFileSync(process.execPath, exe);
  // Symbols and debug sections (some 12 MiB of a Node.js 20 binary) serve the worker nothing: stripped before injecting.
  try {
    execFileSync("strip", ["--strip-all", exe], { stdio: "ignore" });
  } catch {
    process.stderr.write("release: strip not found or failed (binutils): the executable keeps its symbols\n");
  }
  // postject's own command line, quiet unless it fails (it warns about every note of the binary).
  const postject = createRequire(import.meta.url).resolve("postject/dist/cli.js");
  try {
    execFileSync(process.execPath, [postject, exe, "NODE_SEA_BLOB", blob, "--sentinel-fuse", SEA_FUSE], { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`postject failed: ${e.stderr || e.stdout || e.message}`);
  }
}
