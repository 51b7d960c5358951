// Words for a POSIX shell: every script or command line this worker builds from values quotes them here.

/** A value as one shell word: as it is when it holds only characters no shell treats specially, else single-quoted. */
export function shellQuote(value: string): string {
  return /^[A-Za-z0-9_\-./:=@%+,]+$/.test(value) ? value : singleQuote(value);
}

/** A value for a POSIX shell, always single-quoted: `'` becomes `'\''`. */
export function singleQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Whether `name` can be a shell variable's name (what `export NAME=...` takes). */
export function isShellName(name: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name);
}
