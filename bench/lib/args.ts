// `--name N` from the command line, shared by the benchmarks.
export function numberArg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} takes a number, got ${JSON.stringify(process.argv[i + 1])}`);
  return value;
}
