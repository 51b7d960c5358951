// Files to and from the machine: over SFTP when the server offers it, else over exec channels
// running `cat`, so that images with no sftp-server (busybox, dropbear alone) work too.
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { SFTPWrapper } from "ssh2";
import { singleQuote } from "../../shell/quote.js";
import { CollectError, DriverError } from "../driver.js";
import { runQuiet } from "./channels.js";
import { isChannelRefusal, type ChannelGate } from "./gate.js";

/** Moves files between this worker and the machine; paths are absolute on the machine. */
export interface FileTransfer {
  readonly over: "sftp" | "exec";
  /** Over exec channels: what the server said to the SFTP request. */
  readonly noSftp?: string;
  /** Writes `source` to `target` with `mode`, making missing directories (0755). DriverError naming the target. */
  write(target: string, source: Readable, mode: number): Promise<void>;
  /** Writes a job's script, private (0600). */
  writeScript(target: string, text: string): Promise<void>;
  /** Opens a regular file for reading; CollectError naming it as `shown`. */
  read(target: string, shown: string): Promise<Readable>;
}

/** SFTP when the server offers it, exec channels when it has none; any other failure to open SFTP is thrown. */
export async function openTransfer(gate: ChannelGate, opts: { sftpVanishedIsAbsent?: boolean } = {}): Promise<FileTransfer> {
  // A refused channel is asked for again; a refused subsystem is the answer "no SFTP here".
  let absent: string | undefined;
  const sftp = await openSftp(gate, (err) => isChannelRefusal(err) && !noSftpSubsystem(err)).catch((err: Error) => {
    // Only a server that has no SFTP (no subsystem, or no sftp-server to run) means exec
    // channels; anything else (a connection going down) fails here, not half-way later. A
    // subsystem that starts and dies is taken for absent only when the caller says so (its last try).
    const vanished = /while establishing SFTP session/i.test(err.message) && !noSftpSubsystem(err);
    if (noSftpSubsystem(err) || (vanished && opts.sftpVanishedIsAbsent)) {
      absent = err.message.replace(/^SFTP is not available on \S+: /, "");
      return undefined;
    }
    if (vanished) throw new SftpVanished(err.message);
    throw err;
  });
  return sftp ? new SftpTransfer(gate, sftp) : new ExecTransfer(gate, absent ?? "no SFTP");
}

class SftpTransfer implements FileTransfer {
  readonly over = "sftp";
  private channel?: Promise<SFTPWrapper>;

  constructor(
    private readonly gate: ChannelGate,
    sftp: SFTPWrapper,
  ) {
    this.channel = Promise.resolve(sftp);
  }

  private get where(): string {
    return this.gate.where;
  }

  /** The SFTP channel, opened again when an earlier one failed (the server had SFTP: any refusal is asked again). */
  private sftp(): Promise<SFTPWrapper> {
    this.channel ??= openSftp(this.gate, isChannelRefusal);
    this.channel.catch(() => {
      this.channel = undefined;
    });
    return this.channel;
  }

  async write(target: string, source: Readable, mode: number): Promise<void> {
    const sftp = await this.sftp();
    try {
      await mkdirs(sftp, path.posix.dirname(target));
      const out = sftp.createWriteStream(target, { mode });
      const closed = new Promise<void>((resolve) => out.once("close", () => resolve()));
      await pipeline(source, out);
      await closed;
    } catch (err) {
      throw new DriverError(`cannot write ${target} on ${this.where}: ${(err as Error).message}`);
    }
  }

  async writeScript(target: string, text: string): Promise<void> {
    const sftp = await this.sftp();
    await new Promise<void>((resolve, reject) => {
      sftp.writeFile(target, text, { mode: 0o600 }, (err) => (err ? reject(new DriverError(`cannot upload the job script to ${target}: ${err.message}`)) : resolve()));
    });
  }

  async read(target: string, shown: string): Promise<Readable> {
    let sftp: SFTPWrapper;
    try {
      sftp = await this.sftp();
    } catch (err) {
      throw new CollectError("failed", (err as Error).message);
    }
    let real: string;
    try {
      real = await new Promise<string>((resolve, reject) => sftp.realpath(target, (err, p) => (err ? reject(err) : resolve(p))));
      // Some servers resolve a missing last component without complaint: stat decides.
      await new Promise<void>((resolve, reject) => sftp.lstat(real, (err) => (err ? reject(err) : resolve())));
    } catch {
      throw new CollectError("missing", `${shown} does not exist`);
    }
    const stats = await new Promise<{ isFile(): boolean }>((resolve, reject) => sftp.stat(real, (err, st) => (err ? reject(err) : resolve(st)))).catch((err: Error) => {
      throw new CollectError("failed", `cannot read ${shown}: ${err.message}`);
    });
    if (!stats.isFile()) throw new CollectError("not-a-file", `${shown} is not a regular file`);
    return sftp.createReadStream(real);
  }
}

class ExecTransfer implements FileTransfer {
  readonly over = "exec";

  constructor(
    private readonly gate: ChannelGate,
    /** What the server said to the SFTP request. */
    readonly noSftp: string,
  ) {}

  private get where(): string {
    return this.gate.where;
  }

  async write(target: string, source: Readable, mode: number): Promise<void> {
    try {
      await execWrite(this.gate, target, source, mode);
    } catch (err) {
      throw new DriverError(`cannot write ${target} on ${this.where}: ${(err as Error).message}`);
    }
  }

  async writeScript(target: string, text: string): Promise<void> {
    await execWrite(this.gate, target, Readable.from([text]), 0o600).catch((err: Error) => {
      throw new DriverError(`cannot upload the job script to ${target}: ${err.message}`);
    });
  }

  async read(target: string, shown: string): Promise<Readable> {
    const r = await runQuiet(this.gate, `if [ ! -e ${singleQuote(target)} ]; then exit 4; elif [ ! -f ${singleQuote(target)} ]; then exit 6; fi; wc -c <${singleQuote(target)}`).catch((err: Error) => {
      throw new CollectError("failed", `cannot look at ${shown}: ${err.message}`);
    });
    if (r.code === 4) throw new CollectError("missing", `${shown} does not exist`);
    if (r.code === 6) throw new CollectError("not-a-file", `${shown} is not a regular file`);
    if (r.code !== 0) throw new CollectError("failed", `cannot look at ${shown}: ${r.stderr.trim() || `exit status ${r.code}`}`);
    return execRead(this.gate, target, shown, Number(r.stdout.trim()));
  }
}

/**
 * Writes `source` to `target` over an exec channel (`cat`), for servers without SFTP: missing
 * directories are made (0755), the file is created private and then given `mode`.
 */
async function execWrite(gate: ChannelGate, target: string, source: Readable, mode: number): Promise<void> {
  const script = '(umask 022 && mkdir -p "$(dirname "$1")") && umask 077 && cat >"$1" && chmod "$2" "$1"';
  const { channel: ch, exit } = await gate.exec(`sh -c ${singleQuote(script)} sh ${singleQuote(target)} ${mode.toString(8)}`);
  return new Promise((resolve, reject) => {
    let stderr = "";
    ch.stderr.on("data", (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString("utf8");
    });
    ch.on("close", () => void exit.then((code) => (code === 0 ? resolve() : reject(new Error(stderr.trim() || `exit status ${code ?? "unknown"}`)))));
    ch.resume();
    source.on("error", (e) => {
      ch.close();
      reject(e);
    });
    source.pipe(ch);
  });
}

/**
 * Streams `target` (`size` bytes) out over an exec channel (`cat`), for servers without SFTP. The
 * stream ends only once the command has exited well, so a read that fails half-way is an error,
 * never a short artifact.
 */
async function execRead(gate: ChannelGate, target: string, shown: string, size: number): Promise<Readable> {
  const { channel: ch, exit: exited } = await gate.exec(`exec cat <${singleQuote(target)}`).catch((err: Error) => {
    throw new CollectError("failed", `cannot read ${shown}: ${err.message}`);
  });
  let stderr = "";
  ch.stderr.on("data", (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString("utf8");
  });
  // A channel may close without an exit status: dropbear can after a good read, and every
  // channel of a connection that drops does. Then the byte count decides.
  let got = 0;
  const out = new Transform({
    transform: (chunk: Buffer, _enc, cb) => {
      got += chunk.length;
      cb(null, chunk);
    },
    flush: (cb) => {
      void exited.then((code) => {
        if (code === 0 || (code === undefined && got === size)) return cb();
        const why = code === undefined ? `the connection closed after ${got} of ${size} bytes` : stderr.trim() || `cat exited ${code}`;
        cb(new CollectError("failed", `cannot read ${shown}: ${why}`));
      });
    },
  });
  out.on("close", () => {
    // A reader that stopped early (the artifact limit) lets the rest flow away until `cat` ends and
    // the channel closes by itself: a channel left paused would hold `cat` forever, and on some
    // dropbears the next channel waits for it to end (gate.ts, quiet starts).
    ch.unpipe(out);
    ch.resume();
  });
  ch.end();
  ch.pipe(out);
  return out;
}

/**
 * True when the server answered an SFTP request by having none: OpenSSH without a Subsystem line
 * refuses it; dropbear without its sftp-server starts the subsystem through the shell, which
 * exits 127 (not found).
 */
export function noSftpSubsystem(err: Error): boolean {
  return /Unable to start subsystem|Channel open failure: while establishing SFTP session|Received exit code 127 while establishing SFTP session/i.test(err.message);
}

/**
 * The SFTP subsystem started and then went away before it answered (another exit code, a
 * signal, the channel closing): what a connection going down looks like, not a server without
 * SFTP. The session connects again (session.ts).
 */
export class SftpVanished extends DriverError {
  override name = "SftpVanished";
}

function openSftp(gate: ChannelGate, retryIf: (err: Error) => boolean): Promise<SFTPWrapper> {
  return gate.sftp(retryIf).catch((err: Error) => {
    // The gate's own errors (refused every time, aborted) name the machine already.
    throw new DriverError(err instanceof DriverError ? `no SFTP channel: ${err.message}` : `SFTP is not available on ${gate.where}: ${err.message}`);
  });
}

async function mkdirs(sftp: SFTPWrapper, dir: string): Promise<void> {
  const exists = await new Promise<boolean>((resolve) => sftp.stat(dir, (err) => resolve(!err)));
  if (exists || dir === "/" || dir === ".") return;
  await mkdirs(sftp, path.posix.dirname(dir));
  await new Promise<void>((resolve, reject) =>
    sftp.mkdir(dir, { mode: 0o755 }, (err) => {
      if (!err) return resolve();
      // Made meanwhile, or already there as a directory: fine.
      sftp.stat(dir, (e2, st) => (!e2 && st.isDirectory() ? resolve() : reject(err)));
    }),
  );
}
