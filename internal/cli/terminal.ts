// Text a build controls (stage and job names, namespaces) shown on the operator's terminal.

/** Control characters, and the Unicode ones that move or reorder what a terminal shows. */
const UNSAFE = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu;
const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e" };

/**
 * `text` with every control character written as a visible escape (\n, \e, \x07, \u{202e}), so a
 * name can neither split a table row, colour the terminal, set its title nor reorder the line.
 */
export function terminalSafe(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.codePointAt(0)!;
    return NAMED[c] ?? (code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`);
  });
}
