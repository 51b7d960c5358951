// The operator's arguments (build ids, KEY=value lists, --key files, the manifest file): each
// problem is an InputError, one line naming the flag or file, exit 2.
import { asBuildId, type BuildId } from "../queue/build-id.js";
import fsCallback, { constants, fstatSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import type { Readable } from "node:stream";
import { EnvironmentError, InputError, fileReadReason } from "../errors/errors.js";
import { manifestTooLarge, type ParsedManifest } from "../manifest/manifest.js";
import { checkManifest } from "../submission/check.js";
import { BUILD_EXIT } from "../runner/status.js";
import { maskedValueProblem, maskText } from "../runner/mask.js";
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
    // The error names the key at most: what follows "=", or an item without one, may be the value.
    const eq = item.indexOf("=");
    if (eq <= 0) throw new InputError(`--secret: expected KEY=value, or KEY naming a variable set in this environment (the argument is not shown: it may be a value)`);
    const key = item.slice(0, eq);
    if (!isShellName(key)) throw new InputError(`--secret ${JSON.stringify(key)}=...: expected KEY=value with KEY a shell variable name (letters, digits and _, not starting with a digit)`);
    return [key, item.slice(eq + 1)];
  });
  for (const [key, value] of secrets) {
    const problem = maskedValueProblem(key, value);
    if (problem) throw new InputError(`--secret ${key}: ${problem}`);
  }
  return secrets;
}

/** `KEY=value` items; an error shows the item with `masks` (the secrets' values) replaced. */
export function parseAssignments(flag: string, items: string[], masks: string[] = []): [string, string][] {
  return items.map((item) => {
    const eq = item.indexOf("=");
    if (eq <= 0 || !isShellName(item.slice(0, eq))) throw new InputError(`${flag} ${JSON.stringify(maskText(item, masks))}: expected KEY=value`);
    return [item.slice(0, eq), item.slice(eq + 1)];
  });
}

export function parseBuildId(text: string): BuildId {
  const id = /^[0-9]+$/.test(text) ? asBuildId(Number(text)) : undefined;
  if (id === undefined) throw new InputError(`${JSON.stringify(text)} is not a build id (a positive integer)`);
  return id;
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
      throw new InputError(`--key ${name}: cannot read ${file}: ${fileReadReason(err)}`);
    }
  }
  return keys;
}

export interface ManifestReading {
  /** Most bytes the manifest may have; reading stops just past it. */
  limit: number;
  /** Where the limit is set, for the error ("" for nowhere). */
  setting?: string;
  /** Ends a read that is still going (a pipe that never closes): the command exits as killed. */
  signal?: AbortSignal;
  /** The secrets' values: replaced in every error and warning, and refused in names (secretInNames). */
  masks?: string[];
}

/**
 * Reads and parses a manifest file; any problem is an InputError naming the file, with the
 * secrets' values (`reading.masks`) replaced, as in its warnings: a manifest error may quote one.
 * A manifest whose stage, job or artifact names hold a secret is refused (secretInNames).
 */
export async function readManifestFile(file: string, reading: ManifestReading): Promise<ParsedManifest & { text: string }> {
  const bytes = await readBounded(file, reading);
  return checkManifest(file, bytes, reading.limit, reading.masks ?? []);
}

/**
 * At most `limit` bytes of `file` (a file, a pipe, /dev/stdin): one byte more is refused without
 * reading the rest (a file that never ends, such as /dev/zero), and an abort ends a read that
 * waits (a pipe that never closes).
 */
async function readBounded(file: string, { limit, signal, setting }: ManifestReading): Promise<Buffer> {
  const interrupted = () => new EnvironmentError(`${file}: reading the manifest was interrupted`, { exitCode: BUILD_EXIT.killed });
  if (signal?.aborted) throw interrupted();
  let source: Readable;
  try {
    source = await openForReading(file);
  } catch (err) {
    throw cannotRead(file, err);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  const onAbort = () => source.destroy(interrupted());
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const chunk of source) {
      chunks.push(chunk as Buffer);
      total += (chunk as Buffer).length;
      if (total > limit) throw new InputError(`${file}: ${manifestTooLarge(limit, undefined, setting)}`);
    }
  } catch (err) {
    throw err instanceof InputError || err instanceof EnvironmentError ? err : cannotRead(file, err);
  } finally {
    signal?.removeEventListener("abort", onAbort);
    source.destroy();
  }
  return Buffer.concat(chunks, total);
}

function cannotRead(file: string, err: unknown): InputError {
  return new InputError(`${file}: cannot read manifest: ${fileReadReason(err)}`);
}

/**
 * A stream of `file`. Opened without blocking (a FIFO with no writer yet would block the open); a
 * pipe or socket is read through the event loop, so a read that waits can be given up, where a
 * file's blocking read would hold a thread (and the exit) until data came.
 */
async function openForReading(file: string): Promise<Readable> {
  const fd = await new Promise<number>((resolve, reject) => fsCallback.open(file, constants.O_RDONLY | constants.O_NONBLOCK, (err, fd) => (err ? reject(err) : resolve(fd))));
  try {
    const st = fstatSync(fd);
    if (st.isFIFO() || st.isSocket()) return new net.Socket({ fd, readable: true, writable: false });
    if (st.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
    return fsCallback.createReadStream("", { fd, highWaterMark: 64 * 1024 });
  } catch (err) {
    fsCallback.closeSync(fd);
    throw err;
  }
}
