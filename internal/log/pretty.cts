// pino-pretty, loaded only when a terminal wants readable lines: it costs tens of milliseconds
// to load, which every command would otherwise pay at start. In-process (a stream), not a
// worker-thread transport: the release executable carries no files for a thread to load.
import type PinoPretty = require("pino-pretty");

export function prettyStream(options: PinoPretty.PrettyOptions): PinoPretty.PrettyStream {
  const pretty = require("pino-pretty") as typeof PinoPretty;
  return pretty(options);
}
