// Commands on an open connection: their exit codes, and short setup and cleanup commands whose
// output is small.
import os from "node:os";
import type { ClientChannel } from "ssh2";
import { formatDuration } from "../../config/duration.js";
import { DriverError } from "../driver.js";
import type { Client } from "./connect.js";

/** Exit code of a channel's `exit` event: its code, or 128+n when a signal ended it. */
export function exitCodeOf(code: number | null | undefined, signalName?: string): number | undefined {
  if (typeof code === "number") return code;
  if (!signalName) return undefined;
  const name = (signalName.startsWith("SIG") ? signalName : `SIG${signalName}`) as NodeJS.Signals;
  return 128 + (os.constants.signals[name] ?? 9);
}

/**
 * Runs `command` and returns its output; settles within `timeoutMs` even on a dead connection.
 * For setup and cleanup commands and lists of paths: more than `maxBytes` of stdout is an error,
 * never a list cut short.
 */
export function runQuiet(client: Client, command: string, timeoutMs = 30_000, maxBytes = 64 * 1024): Promise<{ code: number | undefined; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let stdoutBytes = 0;
    let stderrBytes = 0;
    let code: number | undefined;
    let channel: ClientChannel | undefined;
    const fail = (err: Error) => {
      clearTimeout(timer);
      channel?.close();
      reject(err);
    };
    const timer = setTimeout(() => fail(new DriverError(`no answer within ${formatDuration(timeoutMs)} to: ${command.split("\n")[0]}`)), timeoutMs);
    client.exec(command, (err, ch) => {
      if (err) return fail(err);
      channel = ch;
      ch.on("data", (d: Buffer) => {
        stdoutBytes += d.length;
        if (stdoutBytes > maxBytes) return fail(new DriverError(`more than ${maxBytes} bytes of output from: ${command.split("\n")[0]}`));
        stdout.push(d);
      });
      // Only for messages: the start of it is enough.
      ch.stderr.on("data", (d: Buffer) => {
        if (stderrBytes < 4096) stderr.push(d);
        stderrBytes += d.length;
      });
      ch.on("exit", (c: number | null, sig?: string) => {
        code = exitCodeOf(c, sig);
      });
      ch.on("close", () => {
        clearTimeout(timer);
        resolve({ code, stdout: Buffer.concat(stdout).toString("utf8"), stderr: Buffer.concat(stderr).toString("utf8") });
      });
    });
  });
}
