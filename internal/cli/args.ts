// The command line before and around yargs: Djinn's Go-style flags, `help [command]`, and the
// mistakes yargs would answer in its own words (an unknown command, a missing positional), each
// turned into one line in the project's words.
import { suggestion } from "../config/schema.js";

export interface CommandSpec {
  name: string;
  /** The positional it requires, e.g. "manifest", and what it is. */
  positional?: { name: string; what: string };
}

/**
 * Djinn's users type Go-style flags (`-config FILE`, `-config=FILE`); yargs wants `--config`.
 * `flags` are the long flags to rewrite: any other single-dash word is left to yargs.
 */
export function goStyleFlags(argv: string[], flags: ReadonlySet<string>): string[] {
  return argv.map((arg) => {
    const m = /^-([a-z][a-z-]+)(=.*)?$/.exec(arg);
    return m && flags.has(m[1]) ? `-${arg}` : arg;
  });
}

/** `help [command]` is `[command] --help`. */
export function helpAsFlag(argv: string[]): string[] {
  return argv[0] === "help" ? [...argv.slice(1, 2), "--help"] : argv;
}

/** The command word in `argv` (the first argument that is neither a flag nor a flag's value). */
export function commandWord(argv: string[], valueFlags: ReadonlySet<string>): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") return argv[i + 1];
    const flag = /^--?([A-Za-z][A-Za-z-]*)(=.*)?$/.exec(arg);
    if (flag) {
      if (!flag[2] && valueFlags.has(flag[1])) i++;
      continue;
    }
    return arg;
  }
  return undefined;
}

/** The error line for a command word that names no command, or undefined when it names one. */
export function unknownCommand(word: string | undefined, commands: CommandSpec[]): string | undefined {
  if (word === undefined || commands.some((c) => c.name === word)) return undefined;
  const names = commands.map((c) => c.name);
  const hint = suggestion(word, names);
  return `unknown command ${JSON.stringify(word)}${hint || `: the commands are ${names.join(", ")}`} (djinn-worker --help describes them)`;
}

/** The error line for a command run without its required positional. */
export function missingPositional(command: CommandSpec): string {
  const p = command.positional!;
  return `${command.name} needs <${p.name}>, ${p.what}: djinn-worker ${command.name} <${p.name}> [options]`;
}
