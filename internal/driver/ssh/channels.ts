// Commands on an open connection: short setup and cleanup commands whose
// output is small. Channels come from the connection's gate (gate.ts).
import { formatDuration } from "../../timers/duration.js";
import { DriverError } from "../driver.js";
import type { ChannelGate } from "./gate.js";

/**
 * Runs `command` and returns its output; once its channel is open, settles within `timeoutMs` even
 * on a dead connection. For setup and cleanup commands and lists of paths: more than `maxBytes` of
 * stdout is an error, never a list cut short. A channel the server refuses is asked for again
 * (gate.ts); a command that ran is never run again.
 */
export async function runQuiet(
  gate: ChannelGate,
  command: string,
  opts: { timeoutMs?: number; maxBytes?: number; cleanup?: boolean } = {},
): Promise<{ code: number | undefined; stdout: string; stderr: string }> {
  const { timeoutMs = 30_000, maxBytes = 64 * 1024 } = opts;
  const { channel, exit } = await gate.exec(command, { cleanup: opts.cleanup });
  return new Promise((resolve, reject) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let stdoutBytes = 0;
    let stderrBytes = 0;
    const fail = (err: Error) => {
      clearTimeout(timer);
      channel.close();
      reject(err);
    };
    const timer = setTimeout(() => fail(new DriverError(`no answer within ${formatDuration(timeoutMs)} to: ${command.split("\n")[0]}`)), timeoutMs);
    channel.on("data", (d: Buffer) => {
      stdoutBytes += d.length;
      if (stdoutBytes > maxBytes) return fail(new DriverError(`more than ${maxBytes} bytes of output from: ${command.split("\n")[0]}`));
      stdout.push(d);
    });
    // Only for messages: the start of it is enough.
    channel.stderr.on("data", (d: Buffer) => {
      if (stderrBytes < 4096) stderr.push(d);
      stderrBytes += d.length;
    });
    channel.on("close", () => {
      clearTimeout(timer);
      // Settled by now: the gate watches for the exit from the moment the channel opens.
      void exit.then((code) => resolve({ code, stdout: Buffer.concat(stdout).toString("utf8"), stderr: Buffer.concat(stderr).toString("utf8") }));
    });
  });
}
