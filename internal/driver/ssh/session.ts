// The SSH layer the ssh and qemu drivers share: connect (retrying while a machine boots), run a
// job's script, and move files in and out of the workspace over SFTP.
import { readFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import ssh2, { type ClientChannel, type ConnectConfig, type SFTPWrapper } from "ssh2";
import { formatDuration } from "../../config/duration.js";
import { GLOB_SCRIPT, parseGlobOutput } from "../artifacts.js";
import { CollectError, DriverError, type ExecResult, type JobRun } from "../driver.js";

export interface SshTarget {
  host: string;
  port: number;
  user: string;
  /** Private key file; with neither key nor password: Djinn's empty-password convention (password "" or keyboard-interactive with empty answers). */
  keyFile?: string;
  /** Password for password (and keyboard-interactive) authentication, tried after the key when both are set. */
  password?: string;
}

/** How a target logs in, for messages (never the password itself). */
export function loginMethod(target: Pick<SshTarget, "keyFile" | "password">): string {
  if (target.keyFile && target.password) return `key ${target.keyFile} or the configured password`;
  if (target.keyFile) return `key ${target.keyFile}`;
  if (target.password) return "the configured password";
  return "an empty password";
}

export interface ConnectOptions {
  /** Give up after this many ms in all. */
  timeoutMs: number;
  /** Aborted when the build is killed, or when the machine being waited for has died. */
  signal?: AbortSignal;
  /** Longest a single attempt may take (TCP connect + handshake + auth). */
  attemptTimeoutMs?: number;
  /** How long an attempt waits for the server's first bytes before it is retried. */
  bannerTimeoutMs?: number;
  /** Pause between attempts. */
  retryDelayMs?: number;
  /** Added to every job's environment, under the build's own variables. */
  baseEnv?: Record<string, string>;
}

const { Client, utils } = ssh2;
type Client = InstanceType<typeof Client>;

const SHELL_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A value for a POSIX shell, always single-quoted: `'` becomes `'\''`. */
export function singleQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The lines that set a job's variables; they go before the script, so `set -x` never traces them. */
export function exportLines(env: Record<string, string>): string {
  let out = "";
  for (const [key, value] of Object.entries(env)) {
    if (!SHELL_NAME.test(key)) throw new DriverError(`variable name ${JSON.stringify(key)} is not a shell variable name`);
    out += `export ${key}=${singleQuote(value)}\n`;
  }
  return out;
}

/** Exit code of a channel's `exit` event: its code, or 128+n when a signal ended it. */
export function exitCodeOf(code: number | null | undefined, signalName?: string): number | undefined {
  if (typeof code === "number") return code;
  if (!signalName) return undefined;
  const name = (signalName.startsWith("SIG") ? signalName : `SIG${signalName}`) as NodeJS.Signals;
  return 128 + (os.constants.signals[name] ?? 9);
}

/** True for failures that happen while a machine is still coming up; anything else is final. */
function isTransient(err: Error & { level?: string; code?: string }): boolean {
  if (err.level === "client-authentication") return false;
  return true;
}

function loadKey(file: string): Promise<Buffer> {
  return readFile(file).then(
    (key) => {
      const parsed = utils.parseKey(key);
      if (parsed instanceof Error) throw new DriverError(`cannot use SSH key ${file}: ${parsed.message}`);
      return key;
    },
    (err: NodeJS.ErrnoException) => {
      throw new DriverError(`cannot read SSH key ${file}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
    },
  );
}

function connectConfig(target: SshTarget, key: Buffer | undefined, readyTimeout: number): ConnectConfig {
  const base: ConnectConfig = {
    host: target.host,
    port: target.port,
    username: target.user,
    readyTimeout,
    // Build machines are throwaway or named by the manifest; there is no known_hosts to check against.
    hostVerifier: () => true,
    keepaliveInterval: 15_000,
    keepaliveCountMax: 4,
  };
  if (key || target.password) {
    const answer = (_n: string, _i: string, _l: string, prompts: unknown[], finish: (answers: string[]) => void) => finish(prompts.map(() => target.password ?? ""));
    const methods: unknown[] = [];
    if (key) methods.push({ type: "publickey", username: target.user, key });
    if (target.password) methods.push({ type: "password", username: target.user, password: target.password }, { type: "keyboard-interactive", username: target.user, prompt: answer });
    return { ...base, authHandler: methods as ConnectConfig["authHandler"] };
  }
  return {
    ...base,
    authHandler: [
      { type: "none", username: target.user },
      { type: "password", username: target.user, password: "" },
      {
        type: "keyboard-interactive",
        username: target.user,
        prompt: (_name: string, _instructions: string, _lang: string, prompts: unknown[], finish: (answers: string[]) => void) => finish(prompts.map(() => "")),
      },
    ] as ConnectConfig["authHandler"],
  };
}

class BannerTimeout extends Error {
  constructor() {
    super("connected, but no SSH banner yet");
  }
}

/**
 * One connection attempt. While a machine boots, a port forwarder may accept the TCP connection
 * and then say nothing: an attempt that has not seen the server's first bytes within
 * `bannerTimeoutMs` is dropped and retried, so SSH is noticed soon after it starts answering.
 */
function attempt(config: ConnectConfig, bannerTimeoutMs: number, signal?: AbortSignal): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    const sock = net.connect({ host: config.host!, port: config.port! });
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      cleanup();
      client.destroy();
      sock.destroy();
      reject(err);
    };
    const onAbort = () => fail(new DriverError("aborted"));
    const banner = setTimeout(() => fail(new BannerTimeout()), bannerTimeoutMs);
    const cleanup = () => {
      clearTimeout(banner);
      signal?.removeEventListener("abort", onAbort);
    };
    sock.once("data", () => clearTimeout(banner));
    sock.on("error", (err) => fail(err));
    client.once("ready", () => {
      if (settled) return;
      settled = true;
      cleanup();
      client.removeAllListeners("error");
      // Later errors (a connection dropped mid-job) surface through the channel that sees them.
      client.on("error", () => undefined);
      resolve(client);
    });
    // Not `once`: a dropped attempt can report more than one error, and each must be heard.
    client.on("error", (err) => fail(err));
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    client.connect({ ...config, sock });
  });
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(finish, ms);
    function finish() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", finish);
      resolve();
    }
    signal?.addEventListener("abort", finish, { once: true });
  });
}

/** Connects, retrying refused, reset and failed handshakes until `timeoutMs`; authentication failures are final. */
export async function connectWithRetry(target: SshTarget, opts: ConnectOptions): Promise<Client> {
  const key = target.keyFile ? await loadKey(target.keyFile) : undefined;
  const deadline = Date.now() + opts.timeoutMs;
  const where = `${target.user}@${target.host}:${target.port}`;
  let last: Error | undefined;
  // Attempts that stay silent are normal while a machine boots (its network is not up yet), and a
  // short wait notices SSH soon after it starts. Many silent attempts in a row suggest a machine
  // too loaded to greet in time: from then on each attempt waits a second longer.
  let silent = 0;
  for (;;) {
    if (opts.signal?.aborted) throw new DriverError(`gave up connecting to ${where}`);
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      const budget = Math.min(left, opts.attemptTimeoutMs ?? 30_000);
      const bannerWait = Math.min((opts.bannerTimeoutMs ?? 3000) + 1000 * Math.max(0, silent - 4), 15_000);
      return await attempt(connectConfig(target, key, budget), Math.min(budget, bannerWait), opts.signal);
    } catch (err) {
      if (opts.signal?.aborted) throw new DriverError(`gave up connecting to ${where}`);
      last = err as Error;
      silent = err instanceof BannerTimeout ? silent + 1 : 0;
      if (!isTransient(err as Error)) {
        throw new DriverError(`${where} refused to log in with ${loginMethod(target)}: ${last.message}`);
      }
    }
    await pause(Math.min(opts.retryDelayMs ?? 250, Math.max(0, deadline - Date.now())), opts.signal);
  }
  throw new DriverError(`could not connect to ${where} within ${formatDuration(opts.timeoutMs)}${last ? `: ${last.message}` : ""}`);
}

/** Runs `command` and returns its stdout (small outputs only: setup and cleanup commands). Settles within `timeoutMs` even on a dead connection. */
function runQuiet(client: Client, command: string, timeoutMs = 30_000): Promise<{ code: number | undefined; stdout: string; stderr: string }> {
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

/** The remote side of one build: a connection, its workspace and a private directory for job scripts. */
export class SshSession {
  private sftpChannel?: Promise<SFTPWrapper>;
  private jobs = 0;
  private readonly running = new Set<string>();
  private closed = false;

  private constructor(
    readonly client: Client,
    /** Absolute, symlinks resolved: relative paths of objects and artifacts are under it, and jobs start in it. */
    readonly workspace: string,
    /** Private (0700) directory for job scripts and pid files, removed on close. */
    private readonly scripts: string,
    private readonly baseEnv: Record<string, string>,
    private readonly where: string,
  ) {}

  /**
   * Connects and prepares the workspace (the login's home directory) and a private script
   * directory. Files go over SFTP when the server offers it, else over exec channels (`cat`), so
   * that images with no sftp-server (busybox, dropbear alone) work too.
   */
  static async open(target: SshTarget, opts: ConnectOptions): Promise<SshSession> {
    const client = await connectWithRetry(target, opts);
    const where = `${target.user}@${target.host}:${target.port}`;
    try {
      // Both at once: every round trip counts while a build waits for its machine.
      const [made, sftp] = await Promise.all([
        runQuiet(client, `umask 077 && d=$(mktemp -d "\${TMPDIR:-/tmp}/djinn-job.XXXXXXXX") && cd && echo "$d" && pwd -P`),
        openSftp(client, where).catch((err: Error) => {
          // Only a server that has no SFTP (no subsystem, or no sftp-server to run) means exec
          // channels; anything else (a connection going down) fails here, not half-way later.
          if (noSftpSubsystem(err)) return undefined;
          throw err;
        }),
      ]);
      const [scripts, home] = made.stdout.trim().split("\n");
      if (made.code !== 0 || !scripts?.startsWith("/") || !home?.startsWith("/")) throw new DriverError(`cannot make a private directory on ${where}: ${made.stderr.trim() || `mktemp exited ${made.code}`}`);
      const session = new SshSession(client, home, scripts, opts.baseEnv ?? {}, where);
      if (sftp) session.sftpChannel = Promise.resolve(sftp);
      else session.overExec = true;
      return session;
    } catch (err) {
      client.end();
      if (err instanceof DriverError) throw err;
      throw new DriverError(`cannot prepare ${where}: ${(err as Error).message}`);
    }
  }

  /** True when the server offers no SFTP: files move over exec channels. */
  overExec = false;

  private sftp(): Promise<SFTPWrapper> {
    this.sftpChannel ??= openSftp(this.client, this.where);
    this.sftpChannel.catch(() => {
      this.sftpChannel = undefined;
    });
    return this.sftpChannel;
  }

  /** Runs one job: its script (exports first) is uploaded to the private directory and run by `sh` with stdin closed. */
  async execute(job: JobRun): Promise<ExecResult> {
    if (job.signal.aborted) return { exitCode: 137 };
    const n = ++this.jobs;
    const script = `${this.scripts}/job-${n}.sh`;
    const pidfile = `${this.scripts}/job-${n}.pid`;
    const statusFile = `${this.scripts}/job-${n}.status`;
    const body = exportLines({ ...this.baseEnv, ...job.env }) + job.script;
    if (this.overExec) await execWrite(this.client, script, Readable.from([body]), 0o600).catch((err: Error) => {
      throw new DriverError(`cannot upload the job script to ${script}: ${err.message}`);
    });
    else await pipelineString(await this.sftp(), script, body);
    // The job runs in a session (and process group) of its own, so a kill reaches everything it
    // started; whatever it leaves running in the background is killed when it ends.
    const wrapper = [
      `cd ${singleQuote(this.workspace)} || exit 1`,
      `if command -v setsid >/dev/null 2>&1; then setsid sh ${singleQuote(script)} </dev/null 2>&1 & else sh ${singleQuote(script)} </dev/null 2>&1 & fi`,
      `pid=$!`,
      `echo $pid >${singleQuote(pidfile)}`,
      `wait $pid`,
      `code=$?`,
      // Some servers (dropbear) can close a channel without sending its exit status: keep it here too.
      `echo $code >${singleQuote(statusFile)}`,
      `kill -KILL -$pid 2>/dev/null`,
      `rm -f ${singleQuote(script)} ${singleQuote(pidfile)}`,
      `exit $code`,
    ].join("\n");
    const channel = await new Promise<ClientChannel>((resolve, reject) => {
      this.client.exec(`exec sh -c ${singleQuote(wrapper)}`, (err, ch) => (err ? reject(new DriverError(`cannot start job ${job.name} on ${this.where}: ${err.message}`)) : resolve(ch)));
    });
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
        channel.on("exit", (code: number | null, sig?: string) => {
          exit = exitCodeOf(code, sig);
          // A process that escaped the job's group may hold the output open: cut it off.
          drainTimer = setTimeout(() => channel.close(), 2000);
        });
        channel.on("close", () => {
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
    const r = await runQuiet(this.client, `cat ${singleQuote(file)} && rm -f ${singleQuote(file)}`, 5000).catch(() => undefined);
    const code = r?.code === 0 ? Number(r.stdout.trim()) : NaN;
    return Number.isInteger(code) ? code : undefined;
  }

  /** Kills a job's process group (or, when it has none, the process) from a second channel. */
  private async killJob(pidfile: string): Promise<void> {
    const cmd = `pid=$(cat ${singleQuote(pidfile)} 2>/dev/null) && [ -n "$pid" ] && { kill -KILL -$pid 2>/dev/null || kill -KILL $pid 2>/dev/null; }; true`;
    await runQuiet(this.client, cmd, 5000).catch(() => undefined);
  }

  /** Absolute remote path of `dest`: relative paths (and `~/...`: the workspace is the login's home) are under the workspace. */
  resolve(dest: string): string {
    if (dest.startsWith("~/")) dest = dest.slice(2);
    return path.posix.isAbsolute(dest) ? path.posix.normalize(dest) : path.posix.join(this.workspace, dest);
  }

  async place(dest: string, source: Readable, _size: number, mode = 0o644): Promise<void> {
    if (this.overExec) {
      const target = this.resolve(dest);
      try {
        return await execWrite(this.client, target, source, mode);
      } catch (err) {
        source.destroy();
        throw new DriverError(`cannot write ${target} on ${this.where}: ${(err as Error).message}`);
      }
    }
    let sftp: SFTPWrapper;
    try {
      sftp = await this.sftp();
    } catch (err) {
      source.destroy();
      throw err;
    }
    const target = this.resolve(dest);
    try {
      await mkdirs(sftp, path.posix.dirname(target));
      const out = sftp.createWriteStream(target, { mode });
      const closed = new Promise<void>((resolve) => out.once("close", () => resolve()));
      await pipeline(source, out);
      await closed;
    } catch (err) {
      source.destroy();
      throw new DriverError(`cannot write ${target} on ${this.where}: ${(err as Error).message}`);
    }
  }

  /** The paths a shell pattern matches on the machine (see artifacts.ts). */
  async glob(pattern: string): Promise<string[]> {
    const r = await runQuiet(this.client, `sh -c ${singleQuote(GLOB_SCRIPT)} sh ${singleQuote(this.workspace)} ${singleQuote(pattern)}`, 60_000).catch((err: Error) => {
      throw new CollectError("failed", `cannot expand ${pattern}: ${err.message}`);
    });
    if (r.code !== 0) throw new CollectError("failed", `cannot expand ${pattern}: ${r.stderr.trim() || `exit status ${r.code}`}`);
    return parseGlobOutput(r.stdout);
  }

  /** Opens a file of the machine: relative paths are under the workspace, `~/` is the workspace (the home), absolute paths are taken as they are. */
  async collect(file: string): Promise<Readable> {
    if (file === "" || file.includes("\0")) throw new CollectError("failed", `invalid artifact path ${JSON.stringify(file)}`);
    const target = this.resolve(file);
    if (this.overExec) {
      const r = await runQuiet(this.client, `if [ ! -e ${singleQuote(target)} ]; then exit 4; elif [ ! -f ${singleQuote(target)} ]; then exit 6; fi`, 30_000).catch((err: Error) => {
        throw new CollectError("failed", `cannot look at ${file}: ${err.message}`);
      });
      if (r.code === 4) throw new CollectError("missing", `${file} does not exist`);
      if (r.code === 6) throw new CollectError("not-a-file", `${file} is not a regular file`);
      if (r.code !== 0) throw new CollectError("failed", `cannot look at ${file}: ${r.stderr.trim() || `exit status ${r.code}`}`);
      return execRead(this.client, target, file);
    }
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
      throw new CollectError("missing", `${file} does not exist`);
    }
    const stats = await new Promise<{ isFile(): boolean }>((resolve, reject) => sftp.stat(real, (err, st) => (err ? reject(err) : resolve(st)))).catch((err: Error) => {
      throw new CollectError("failed", `cannot read ${file}: ${err.message}`);
    });
    if (!stats.isFile()) throw new CollectError("not-a-file", `${file} is not a regular file`);
    return sftp.createReadStream(real);
  }

  /** Kills running jobs, removes the script directory and closes the connection. Never throws. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const pidfile of this.running) await this.killJob(pidfile);
    await runQuiet(this.client, `rm -rf ${singleQuote(this.scripts)}`, 5000).catch(() => undefined);
    this.client.end();
  }

  /** Drops the connection at once, for a machine that is about to be destroyed anyway. */
  abandon(): void {
    this.closed = true;
    this.client.end();
    this.client.destroy();
  }
}

/**
 * Writes `source` to `target` over an exec channel (`cat`), for servers without SFTP: missing
 * directories are made (0755), the file is created private and then given `mode`.
 */
export function execWrite(client: Client, target: string, source: Readable, mode: number): Promise<void> {
  const script = '(umask 022 && mkdir -p "$(dirname "$1")") && umask 077 && cat >"$1" && chmod "$2" "$1"';
  return new Promise((resolve, reject) => {
    client.exec(`sh -c ${singleQuote(script)} sh ${singleQuote(target)} ${mode.toString(8)}`, (err, ch) => {
      if (err) return reject(err);
      let stderr = "";
      let code: number | undefined;
      ch.stderr.on("data", (d: Buffer) => {
        if (stderr.length < 4096) stderr += d.toString("utf8");
      });
      ch.on("exit", (c: number | null, sig?: string) => (code = exitCodeOf(c, sig)));
      ch.on("close", () => (code === 0 ? resolve() : reject(new Error(stderr.trim() || `exit status ${code ?? "unknown"}`))));
      ch.resume();
      source.on("error", (e) => {
        ch.close();
        reject(e);
      });
      source.pipe(ch);
    });
  });
}

/**
 * Streams `target` out over an exec channel (`cat`), for servers without SFTP. The stream ends
 * only once the command has exited well, so a read that fails half-way is an error, never a
 * short artifact.
 */
function execRead(client: Client, target: string, shown: string): Promise<Readable> {
  return new Promise((resolve, reject) => {
    client.exec(`exec cat <${singleQuote(target)}`, (err, ch) => {
      if (err) return reject(new CollectError("failed", `cannot read ${shown}: ${err.message}`));
      let stderr = "";
      ch.stderr.on("data", (d: Buffer) => {
        if (stderr.length < 4096) stderr += d.toString("utf8");
      });
      // A server that closes without an exit status (dropbear can) is taken at its word.
      const exited = new Promise<number | undefined>((done) => {
        ch.on("exit", (c: number | null, sig?: string) => done(exitCodeOf(c, sig)));
        ch.on("close", () => done(undefined));
      });
      const out = new Transform({
        transform: (chunk, _enc, cb) => cb(null, chunk),
        flush: (cb) => {
          void exited.then((code) => (code === undefined || code === 0 ? cb() : cb(new CollectError("failed", `cannot read ${shown}: ${stderr.trim() || `cat exited ${code}`}`))));
        },
      });
      out.on("close", () => ch.close());
      ch.end();
      ch.pipe(out);
      resolve(out);
    });
  });
}

/** True when the server answered an SFTP request by having none: OpenSSH without a Subsystem line, dropbear without its sftp-server. */
export function noSftpSubsystem(err: Error): boolean {
  return /Unable to start subsystem|while establishing SFTP session/i.test(err.message);
}

function openSftp(client: Client, where: string): Promise<SFTPWrapper> {
  return new Promise<SFTPWrapper>((resolve, reject) => {
    client.sftp((err, sftp) => {
      if (err) reject(new DriverError(`SFTP is not available on ${where}: ${err.message}`));
      else resolve(sftp);
    });
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

async function pipelineString(sftp: SFTPWrapper, file: string, text: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    sftp.writeFile(file, text, { mode: 0o600 }, (err) => (err ? reject(new DriverError(`cannot upload the job script to ${file}: ${err.message}`)) : resolve()));
  });
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
}
