// The command line: yargs with djinn-worker's commands, help and version, and every mistake on it
// reported as one line.
import { commandWord, goStyleFlags, helpAsFlag, missingPositional, unknownCommand } from "./args.js";
import { COMMANDS, DAEMON, LONG_FLAGS, plainDaemonLine, plainRunLine, REPEATABLE_FLAGS, runCommand, runDaemon, VALUE_FLAGS } from "./commands.js";
import { EXIT, die } from "./failure.js";
import { InputError } from "../errors/errors.js";

const USAGE = "Usage: djinn-worker [-config FILE] [-driver FILE]  (the daemon)  |  djinn-worker <command> [options]";
const EPILOG = [
  "Without a command, djinn-worker runs builds from the queue until SIGTERM.",
  "`djinn-worker <command> --help` shows a command's options.",
  "Exit status: 0 ok, 1 a configuration, file or server problem, 2 bad input, 5 internal error",
  "(DJINN_DEBUG=1 prints its stack trace); `run` adds 1 failed, 3 killed, 4 timed out.",
].join("\n");

/** Parses `args` (the process's arguments) and runs the command they name; it ends the process on failure. */
export async function program(args: string[], versionLine: string): Promise<unknown> {
  const argv = goStyleFlags(helpAsFlag(args), LONG_FLAGS);
  // The daemon as a service manager starts it: a worker that waits for builds does not keep the parser.
  const daemon = plainDaemonLine(argv);
  if (daemon) return runDaemon(daemon.config, daemon.driver);
  // So does a build run from a script: yargs and its help cost `run` more than the build's own work.
  const run = plainRunLine(argv);
  if (run) return runCommand(run);
  const { default: yargs } = await import("./yargs.cjs");
  const word = commandWord(argv, VALUE_FLAGS);
  const y = yargs(argv).scriptName("djinn-worker").usage(USAGE).epilog(EPILOG);
  for (const command of [DAEMON, ...COMMANDS]) command.declare(y);
  return y
    .version("version", "print the version", versionLine)
    .alias("v", "version")
    .help("help")
    .alias("h", "help")
    .strict()
    .check(onceEach)
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
}

/** A single-value flag given twice (`--artifacts A --artifacts B`) is refused rather than guessed at. */
export function onceEach(argv: Record<string, unknown>): true {
  for (const flag of VALUE_FLAGS) {
    const value = argv[flag];
    if (!REPEATABLE_FLAGS.has(flag) && Array.isArray(value)) throw new InputError(`-${flag} is given ${value.length} times: give it once`);
  }
  return true;
}
