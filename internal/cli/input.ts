// The operator's arguments (build ids, KEY=value lists, --key files, the manifest file): each
// problem is an InputError, one line naming the flag or file, exit 2.
import fs from "node:fs/promises";
import { InputError } from "../errors/errors.js";
import { decodeManifest, parseManifest, type ParsedManifest } from "../manifest/manifest.js";
import { maskedValueProblem } from "../runner/mask.js";
import { isShellName } from "../shell/quote.js";

/**
 * Masked variables: `KEY=value`, or `KEY` alone to take the value from this process's
 * environment, so the value need not appear on a command line (where `ps` shows it).
 */
export function parseSecrets(items: string[]): [string, string][] {
  const secrets = items.map((item): [string, string] => {
    if (isShellName(item)) {
      const value = process.env[item];
      if (value === undefined) throw new InputError(`--secret ${JSON.stringify(item)}: expected KEY=value, or KEY naming a variable set in this environment`);
      return [item, value];
    }
    return parseAssignments("--secret", [item])[0];
  });
  for (const [key, value] of secrets) {
    const problem = maskedValueProblem(key, value);
    if (problem) throw new InputError(`--secret ${key}: ${problem}`);
  }
  return secrets;
}

export function parseAssignments(flag: string, items: string[]): [string, string][] {
  return items.map((item) => {
    const eq = item.indexOf("=");
    if (eq <= 0 || !isShellName(item.slice(0, eq))) throw new InputError(`${flag} ${JSON.stringify(item)}: expected KEY=value`);
    return [item.slice(0, eq), item.slice(eq + 1)];
  });
}

export function parseBuildId(text: string): number {
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) <= 0) throw new InputError(`${JSON.stringify(text)} is not a build id (a positive integer)`);
  return Number(text);
}

/** Reads --key NAME=FILE arguments; the name becomes a file in ~/.ssh, so it is a plain file name. */
export async function readKeys(items: string[]): Promise<[string, string][]> {
  const keys: [string, string][] = [];
  for (const item of items) {
    const eq = item.indexOf("=");
    const name = eq < 0 ? "" : item.slice(0, eq);
    if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(name)) throw new InputError(`--key ${JSON.stringify(item)}: expected NAME=FILE with NAME a file name for ~/.ssh`);
    const file = item.slice(eq + 1);
    try {
      keys.push([name, await fs.readFile(file, "utf8")]);
    } catch (err) {
      throw new InputError(`--key ${name}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`);
    }
  }
  return keys;
}

/** Reads and parses a manifest file; any problem is an InputError naming the file. */
export async function readManifestFile(file: string): Promise<ParsedManifest & { text: string }> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    throw new InputError(`${file}: cannot read manifest: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`);
  }
  try {
    const text = decodeManifest(bytes);
    return { ...parseManifest(text), text };
  } catch (err) {
    throw new InputError(`${file}: ${(err as Error).message}`);
  }
}
