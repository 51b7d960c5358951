// Build caches over the connection, by the machine's own tar on exec channels: `tar -cf -` streams
// out on stdout, `tar -xf -` takes one on stdin. Both under the workspace (the login's home, also
// `~/`). A stream that tar did not end well fails; it never passes for a whole one.
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { singleQuote } from "../../shell/quote.js";
import { DriverError, type PackedTar } from "../driver.js";
import { runQuiet } from "./channels.js";
import { endedEarly } from "../tar-streams.js";
import type { ChannelGate } from "./gate.js";

/** Prints each of its arguments (after the directory) that does not exist there, NUL-terminated. */
const MISSING_SCRIPT = 'cd "$1" || exit 3; shift; for p; do [ -e "$p" ] || [ -L "$p" ] || printf "%s\\0" "$p"; done';

const quoted = (words: string[]) => words.map(singleQuote).join(" ");

/** The last words tar said, for its error line. */
function stderrText(channel: { stderr: NodeJS.ReadableStream }): () => string {
  let text = "";
  channel.stderr.on("data", (d: Buffer) => {
    if (text.length < 4096) text += d.toString("utf8");
  });
  return () => text.trim().split("\n").slice(-3).join("; ");
}

export async function packOverSsh(gate: ChannelGate, workspace: string, paths: string[], where: string): Promise<PackedTar> {
  const r = await runQuiet(gate, `sh -c ${singleQuote(MISSING_SCRIPT)} sh ${quoted([workspace, ...paths])}`, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new DriverError(`cannot look at the cache paths on ${where}: ${r.stderr.trim() || `exit status ${r.code}`}`);
  const missing = r.stdout.split("\0").filter(Boolean);
  const found = paths.filter((p) => !missing.includes(p));
  // tar refuses to make an empty archive: two zero blocks are one.
  if (found.length === 0) return { archive: Readable.from([Buffer.alloc(1024)]), missing };
  const { channel, exit } = await gate.exec(`tar -c -f - -C ${singleQuote(workspace)} -- ${quoted(found)}`);
  const stderr = stderrText(channel);
  const archive = new Transform({
    transform: (chunk: Buffer, _enc, done) => done(null, chunk),
    // The archive ends only when tar exited well: a cut connection or a failing tar is an error.
    flush: (done) => void exit.then((code) => done(code === 0 ? null : new DriverError(`tar on ${where} ${code === undefined ? "was cut off" : `exited ${code}`}${stderr() ? `: ${stderr()}` : ""}`))),
  });
  archive.on("close", () => {
    // A reader that gave up: stop tar rather than send the rest.
    if (!archive.writableFinished) channel.close();
  });
  channel.end();
  channel.pipe(archive);
  return { archive, missing };
}

export async function unpackOverSsh(gate: ChannelGate, workspace: string, archive: Readable, where: string): Promise<void> {
  const { channel, exit } = await gate.exec(`tar -x -f - -C ${singleQuote(workspace)}`).catch((err: Error) => {
    archive.destroy();
    throw err;
  });
  const stderr = stderrText(channel);
  channel.resume();
  const fed = await pipeline(archive, channel).then(
    () => undefined,
    (err: NodeJS.ErrnoException) => err,
  );
  // tar may leave once it has read the end of the archive, before the padding after it.
  if (fed && !endedEarly(fed)) {
    channel.close();
    throw new DriverError(`cannot unpack on ${where}: ${fed.message}`);
  }
  const code = await exit;
  if (fed && code !== 0) throw new DriverError(`cannot unpack on ${where}: ${fed.message}`);
  if (code !== 0) throw new DriverError(`tar on ${where} ${code === undefined ? "was cut off" : `exited ${code}`}${stderr() ? `: ${stderr()}` : ""}`);
}
