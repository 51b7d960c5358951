// `--name N` from the command line, shared by the benchmarks.
export function numberArg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} takes a number, got ${JSON.stringify(process.argv[i + 1])}`);
  return value;
}

/** `--name VALUE` from the command line, or undefined when not given. */
export function stringArg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const value = process.argv[i + 1];
  if (value === undefined || value.startsWith("--")) throw new Error(`--${name} takes a value`);
  return value;
}

/** Whether the flag `--name` is on the command line. */
export function flagArg(name: string): boolean {
  return process.argv.includes(`--${name}`);
}
