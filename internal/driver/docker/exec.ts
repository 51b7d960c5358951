// Commands run in a build's container through the exec API: output demultiplexed into a stream as
// it comes, the exit code once the engine has recorded it.
import type { Readable, Writable } from "node:stream";
import type Docker from "dockerode";
import { DriverError } from "../driver.js";
import { capture, Demux, pumpInto } from "./streams.js";
import { sleep } from "../../timers/timers.js";

export interface ExecOptions {
  env?: string[];
  workdir: string;
  out: Writable;
  signal?: AbortSignal;
  /** Docker cannot signal an exec: called on abort to stop the command some other way (kill the container). */
  onAbort?: () => void;
}

/** Runs `cmd` in the container; output into `out` (never ended), resolves to its exit code (137 when aborted). */
export async function execIn(container: Docker.Container, cmd: string[], opts: ExecOptions): Promise<number> {
  const exec = await container.exec({ Cmd: cmd, Env: opts.env ?? [], WorkingDir: opts.workdir, AttachStdin: false, AttachStdout: true, AttachStderr: true, Tty: false });
  const stream = (await exec.start({ hijack: true, stdin: false })) as unknown as Readable;
  const demux = new Demux();
  const signal = opts.signal;
  const onAbort = () => {
    opts.onAbort?.();
    stream.destroy();
    demux.destroy();
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    if (signal?.aborted) onAbort();
    // A connection that breaks mid-job ends the job too, not only a clean end of stream.
    stream.once("error", () => demux.destroy());
    await pumpInto(stream.pipe(demux), opts.out);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  if (signal?.aborted) return 137;
  return exitCodeOf(exec, cmd[0] ?? "the command");
}

/** The stream ends once the process has; its exit code may take a moment to be recorded. */
async function exitCodeOf(exec: Docker.Exec, what: string): Promise<number> {
  for (let tries = 0; ; tries++) {
    const info = await exec.inspect();
    if (!info.Running && info.ExitCode !== null && info.ExitCode !== undefined) return info.ExitCode;
    if (tries >= 200) throw new DriverError(`the engine did not report how ${what} ended`);
    await sleep(10);
  }
}

/** Runs one of the driver's own small commands (from /) and returns its exit code and output. */
export async function execCapture(container: Docker.Container, cmd: string[]): Promise<{ code: number; text: string }> {
  const { sink, text } = capture();
  const code = await execIn(container, cmd, { workdir: "/", out: sink });
  return { code, text: text() };
}
