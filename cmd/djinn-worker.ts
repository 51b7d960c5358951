#!/usr/bin/env node
// Entry point: flags, wiring and signals only.
import { readFileSync } from "node:fs";
import yargs from "../internal/cli/yargs.cjs";
import { commandWord, helpAsFlag, missingPositional, unknownCommand, type CommandSpec } from "../internal/cli/args.js";
import { loadDriverConfig, loadWorkerConfig } from "../internal/config/config.js";
import { createLogger } from "../internal/log/log.js";
import { EXIT, exitCodeFor, failureText, type ExitRules } from "../internal/cli/failure.js";
import { InputError } from "../internal/errors/errors.js";
import { runManifest } from "../internal/cli/run.js";

// The daemon, the operator commands and check load the database, Redis and mail libraries:
// imported only by the command that needs them, so `run` and `-version` start quickly.
const daemon = () => import("../internal/worker/daemon.js");
const commands = {
  migrate: () => import("../internal/cli/migrate.js"),
  submit: () => import("../internal/cli/submit.js"),
  status: () => import("../internal/cli/status.js"),
  logs: () => import("../internal/cli/logs.js"),
  kill: () => import("../internal/cli/kill.js"),
};
const check = () => import("../internal/cli/check.js");

/** Ends the process for `err`: one line (the stack too under DJINN_DEBUG=1) and the exit code of failure.ts. */
function die(err: unknown, rules: ExitRules = {}): never {
  process.stderr.write(failureText(err));
  process.exit(exitCodeFor(err, rules));
}

/** Runs a command; whatever it throws ends as one line and its documented exit code. */
async function guard(fn: () => Promise<number | void>, rules: ExitRules = {}): Promise<void> {
  try {
    process.exitCode = (await fn()) ?? 0;
  } catch (err) {
    die(err, rules);
  }
}

// Whatever escapes (an error thrown from a callback, a rejection nobody awaited) is reported the
// same way; the daemon adds its own rejection logger once it runs builds.
process.on("uncaughtException", (err) => die(err));

// The release binary has its version built in (it has no package.json beside it); a build reads it.
declare const DJINN_VERSION: string | undefined;
const version = typeof DJINN_VERSION === "string" ? DJINN_VERSION : (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
const goArch: Record<string, string> = { x64: "amd64", ia32: "386" };
const versionLine = `djinn-worker ${version} ${process.platform}/${goArch[process.arch] ?? process.arch}`;

// Djinn's users type Go-style flags (-config FILE, -config=FILE); yargs wants --config.
const LONG_FLAGS = new Set(["config", "driver", "version", "help", "artifacts", "objects", "env", "secret", "timeout", "notify", "follow", "key"]);
const argv = helpAsFlag(process.argv.slice(2)).map((arg) => {
  const m = /^-([a-z][a-z-]+)(=.*)?$/.exec(arg);
  return m && LONG_FLAGS.has(m[1]) ? `-${arg}` : arg;
});

// For suggestions and missing-argument messages; yargs decides what a command is.
const COMMANDS: CommandSpec[] = [
  { name: "migrate" },
  { name: "submit", positional: { name: "manifest", what: "the build manifest file (YAML)" } },
  { name: "status", positional: { name: "id", what: "a build id (printed by submit)" } },
  { name: "logs", positional: { name: "id", what: "a build id (printed by submit)" } },
  { name: "kill", positional: { name: "id", what: "a build id (printed by submit)" } },
  { name: "run", positional: { name: "manifest", what: "the build manifest file (YAML)" } },
  { name: "check" },
];
const VALUE_FLAGS = new Set(["config", "driver", "artifacts", "objects", "env", "secret", "timeout", "notify", "key"]);
const word = commandWord(argv, VALUE_FLAGS);

const configFlags = {
  config: { type: "string", default: "djinn-worker.toml", describe: "worker configuration file" },
  driver: { type: "string", default: "djinn-driver.toml", describe: "driver configuration file" },
} as const;

// Not awaited at the top level: the release binary is a CommonJS bundle, which has none.
void yargs(argv)
  .scriptName("djinn-worker")
  .usage("Usage: djinn-worker [-config FILE] [-driver FILE]  (the daemon)  |  djinn-worker <command> [options]")
  .epilog("Without a command, djinn-worker runs builds from the queue until SIGTERM.\n`djinn-worker <command> --help` shows a command's options.\nExit status: 0 ok, 1 a configuration, file or server problem, 2 bad input, 5 internal error\n(DJINN_DEBUG=1 prints its stack trace); `run` adds 1 failed, 3 killed, 4 timed out.")
  .command(
    "$0",
    // Described by the usage line and the epilog: listed, yargs glues "[default]" to it at some widths.
    false,
    (y) => y.options(configFlags),
    (args) =>
      guard(async () => {
        const { startDaemon } = await daemon();
        const running = await startDaemon(args.config, args.driver);
        process.exit(await running.done);
      }),
  )
  .command(
    "migrate",
    "create or upgrade the PostgreSQL schema (safe to run from several machines at once)",
    (y) => y.option("config", configFlags.config),
    (args) => guard(async () => (await commands.migrate()).migrateCommand(args.config, process.stdout)),
  )
  .command(
    "submit <manifest>",
    "queue a build: store it in PostgreSQL, push it to Redis, print its id",
    (y) =>
      y
        .positional("manifest", { type: "string", demandOption: true, describe: "the build manifest (YAML)" })
        .option("config", configFlags.config)
        .option("env", { type: "string", array: true, default: [] as string[], describe: "extra variable KEY=value (repeatable)" })
        .option("secret", { type: "string", array: true, default: [] as string[], describe: "masked variable KEY=value, or KEY to take the value from this environment (keeps it off the command line); stored encrypted (repeatable)" })
        .option("notify", { type: "string", array: true, default: [] as string[], describe: "address mailed when the build fails (repeatable)" })
        .option("key", { type: "string", array: true, default: [] as string[], describe: "private key NAME=FILE, stored encrypted and placed at ~/.ssh/NAME (mode 0600) in the build (repeatable)" }),
    (args) =>
      guard(() =>
        commands.submit().then(({ submitCommand }) => submitCommand({ manifest: args.manifest, configFile: args.config, env: args.env.map(String), secrets: args.secret.map(String), notify: args.notify.map(String), keys: args.key.map(String) }, process.stdout)).then(() => 0),
      ),
  )
  .command(
    "status <id>",
    "print a build's status and a line per job",
    (y) => y.positional("id", { type: "string", demandOption: true }).option("config", configFlags.config),
    (args) => guard(async () => void (await (await commands.status()).statusCommand(args.config, args.id, process.stdout))),
  )
  .command(
    "logs <id>",
    "print a build's stored output (-f: follow it until the build ends)",
    (y) =>
      y
        .positional("id", { type: "string", demandOption: true })
        .option("config", configFlags.config)
        .option("follow", { alias: "f", type: "boolean", default: false, describe: "keep printing new output until the build ends" }),
    (args) => guard(async () => (await commands.logs()).logsCommand(args.config, args.id, args.follow, process.stdout)),
  )
  .command(
    "kill <id>",
    "kill a running build (published to the worker running it)",
    (y) => y.positional("id", { type: "string", demandOption: true }).option("config", configFlags.config),
    (args) => guard(async () => ((await (await commands.kill()).killCommand(args.config, args.id, process.stdout)) ? 0 : 1)),
  )
  .command(
    "run <manifest>",
    "run one build manifest on this machine, output to the terminal",
    (y) =>
      y
        .positional("manifest", { type: "string", demandOption: true, describe: "the build manifest (YAML)" })
        .option("driver", { type: "string", describe: "driver configuration file (default: djinn-driver.toml if present, else the os driver only)" })
        .option("artifacts", { type: "string", default: "artifacts", describe: "directory collected artifacts are written to" })
        .option("objects", { type: "string", default: ".", describe: "directory objects are read from" })
        .option("env", { type: "string", array: true, default: [] as string[], describe: "extra variable KEY=value (repeatable)" })
        .option("secret", { type: "string", array: true, default: [] as string[], describe: "masked variable KEY=value, or KEY to take the value from this environment (keeps it off the command line): its value never appears in output (repeatable)" })
        .option("timeout", { type: "string", describe: 'build timeout, Go duration syntax ("30m", "1h30m")' })
        .epilog("Exit status: 0 passed (or passed with failures), 1 failed, 2 bad input, 3 killed, 4 timed out, 5 internal error."),
    async (args) => {
      const log = createLogger({ log: { level: "info" } }, { fd: 2 });
      const abort = new AbortController();
      let interrupted = 0;
      const onSignal = (sig: NodeJS.Signals) => {
        if (++interrupted > 1) process.exit(130);
        process.stderr.write(`\n${sig}: killing the build (again to quit at once)\n`);
        abort.abort();
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      await guard(() =>
        runManifest({
          manifest: args.manifest,
          driverFile: args.driver,
          artifacts: args.artifacts,
          objects: args.objects,
          env: args.env.map(String),
          secrets: args.secret.map(String),
          timeout: args.timeout,
          signal: abort.signal,
          out: process.stdout,
          log,
        }),
        { config: EXIT.badInput },
      );
    },
  )
  .command(
    "check",
    "validate worker.toml and driver.toml and print the effective configuration",
    (y) => y.options(configFlags),
    (args) =>
      guard(async () => {
        const worker = loadWorkerConfig(args.config);
        const drivers = loadDriverConfig(args.driver);
        for (const w of [...worker.warnings, ...drivers.warnings]) process.stderr.write(`warning: ${w}\n`);
        const ok = await (await check()).checkConfiguration(worker, drivers, process.stdout);
        return ok ? 0 : 1;
      }),
  )
  .version("version", "print the version", versionLine)
  .alias("v", "version")
  .help("help")
  .alias("h", "help")
  .strict()
  .locale("en")
  .wrap(Math.min(110, process.stdout.columns || Number(process.env.COLUMNS) || 100))
  .fail((msg, err, y) => {
    // With a message, yargs found a mistake on the command line; without, a command failed.
    if (err) die(msg ? new InputError(msg) : err);
    // yargs takes an unknown command for an argument of the daemon: say what it is, with a suggestion.
    const unknown = /^Unknown arguments?:/.test(msg) ? unknownCommand(word, COMMANDS) : undefined;
    if (unknown) die(new InputError(unknown));
    const command = COMMANDS.find((c) => c.name === word);
    if (command?.positional && /^Not enough non-option arguments/.test(msg)) die(new InputError(missingPositional(command)));
    process.stderr.write(`djinn-worker: ${msg}\n\n${y.help()}\n`);
    process.exit(EXIT.badInput);
  })
  .parseAsync()
  .catch((err: unknown) => die(err));
