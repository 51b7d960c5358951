// The program: the command line of internal/cli, and one report for whatever escapes it. The
// release executable and a build's bundle (build/cmd/djinn-worker.js runs it) are made from here.
import { die } from "../internal/cli/failure.js";
import { program } from "../internal/cli/program.js";
import { versionLine } from "../internal/cli/version.js";

// An error thrown from a callback is reported as any command's failure is; the daemon adds its
// own rejection logger once it runs builds.
process.on("uncaughtException", (err) => die(err));

// Not awaited at the top level: the bundles are CommonJS, which has none.
void program(process.argv.slice(2), versionLine());
