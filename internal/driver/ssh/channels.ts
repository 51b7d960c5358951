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

/** Runs `command` and returns its stdout (small outputs only: setup and cleanup commands). Settles within `timeoutMs` even on a dead connection. */
export function runQuiet(client: Client, command: string, timeoutMs = 30_000): Promise<{ code: number | undefined; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    let code: number | undefined;
    let channel: ClientChannel | undefined;
    const timer = setTimeout(() => {
      channel?.close();
      reject(new DriverError(`no answer within ${formatDuration(timeoutMs)} to: ${command.split("\n")[0]}`));
    }, timeoutMs);
    client.exec(command, (err, ch) => {
      if (err) {
        clearTimeout(timer);
        return reject(err);
      }
      channel = ch;
      ch.on("data", (d: Buffer) => {
        if (stdout.length < 65536) stdout += d.toString("utf8");
      });
      ch.stderr.on("data", (d: Buffer) => {
        if (stderr.length < 65536) stderr += d.toString("utf8");
      });
      ch.on("exit", (c: number | null, sig?: string) => {
        code = exitCodeOf(c, sig);
      });
      ch.on("close", () => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  });
}
