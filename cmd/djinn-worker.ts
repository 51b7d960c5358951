#!/usr/bin/env node
// Entry point: the command line of internal/cli, and one report for whatever escapes it.
import { die } from "../internal/cli/failure.js";
import { program } from "../internal/cli/program.js";
import { versionLine } from "../internal/cli/version.js";

// An error thrown from a callback is reported as any command's failure is; the daemon adds its
// own rejection logger once it runs builds.
process.on("uncaughtException", (err) => die(err));

// Not awaited at the top level: the release binary is a CommonJS bundle, which has none.
void program(process.argv.slice(2), versionLine());
