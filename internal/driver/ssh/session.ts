// One build's side of a machine reached over SSH, shared by the ssh and qemu drivers: a connection,
// the workspace (the login's home), a private directory for job scripts, jobs run in process
// groups of their own, and files in and out (transfer.ts).
import path from "node:path";
import type { Readable } from "node:stream";
import { isShellName, singleQuote } from "../../shell/quote.js";
import { GLOB_OUTPUT_LIMIT, GLOB_SCRIPT, parseGlobOutput } from "../artifacts.js";
import { CollectError, DriverError, type ExecResult, type JobRun, type PackedTar, type TarBase } from "../driver.js";
import { packOverSsh, unpackOverSsh } from "./archive.js";
import { runQuiet } from "./channels.js";
import { connectWithRetry, type Client, type ConnectOptions, type SshTarget } from "./connect.js";
import { ChannelGate, type ChannelRetry } from "./gate.js";
import { openTransfer, SftpVanished, type FileTransfer } from "./transfer.js";

/** How many connections `open` makes when each is lost while it is being prepared. */
const OPEN_ATTEMPTS = 3;

/** The connection went down while the session was being prepared: connecting again may work. */
class ConnectionLost extends DriverError {
  override name = "ConnectionLost";
}

export interface SessionOptions extends ConnectOptions {
  /** Added to every job's environment, under the build's own variables. */
  baseEnv?: Record<string, string>;
  /**
   * Aborted when the build is: a channel the server refuses is no longer asked for again, nor one
   * waited for. (`signal` only bounds connecting.) Killing jobs and cleaning up go on regardless.
   */
  buildSignal?: AbortSignal;
  /** Channels open at once on the connection (gate.ts). */
  maxChannels?: number;
  /** How a refused channel is asked for again (gate.ts). */
  channelRetry?: ChannelRetry;
}

/** The lines that set a job's variables; they go before the script's commands, which alone are shown. */
export function exportLines(env: Record<string, string>): string {
  let out = "";
  for (const [key, value] of Object.entries(env)) {
    if (!isShellName(key)) throw new DriverError(`variable name ${JSON.stringify(key)} is not a shell variable name`);
    out += `export ${key}=${singleQuote(value)}\n`;
  }
  return out;
}

/**
 * The command line a job's script runs under: in the workspace, in a session (and process group)
 * of its own so that a kill reaches everything it started, its pid in `pidfile` for that kill and
 * its exit status in `statusFile` (some servers, dropbear, can close a channel without sending
 * it); whatever the job leaves running in the background is killed when it ends.
 */
export function jobWrapper(workspace: string, script: string, pidfile: string, statusFile: string): string {
  return [
    `cd ${singleQuote(workspace)} || exit 1`,
    `if command -v setsid >/dev/null 2>&1; then setsid sh ${singleQuote(script)} </dev/null 2>&1 & else sh ${singleQuote(script)} </dev/null 2>&1 & fi`,
    `pid=$!`,
    `echo $pid >${singleQuote(pidfile)}`,
    `wait $pid`,
    `code=$?`,
    `echo $code >${singleQuote(statusFile)}`,
    `kill -KILL -$pid 2>/dev/null`,
    `rm -f ${singleQuote(script)} ${singleQuote(pidfile)}`,
    `exit $code`,
  ].join("\n");
}

/** The remote side of one build: a connection, its workspace and a private directory for job scripts. */
export class SshSession {
  private jobs = 0;
  private readonly running = new Set<string>();
  private closed = false;

  /** Set when the connection went down: the next file operation connects again (see `again`). */
  private lost = false;
  /** How the session was opened, to connect again the same way. */
  private opened?: { target: SshTarget; opts: SessionOptions };

  private constructor(
    private client: Client,
    private gate: ChannelGate,
    /** Absolute, symlinks resolved: relative paths of objects and artifacts are under it, and jobs start in it. */
    readonly workspace: string,
    /** Private (0700) directory for job scripts and pid files, removed on close. */
    private readonly scripts: string,
    private readonly baseEnv: Record<string, string>,
    private readonly where: string,
    private files: FileTransfer,
  ) {
    this.watch(client);
  }

  private watch(client: Client): void {
    client.once("close", () => {
      if (client === this.client) this.lost = true;
    });
  }

  /**
   * Runs a file operation (placing, expanding a pattern, reading), which may be done again: on a
   * connection that went down (a machine that dropped it), it connects again first, once. A job
   * is never run again this way: its processes went with the connection. (The drop once seen
   * after a cut artifact was dropbear's, over a channel started as `cat` ended: the gate no
   * longer lets that happen; this stays for machines that drop a connection for other reasons.)
   */
  private async again<T>(op: () => Promise<T>, opts: { afterFailure: boolean } = { afterFailure: true }): Promise<T> {
    const canReconnect = () => this.lost && !this.closed && this.opened !== undefined;
    if (canReconnect()) await this.reconnect();
    try {
      return await op();
    } catch (err) {
      // Found gone by the operation itself: once more on a new connection, unless what it sent (a stream) is spent.
      if (!opts.afterFailure || !canReconnect() || !/Not connected|No response from server/.test((err as Error).message)) throw err;
      await this.reconnect();
      return op();
    }
  }

  private async reconnect(): Promise<void> {
    const { target, opts } = this.opened!;
    const client = await connectWithRetry(target, opts);
    const gate = new ChannelGate(client, this.where, { maxOpen: opts.maxChannels, retry: opts.channelRetry, signal: opts.buildSignal });
    try {
      this.files = await openTransfer(gate, { sftpVanishedIsAbsent: true });
    } catch (err) {
      client.end();
      throw err;
    }
    this.client.end();
    this.client = client;
    this.gate = gate;
    this.lost = false;
    this.watch(client);
  }

  /**
   * Connects and prepares the workspace (the login's home directory) and a private script
   * directory. Files go over SFTP when the server offers it, else over exec channels (`cat`), so
   * that images with no sftp-server (busybox, dropbear alone) work too.
   */
  static async open(target: SshTarget, opts: SessionOptions): Promise<SshSession> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await SshSession.openOnce(target, opts, attempt === OPEN_ATTEMPTS);
      } catch (err) {
        // A machine still settling (a guest slowed by its host) may drop a connection it has just
        // accepted: connect again, a few times, rather than fail the build or take a dying
        // connection's closed SFTP channel for "no SFTP here". (dropbear 2022.82 to 2024.85 did
        // so when the SFTP probe and the first command started at once; see startsNeedQuiet.)
        if (!(err instanceof ConnectionLost || err instanceof SftpVanished) || attempt >= OPEN_ATTEMPTS || opts.signal?.aborted || opts.buildSignal?.aborted) throw err;
      }
    }
  }

  private static async openOnce(target: SshTarget, opts: SessionOptions, lastTry: boolean): Promise<SshSession> {
    const client = await connectWithRetry(target, opts);
    const where = `${target.user}@${target.host}:${target.port}`;
    let lost = false;
    client.once("close", () => (lost = true));
    const gate = new ChannelGate(client, where, { maxOpen: opts.maxChannels, retry: opts.channelRetry, signal: opts.buildSignal });
    try {
      // Both at once: every round trip counts while a build waits for its machine (one after the
      // other on a server that needs quiet starts: the gate sees to that).
      const [made, files] = await Promise.all([
        runQuiet(gate, `umask 077 && d=$(mktemp -d "\${TMPDIR:-/tmp}/djinn-job.XXXXXXXX") && cd && echo "$d" && pwd -P`),
        openTransfer(gate, { sftpVanishedIsAbsent: lastTry }),
      ]);
      // "No SFTP" is also what a connection going down looks like (its sftp-server hung up): one
      // more command tells the two apart.
      if (files.over === "exec") await runQuiet(gate, "true", { timeoutMs: 10_000 });
      const [scripts, home] = made.stdout.trim().split("\n");
      if (made.code !== 0 || !scripts?.startsWith("/") || !home?.startsWith("/")) throw new DriverError(`cannot make a private directory on ${where}: ${made.stderr.trim() || `mktemp exited ${made.code}`}`);
      if (lost) throw new ConnectionLost(`${where} closed the connection while it was being prepared`);
      const session = new SshSession(client, gate, home, scripts, opts.baseEnv ?? {}, where, files);
      session.opened = { target, opts };
      return session;
    } catch (err) {
      client.end();
      if (err instanceof SftpVanished && !lost) throw err;
      if (lost || err instanceof ConnectionLost) throw new ConnectionLost(`${where} closed the connection while it was being prepared: ${(err as Error).message}`);
      if (err instanceof DriverError) throw err;
      throw new DriverError(`cannot prepare ${where}: ${(err as Error).message}`);
    }
  }

  /** What the connected line adds about moving files: a server without SFTP gets exec channels. */
  get transferNote(): string {
    return this.files.over === "exec" ? `; no SFTP on the machine: files go over exec channels (${this.files.noSftp})` : "";
  }

  /** Runs one job: its script (exports first) is uploaded to the private directory and run by `sh` with stdin closed. */
  async execute(job: JobRun): Promise<ExecResult> {
    if (job.signal.aborted) return { exitCode: 137 };
    const n = ++this.jobs;
    const script = `${this.scripts}/job-${n}.sh`;
    const pidfile = `${this.scripts}/job-${n}.pid`;
    const statusFile = `${this.scripts}/job-${n}.status`;
    const body = exportLines({ ...this.baseEnv, ...job.env }) + job.script;
    await this.files.writeScript(script, body);
    const opened = await this.gate.exec(`exec sh -c ${singleQuote(jobWrapper(this.workspace, script, pidfile, statusFile))}`, { lasting: true }).catch((err: Error) => {
      if (job.signal.aborted) return undefined;
      // The gate's own errors name the machine already.
      throw new DriverError(`cannot start job ${job.name}${err instanceof DriverError ? "" : ` on ${this.where}`}: ${err.message}`);
    });
    if (!opened) return { exitCode: 137 };
    const { channel } = opened;
    this.running.add(pidfile);
    channel.pipe(job.output, { end: false });
    channel.stderr.pipe(job.output, { end: false });
    let exit: number | undefined;
    let aborted = false;
    const onAbort = () => {
      aborted = true;
      void this.killJob(pidfile).finally(() => channel.close());
    };
    job.signal.addEventListener("abort", onAbort, { once: true });
    try {
      await new Promise<void>((resolve) => {
        let drainTimer: NodeJS.Timeout | undefined;
        let closed = false;
        void opened.exit.then((code) => {
          exit = code;
          // A process that escaped the job's group may hold the output open: cut it off.
          if (!closed) drainTimer = setTimeout(() => channel.close(), 2000);
        });
        channel.on("close", () => {
          closed = true;
          clearTimeout(drainTimer);
          resolve();
        });
      });
    } finally {
      job.signal.removeEventListener("abort", onAbort);
      channel.unpipe(job.output);
      channel.stderr.unpipe(job.output);
      this.running.delete(pidfile);
    }
    if (aborted) return { exitCode: exit ?? 137 };
    exit ??= await this.readStatus(statusFile);
    if (exit === undefined) throw new DriverError(`lost the connection to ${this.where} while job ${job.name} ran`);
    return { exitCode: exit };
  }

  /** The exit code the job's wrapper recorded, when the channel closed without reporting one. */
  private async readStatus(file: string): Promise<number | undefined> {
    const r = await runQuiet(this.gate, `cat ${singleQuote(file)} && rm -f ${singleQuote(file)}`, { timeoutMs: 5000 }).catch(() => undefined);
    const code = r?.code === 0 ? Number(r.stdout.trim()) : NaN;
    return Number.isInteger(code) ? code : undefined;
  }

  /** Kills a job's process group (or, when it has none, the process) from a second channel. */
  private async killJob(pidfile: string): Promise<void> {
    const cmd = `pid=$(cat ${singleQuote(pidfile)} 2>/dev/null) && [ -n "$pid" ] && { kill -KILL -$pid 2>/dev/null || kill -KILL $pid 2>/dev/null; }; true`;
    await runQuiet(this.gate, cmd, { timeoutMs: 5000, cleanup: true }).catch(() => undefined);
  }

  /** Absolute remote path of `dest`: relative paths (and `~/...`: the workspace is the login's home) are under the workspace. */
  resolve(dest: string): string {
    if (dest.startsWith("~/")) dest = dest.slice(2);
    return path.posix.isAbsolute(dest) ? path.posix.normalize(dest) : path.posix.join(this.workspace, dest);
  }

  async place(dest: string, source: Readable, _size: number, mode = 0o644): Promise<void> {
    try {
      await this.again(() => this.files.write(this.resolve(dest), source, mode), { afterFailure: false });
    } catch (err) {
      source.destroy();
      throw err;
    }
  }

  /** The paths a shell pattern matches on the machine (see artifacts.ts). */
  async glob(pattern: string): Promise<string[]> {
    const r = await this.again(() => runQuiet(this.gate, `sh -c ${singleQuote(GLOB_SCRIPT)} sh ${singleQuote(this.workspace)} ${singleQuote(pattern)}`, { timeoutMs: 60_000, maxBytes: GLOB_OUTPUT_LIMIT })).catch((err: Error) => {
      throw new CollectError("failed", `cannot expand ${pattern}: ${err.message}`);
    });
    if (r.code !== 0) throw new CollectError("failed", `cannot expand ${pattern}: ${r.stderr.trim() || `exit status ${r.code}`}`);
    return parseGlobOutput(r.stdout);
  }

  /** Opens a file of the machine: relative paths are under the workspace, `~/` is the workspace (the home), absolute paths are taken as they are. */
  async collect(file: string): Promise<Readable> {
    if (file === "" || file.includes("\0")) throw new CollectError("failed", `invalid artifact path ${JSON.stringify(file)}`);
    return this.again(() => this.files.read(this.resolve(file), file));
  }

  /** A tar stream of `paths` under the workspace (the home: `~/` is the same place). */
  packTar(paths: string[]): Promise<PackedTar> {
    return this.again(() => packOverSsh(this.gate, this.workspace, paths, this.where));
  }

  /** Extracts a tar stream under the workspace; never done again on a new connection (the stream is spent). */
  unpackTar(archive: Readable): Promise<void> {
    return this.again(() => unpackOverSsh(this.gate, this.workspace, archive, this.where), { afterFailure: false });
  }

  /** Kills running jobs, removes the script directory and closes the connection. Never throws. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const pidfile of this.running) await this.killJob(pidfile);
    await runQuiet(this.gate, `rm -rf ${singleQuote(this.scripts)}`, { timeoutMs: 5000, cleanup: true }).catch(() => undefined);
    this.client.end();
  }

  /** Drops the connection at once, for a machine that is about to be destroyed anyway. */
  abandon(): void {
    this.closed = true;
    this.client.end();
    this.client.destroy();
  }
}

/** What the ssh and qemu drivers share: once a session is open, jobs and files go through it. */
export abstract class SessionDriver {
  protected session?: SshSession;

  /** Said when the session is not open, e.g. "the machine is not running". */
  protected abstract readonly notOpen: string;

  protected requireSession(): SshSession {
    if (!this.session) throw new DriverError(this.notOpen);
    return this.session;
  }

  execute(job: JobRun): Promise<ExecResult> {
    return this.requireSession().execute(job);
  }

  place(dest: string, source: Readable, size: number, mode?: number): Promise<void> {
    return this.requireSession().place(dest, source, size, mode);
  }

  collect(file: string): Promise<Readable> {
    return this.requireSession().collect(file);
  }

  glob(pattern: string): Promise<string[]> {
    return this.requireSession().glob(pattern);
  }

  /** The workspace is the login's home: both bases are the same place. */
  packTar(_base: TarBase, paths: string[]): Promise<PackedTar> {
    return this.requireSession().packTar(paths);
  }

  unpackTar(_base: TarBase, archive: Readable): Promise<void> {
    return this.requireSession().unpackTar(archive);
  }
}
