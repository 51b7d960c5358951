// Build caches over the connection, by the machine's own tar on exec channels: `tar -cf -` streams
// out on stdout, `tar -xf -` takes one on stdin. Both under the workspace (the login's home, also
// `~/`). A stream that tar did not end well fails; it never passes for a whole one.
import type { Readable } from "node:stream";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { singleQuote } from "../../shell/quote.js";
import { DriverError, type PackedTar } from "../driver.js";
import { endedEarly } from "../tar-streams.js";
import type { ChannelGate } from "./gate.js";

const MISSING = "djinn-missing:";
const LISTED = "djinn-missing-end";

/**
 * In the directory $1, says on stderr which of the other arguments do not exist, then streams a
 * tar of those that do (two zero blocks when none: tar makes no empty archive). One channel, one
 * round trip.
 */
const PACK_SCRIPT = [
  'cd "$1" || exit 3',
  "shift",
  `for p; do shift; if [ -e "$p" ] || [ -L "$p" ]; then set -- "$@" "$p"; else printf '${MISSING}%s\\n' "$p" >&2; fi; done`,
  `printf '${LISTED}\\n' >&2`,
  '[ $# -gt 0 ] || exec head -c 1024 /dev/zero',
  'exec tar -c -f - -- "$@"',
].join("\n");

const quoted = (words: string[]) => words.map(singleQuote).join(" ");

function tarFailed(where: string, code: number | undefined, stderr: string): DriverError {
  const said = stderr.trim().split("\n").slice(-3).join("; ");
  return new DriverError(`tar on ${where} ${code === undefined ? "was cut off" : `exited ${code}`}${said ? `: ${said}` : ""}`);
}

export async function packOverSsh(gate: ChannelGate, workspace: string, paths: string[], where: string): Promise<PackedTar> {
  const { channel, exit } = await gate.exec(`sh -c ${singleQuote(PACK_SCRIPT)} sh ${quoted([workspace, ...paths])}`);
  let stderr = "";
  const missing: string[] = [];
  // The list of missing paths comes first on stderr, ended by a line of its own; tar's own words follow.
  const listed = new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer) => {
      if (stderr.length < 64 * 1024) stderr += d.toString("utf8");
      const end = stderr.indexOf(`${LISTED}\n`);
      if (end < 0) return;
      for (const line of stderr.slice(0, end).split("\n")) if (line.startsWith(MISSING)) missing.push(line.slice(MISSING.length));
      stderr = stderr.slice(end + LISTED.length + 1);
      resolve();
    };
    channel.stderr.on("data", onData);
    // The exit may be told before stderr's last data is (a listener added after the channel opened
    // sees buffered data a tick later): only stderr's end says the list never came.
    const stderrDone = new Promise<void>((done) => {
      channel.stderr.once("end", done);
      channel.once("close", done);
    });
    void exit.then(async (code) => {
      await stderrDone;
      reject(tarFailed(where, code, stderr || `cannot enter ${workspace}`));
    });
  });
  const archive = new Transform({
    transform: (chunk: Buffer, _enc, done) => done(null, chunk),
    // The archive ends only when tar exited well: a cut connection or a failing tar is an error.
    flush: (done) => void exit.then((code) => done(code === 0 ? null : tarFailed(where, code, stderr))),
  });
  archive.on("close", () => {
    // A reader that gave up: stop tar rather than send the rest.
    if (!archive.writableFinished) channel.close();
  });
  channel.end();
  channel.pipe(archive);
  try {
    await listed;
  } catch (err) {
    archive.destroy();
    throw err;
  }
  return { archive, missing };
}

export async function unpackOverSsh(gate: ChannelGate, workspace: string, archive: Readable, where: string): Promise<void> {
  const { channel, exit } = await gate.exec(`tar -x -f - -C ${singleQuote(workspace)}`).catch((err: Error) => {
    archive.destroy();
    throw err;
  });
  let stderr = "";
  channel.stderr.on("data", (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString("utf8");
  });
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
  if (code !== 0) throw tarFailed(where, code, stderr);
}
