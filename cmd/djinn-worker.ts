#!/usr/bin/env node
// Entry point: flags, wiring and signals only.
import { readFileSync } from "node:fs";
import yargs from "../internal/cli/yargs.cjs";
import { commandWord, helpAsFlag, missingPositional, unknownCommand, type CommandSpec } from "../internal/cli/args.js";
import { ConfigError, loadDriverConfig, loadWorkerConfig } from "../internal/config/config.js";
import { createLogger } from "../internal/log/log.js";
import { EXIT, InputError, runManifest } from "../internal/run/run.js";
import { CryptoError } from "../internal/crypto/crypto.js";

// The daemon, the operator commands and check load the database, Redis and mail libraries:
// imported only by the command that needs them, so `run` and `-version` start quickly.
const daemon = () => import("../internal/worker/daemon.js");
const commands = () => import("../internal/worker/commands.js");
const check = () => import("../internal/check/check.js");

/** Runs an operator command: bad input exits 2, an unreachable or unusable service exits 1. */
async function operator(fn: () => Promise<number | void>): Promise<void> {
  try {
    process.exitCode = (await fn()) ?? 0;
  } catch (err) {
    if (err instanceof InputError) fail(err, EXIT.badInput);
    if (err instanceof ConfigError || err instanceof CryptoError || (err as Error).name === "DatabaseError" || (err as Error).name === "QueueError") fail(err, 1);
    process.stderr.write(`djinn-worker: ${(err as Error).stack}\n`);
    process.exit(EXIT.internal);
  }
}

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

/** Prints a bad-input error as one line and exits with `code`. */
function fail(err: unknown, code: number): never {
  process.stderr.write(`djinn-worker: ${(err as Error).message}\n`);
  process.exit(code);
}

const configFlags = {
  config: { type: "string", default: "djinn-worker.toml", describe: "worker configuration file" },
  driver: { type: "string", default: "djinn-driver.toml", describe: "driver configuration file" },
} as const;

// Not awaited at the top level: the release binary is a CommonJS bundle, which has none.
void yargs(argv)
  .scriptName("djinn-worker")
  .usage("Usage: djinn-worker [-config FILE] [-driver FILE]  (the daemon)  |  djinn-worker <command> [options]")
  .epilog("Without a command, djinn-worker runs builds from the queue until SIGTERM.\n`djinn-worker <command> --help` shows a command's options.")
  .command(
    "$0",
    // Described by the usage line and the epilog: listed, yargs glues "[default]" to it at some widths.
    false,
    (y) => y.options(configFlags),
    async (args) => {
      try {
        const { startDaemon } = await daemon();
        const running = await startDaemon(args.config, args.driver);
        process.exit(await running.done);
      } catch (err) {
        if ((err as Error).name === "StartupError") fail(err, (err as { exitCode?: number }).exitCode ?? 1);
        if (err instanceof ConfigError || err instanceof CryptoError) fail(err, 1);
        process.stderr.write(`djinn-worker: ${(err as Error).stack}\n`);
        process.exit(1);
      }
    },
  )
  .command(
    "migrate",
    "create or upgrade the PostgreSQL schema (safe to run from several machines at once)",
    (y) => y.option("config", configFlags.config),
    (args) => operator(async () => (await commands()).migrateCommand(args.config, process.stdout)),
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
      operator(() =>
        commands().then(({ submitCommand }) => submitCommand({ manifest: args.manifest, configFile: args.config, env: args.env.map(String), secrets: args.secret.map(String), notify: args.notify.map(String), keys: args.key.map(String) }, process.stdout)).then(() => 0),
      ),
  )
  .command(
    "status <id>",
    "print a build's status and a line per job",
    (y) => y.positional("id", { type: "string", demandOption: true }).option("config", configFlags.config),
    (args) => operator(async () => void (await (await commands()).statusCommand(args.config, args.id, process.stdout))),
  )
  .command(
    "logs <id>",
    "print a build's stored output (-f: follow it until the build ends)",
    (y) =>
      y
        .positional("id", { type: "string", demandOption: true })
        .option("config", configFlags.config)
        .option("follow", { alias: "f", type: "boolean", default: false, describe: "keep printing new output until the build ends" }),
    (args) => operator(async () => (await commands()).logsCommand(args.config, args.id, args.follow, process.stdout)),
  )
  .command(
    "kill <id>",
    "kill a running build (published to the worker running it)",
    (y) => y.positional("id", { type: "string", demandOption: true }).option("config", configFlags.config),
    (args) => operator(async () => ((await (await commands()).killCommand(args.config, args.id, process.stdout)) ? 0 : 1)),
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
      try {
        const code = await runManifest({
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
        });
        process.exitCode = code;
      } catch (err) {
        if (err instanceof InputError || err instanceof ConfigError) fail(err, EXIT.badInput);
        process.stderr.write(`djinn-worker: ${(err as Error).stack}\n`);
        process.exit(EXIT.internal);
      }
    },
  )
  .command(
    "check",
    "validate worker.toml and driver.toml and print the effective configuration",
    (y) => y.options(configFlags),
    async (args) => {
      try {
        const worker = loadWorkerConfig(args.config);
        const drivers = loadDriverConfig(args.driver);
        for (const w of [...worker.warnings, ...drivers.warnings]) process.stderr.write(`warning: ${w}\n`);
        const ok = await (await check()).checkConfiguration(worker, drivers, process.stdout);
        process.exitCode = ok ? 0 : 1;
      } catch (err) {
        if (err instanceof ConfigError) fail(err, 1);
        throw err;
      }
    },
  )
  .version("version", "print the version", versionLine)
  .alias("v", "version")
  .help("help")
  .alias("h", "help")
  .strict()
  .locale("en")
  .wrap(Math.min(110, process.stdout.columns || Number(process.env.COLUMNS) || 100))
  .fail((msg, err, y) => {
    if (err) throw err;
    // yargs takes an unknown command for an argument of the daemon: say what it is, with a suggestion.
    const unknown = /^Unknown arguments?:/.test(msg) ? unknownCommand(word, COMMANDS) : undefined;
    if (unknown) fail(new InputError(unknown), EXIT.badInput);
    const command = COMMANDS.find((c) => c.name === word);
    if (command?.positional && /^Not enough non-option arguments/.test(msg)) fail(new InputError(missingPositional(command)), EXIT.badInput);
    process.stderr.write(`djinn-worker: ${msg}\n\n${y.help()}\n`);
    process.exit(EXIT.badInput);
  })
  .parseAsync();
