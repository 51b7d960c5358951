// djinn-worker's commands: for each, its flags and help for yargs, and the module that runs it.
// The daemon, the operator commands and check load the database, Redis and mail libraries, `run`
// the drivers: each is imported only when its command runs, so `-version` and `--help` start quickly.
import type { Argv } from "yargs";
import { CONFIG_SEARCH, defaultConfigFile } from "../config/paths.js";
import type { CommandSpec } from "./args.js";
import { EXIT, guard } from "./failure.js";

export interface Command extends CommandSpec {
  /** Declares the command (usage, description, flags, handler) on `y`. */
  declare(y: Argv): Argv;
}

/** Every long flag of every command: typed Go-style (`-config`), they are rewritten for yargs. */
export const LONG_FLAGS: ReadonlySet<string> = new Set(["config", "driver", "version", "help", "artifacts", "objects", "env", "secret", "timeout", "notify", "follow", "key", "wait-for-worker", "password-file", "repo", "ref", "commit", "git-dir", "cache", "namespace", "older-than"]);
/** The flags that take a value, so that the command word is found after them. */
export const VALUE_FLAGS: ReadonlySet<string> = new Set(["config", "driver", "artifacts", "objects", "env", "secret", "timeout", "notify", "key", "password-file", "repo", "ref", "commit", "git-dir", "cache", "namespace", "older-than"]);
/** The value flags that may be given more than once; any other given twice is a mistake. */
export const REPEATABLE_FLAGS: ReadonlySet<string> = new Set(["env", "secret", "notify", "key"]);

const configFlags = {
  config: { type: "string", default: defaultConfigFile("worker"), defaultDescription: CONFIG_SEARCH.worker.join(", else "), describe: "worker configuration file" },
  driver: { type: "string", default: defaultConfigFile("driver"), defaultDescription: CONFIG_SEARCH.driver.join(", else "), describe: "driver configuration file" },
} as const;

const manifest = { name: "manifest", what: "the build manifest file (YAML)" };
const buildId = { name: "id", what: "a build id (printed by submit)" };
const repeatable = (describe: string) => ({ type: "string", array: true, default: [] as string[], describe }) as const;

/** Without a command: the daemon. */
export const DAEMON = {
  declare: (y: Argv): Argv =>
    y.command(
      "$0",
      // Described by the usage line and the epilog: listed, yargs glues "[default]" to it at some widths.
      false,
      (y) => y.options(configFlags),
      (args) => runDaemon(args.config, args.driver),
    ),
};

/** Runs the daemon until it stops, then exits with its code. */
export function runDaemon(config: string, driver: string): Promise<void> {
  return guard(async () => {
    const idleMemory = await import("../worker/idle-memory.js");
    idleMemory.keepYoungGenerationSmall();
    const { startDaemon } = await import("../worker/daemon.js");
    const running = await startDaemon(config, driver);
    idleMemory.collectStartupGarbage();
    process.exit(await running.done);
  });
}

/**
 * The daemon's own command line, when that is all there is: no command, and -config and -driver
 * each at most once with a value. The service manager starts it so; it needs no parser loaded.
 */
export function plainDaemonLine(argv: string[]): { config: string; driver: string } | undefined {
  const got: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(config|driver)(?:=(.*))?$/.exec(argv[i]);
    if (!m || m[1] in got) return undefined;
    const value = m[2] ?? argv[++i];
    if (value === undefined || value === "" || (m[2] === undefined && value.startsWith("-"))) return undefined;
    got[m[1]] = value;
  }
  return { config: got.config ?? defaultConfigFile("worker"), driver: got.driver ?? defaultConfigFile("driver") };
}

const migrate: Command = {
  name: "migrate",
  declare: (y) =>
    y.command(
      "migrate",
      "create or upgrade the PostgreSQL schema (safe to run from several machines at once)",
      (y) => y.option("config", configFlags.config),
      (args) => guard(async () => (await import("./migrate.js")).migrateCommand(args.config, process.stdout)),
    ),
};

const submit: Command = {
  name: "submit",
  positional: manifest,
  declare: (y) =>
    y.command(
      "submit <manifest>",
      "queue a build: store it in PostgreSQL, push it to Redis, print its id",
      (y) =>
        y
          .positional("manifest", { type: "string", demandOption: true, describe: "the build manifest (YAML)" })
          .option("config", configFlags.config)
          .option("env", repeatable("extra variable KEY=value (repeatable)"))
          .option("secret", repeatable("masked variable KEY=value, or KEY to take the value from this environment (keeps it off the command line); stored encrypted (repeatable)"))
          .option("notify", repeatable("address mailed when the build fails (repeatable)"))
          .option("key", repeatable("private key NAME=FILE, stored encrypted and placed at ~/.ssh/NAME (mode 0600) in the build (repeatable)"))
          .option("wait-for-worker", { type: "boolean", default: false, describe: "refuse (exit 1, nothing stored) when no live worker serves the build's queue; without it, submit warns and queues it" }),
      (args) =>
        guard(async () => {
          const { submitCommand } = await import("./submit.js");
          await submitCommand({ manifest: args.manifest, configFile: args.config, env: args.env.map(String), secrets: args.secret.map(String), notify: args.notify.map(String), keys: args.key.map(String), waitForWorker: args.waitForWorker }, process.stdout);
        }),
    ),
};

const status: Command = {
  name: "status",
  positional: buildId,
  declare: (y) =>
    y.command(
      "status <id>",
      "print a build's status and a line per job",
      (y) => y.positional("id", { type: "string", demandOption: true }).option("config", configFlags.config),
      (args) => guard(async () => void (await (await import("./status.js")).statusCommand(args.config, args.id, process.stdout))),
    ),
};

const logs: Command = {
  name: "logs",
  positional: buildId,
  declare: (y) =>
    y.command(
      "logs <id>",
      "print a build's stored output (-f: follow it until the build ends)",
      (y) =>
        y
          .positional("id", { type: "string", demandOption: true })
          .option("config", configFlags.config)
          .option("follow", { alias: "f", type: "boolean", default: false, describe: "keep printing new output until the build ends" }),
      (args) => guard(async () => (await import("./logs.js")).logsCommand(args.config, args.id, args.follow, process.stdout)),
    ),
};

const kill: Command = {
  name: "kill",
  positional: buildId,
  declare: (y) =>
    y.command(
      "kill <id>",
      "kill a build: a running one through the worker running it, a queued one is cancelled before it runs",
      (y) => y.positional("id", { type: "string", demandOption: true }).option("config", configFlags.config),
      (args) => guard(async () => ((await (await import("./kill.js")).killCommand(args.config, args.id, process.stdout)) ? 0 : 1)),
    ),
};

/** What `run` is given: its manifest and flags, as yargs or plainRunLine reads them. */
export interface RunArgs {
  manifest: string;
  driver?: string;
  artifacts: string;
  objects: string;
  cache?: string;
  env: string[];
  secret: string[];
  timeout?: string;
}

/** `run`'s positional and flags, for yargs. */
export const runOptions = (y: Argv) =>
  y
    .positional("manifest", { type: "string", demandOption: true, describe: "the build manifest (YAML)" })
    .option("driver", { type: "string", describe: "driver configuration file (default: djinn-driver.toml if present, else the os driver only)" })
    .option("artifacts", { type: "string", default: "artifacts", describe: "directory collected artifacts are written to" })
    .option("objects", { type: "string", default: ".", describe: "directory objects are read from" })
    .option("cache", { type: "string", describe: "directory the manifest's cache is kept in between runs (docs/cache.md); without it, a manifest's cache is neither restored nor saved" })
    .option("env", repeatable("extra variable KEY=value (repeatable)"))
    .option("secret", repeatable("masked variable KEY=value, or KEY to take the value from this environment (keeps it off the command line): its value never appears in output (repeatable)"))
    .option("timeout", { type: "string", describe: 'build timeout, Go duration syntax ("30m", "1h30m")' })
    .epilog("Exit status: 0 passed (or passed with failures), 1 failed, 2 bad input, 3 killed, 4 timed out, 5 internal error.");

/** The flags of `run` that take a value, single or repeatable (as runOptions declares them). */
const RUN_SINGLE = new Set(["driver", "artifacts", "objects", "cache", "timeout"]);
const RUN_REPEATABLE = new Set(["env", "secret"]);

/**
 * `run`'s command line, when it is plain: `run MANIFEST` then flags of `run` each with a value
 * (`--flag VALUE` or `--flag=VALUE`), a single-value one at most once. A build run from a script
 * then starts without the parser; anything else (help, a mistake, an unusual spelling) is the parser's.
 */
export function plainRunLine(argv: string[]): RunArgs | undefined {
  const [word, manifest] = argv;
  // yargs may read a positional that looks like a number as one.
  if (word !== "run" || manifest === undefined || /^[-+.\d]|^$/.test(manifest)) return undefined;
  const args: RunArgs = { manifest, driver: undefined, artifacts: "artifacts", objects: ".", cache: undefined, env: [], secret: [], timeout: undefined };
  const seen = new Set<string>();
  for (let i = 2; i < argv.length; i++) {
    const m = /^--([a-z]+)(?:=(.*))?$/s.exec(argv[i]);
    if (!m) return undefined;
    const [, flag, inline] = m;
    const value = inline ?? argv[++i];
    if (value === undefined || value === "" || value.startsWith("-")) return undefined;
    if (RUN_REPEATABLE.has(flag)) args[flag as "env" | "secret"].push(value);
    else if (RUN_SINGLE.has(flag) && !seen.has(flag)) {
      seen.add(flag);
      args[flag as "driver" | "artifacts" | "objects" | "cache" | "timeout"] = value;
    } else return undefined;
  }
  return args;
}

/** Runs one manifest on this machine, then exits with its build's code. */
export function runCommand(args: RunArgs): Promise<void> {
  return guard(
    async () => {
      const [{ runManifest }, { createLogger, deferredLogger }, { killOnSignals }] = await Promise.all([import("./run.js"), import("../log/log.js"), import("./signals.js")]);
      const log = deferredLogger("info", () => createLogger({ log: { level: "info" } }, { fd: 2 }));
      const signal = killOnSignals();
      const { manifest, driver: driverFile, artifacts, objects, timeout, cache } = args;
      return runManifest({ manifest, driverFile, artifacts, objects, cache, env: args.env, secrets: args.secret, timeout, signal, out: process.stdout, log });
    },
    // The driver file of `run` is its input, not a daemon's configuration.
    { config: EXIT.badInput },
  );
}

const run: Command = {
  name: "run",
  positional: manifest,
  declare: (y) =>
    y.command(
      "run <manifest>",
      "run one build manifest on this machine, output to the terminal",
      runOptions,
      (args) => runCommand({ manifest: args.manifest, driver: args.driver, artifacts: args.artifacts, objects: args.objects, cache: args.cache, env: args.env.map(String), secret: args.secret.map(String), timeout: args.timeout }),
    ),
};

const cache: Command = {
  name: "cache",
  positional: { name: "action", what: "list or rm" },
  declare: (y) =>
    y.command(
      "cache <action> [key]",
      "list the build caches ([cache] in worker.toml), remove one, or remove those unused for a while",
      (y) =>
        y
          .positional("action", { type: "string", demandOption: true, describe: "list: the entries, most recently used first; rm: remove KEY, or those not used for D" })
          .positional("key", { type: "string", describe: "the key to remove (as the build expanded it)" })
          .option("config", configFlags.config)
          .option("namespace", { type: "string", describe: "the namespace whose entries are listed or removed (without it: rm KEY removes a build's without a namespace)" })
          .option("older-than", { type: "string", describe: 'rm: every entry not used for this long (Go duration: "720h")' }),
      (args) => guard(async () => (await import("./cache.js")).cacheCommand(args.config, { action: args.action, key: args.key, namespace: args.namespace, olderThan: args.olderThan }, process.stdout)),
    ),
};

const check: Command = {
  name: "check",
  declare: (y) =>
    y.command(
      "check",
      "validate worker.toml and driver.toml and print the effective configuration",
      (y) => y.options(configFlags),
      (args) =>
        guard(async () => {
          // The files first, as the daemon reads them: their mistakes are reported before the service libraries load.
          const { loadDaemonConfig } = await import("../worker/configuration.js");
          const { worker, drivers } = loadDaemonConfig(args.config, args.driver);
          for (const w of [...worker.warnings, ...drivers.warnings]) process.stderr.write(`warning: ${w}\n`);
          return (await (await import("./check.js")).checkConfiguration(worker, drivers, process.stdout)) ? 0 : 1;
        }),
    ),
};

const web: Command = {
  name: "web",
  declare: (y) =>
    y.command(
      "web",
      "serve the web view of the builds ([web] addr in worker.toml): pages, live logs, the JSON API, kill and re-run for signed-in users, and the forges' webhooks ([[providers]])",
      (y) => y.option("config", configFlags.config),
      (args) =>
        guard(async () => {
          const { startWeb } = await import("../web/server.js");
          process.exit(await (await startWeb(args.config)).done);
        }),
    ),
};

const user: Command = {
  name: "user",
  positional: { name: "action", what: "add NAME, rm NAME or list" },
  declare: (y) =>
    y.command(
      "user <action> [name]",
      "the web's users: add NAME (the password from standard input or --password-file; again: a new password), rm NAME, list",
      (y) =>
        y
          .positional("action", { type: "string", choices: ["add", "rm", "list"], demandOption: true })
          .positional("name", { type: "string", describe: "the user's name" })
          .option("config", configFlags.config)
          .option("password-file", { type: "string", describe: "file holding the password (one trailing newline dropped); without it, standard input" }),
      (args) => guard(async () => (await import("./access.js")).userCommand(args.config, args.action, args.name, args.passwordFile, process.stdout)),
    ),
};

const token: Command = {
  name: "token",
  positional: { name: "action", what: "add USER, rm ID or list" },
  declare: (y) =>
    y.command(
      "token <action> [arg]",
      "API tokens of the web's users: add USER (prints a new token, once), rm ID, list",
      (y) =>
        y
          .positional("action", { type: "string", choices: ["add", "rm", "list"], demandOption: true })
          .positional("arg", { type: "string", describe: "add: the user; rm: the token's id (the 12 hex digits after djw_)" })
          .option("config", configFlags.config),
      (args) => guard(async () => (await import("./access.js")).tokenCommand(args.config, args.action, args.arg, process.stdout)),
    ),
};

const trigger: Command = {
  name: "trigger",
  declare: (y) =>
    y.command(
      "trigger",
      "start the builds of pushed refs (a post-receive hook: `<old> <new> <ref>` lines on stdin), one per manifest at each commit",
      (y) =>
        y
          .option("config", configFlags.config)
          .option("repo", { type: "string", describe: "URL the builds clone the repository from (default: the --git-dir path)" })
          .option("git-dir", { type: "string", describe: "the repository to read the pushed commits from (a hook's own); without it they are fetched from --repo" })
          .option("ref", { type: "string", describe: "the pushed ref (with --commit, instead of stdin)" })
          .option("commit", { type: "string", describe: "the pushed commit (with --ref)" })
          .epilog("Prints a line per build (its id and manifest) or why none started. Exit 1 when a ref could not be read."),
      (args) =>
        guard(async () => {
          const { triggerCommand } = await import("./trigger.js");
          return triggerCommand({ configFile: args.config, repo: args.repo, gitDir: args.gitDir, ref: args.ref, commit: args.commit }, process.stdout);
        }),
    ),
};

/** The commands, in the order `--help` lists them. */
export const COMMANDS: Command[] = [migrate, submit, status, logs, kill, run, check, web, user, token, trigger, cache];
