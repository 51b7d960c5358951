// Opening channels on one connection: no more at once than a server allows, and a channel the
// server refuses (it is busy: out of sessions, or a fork failed) is asked for again after a pause.
import os from "node:os";
import type { ClientChannel, SFTPWrapper } from "ssh2";
import { formatDuration } from "../../timers/duration.js";
import { sleep } from "../../timers/timers.js";
import { DriverError } from "../driver.js";
import type { Client } from "./connect.js";

/** How often, and how patiently, a refused channel is asked for again. */
export interface ChannelRetry {
  /** Tries in all, the first included. */
  attempts: number;
  /** Pause after the first refusal; each further pause doubles, up to `maxDelayMs`. */
  firstDelayMs: number;
  maxDelayMs: number;
}

/** About 16 s of refusals in all before a channel is given up: long enough for a busy machine to catch up. */
export const DEFAULT_CHANNEL_RETRY: ChannelRetry = { attempts: 8, firstDelayMs: 200, maxDelayMs: 5000 };

/**
 * Channels open at once on one connection. OpenSSH allows 10 sessions per connection
 * (MaxSessions); dropbear allows far more (MAX_CHANNELS) but may fail to start a command when its
 * machine is short of processes or memory. A build needs few at a time (its SFTP channel, a job,
 * a kill or a transfer), so a queue here only ever waits on a leak or a future concurrency.
 */
export const DEFAULT_MAX_CHANNELS = 8;

/** The pause before try `attempt + 1` (attempt counts from 1). */
export function retryDelay(retry: ChannelRetry, attempt: number): number {
  return Math.min(retry.maxDelayMs, retry.firstDelayMs * 2 ** (attempt - 1));
}

/**
 * True for a server's refusal to open a channel or to start what it was asked to run, which a
 * later try may get past; never for a command that ran, nor for a connection that is gone.
 */
export function isChannelRefusal(err: Error): boolean {
  return /^\(SSH\) Channel open failure\b|^Unable to exec$|^Unable to start subsystem\b/.test(err.message);
}

export interface GateOptions {
  maxOpen?: number;
  retry?: ChannelRetry;
  /** Aborted when the build is: nothing is waited for or asked again after that. */
  signal?: AbortSignal;
  /** Start channels one at a time, each when no short command is ending (see `startsNeedQuiet`); by default as the server's version needs. */
  quietStarts?: boolean;
}

/**
 * True for an SSH server (its software version, e.g. "dropbear_2022.83") that closes a session
 * channel still waiting for its command when a process of another channel of the connection exits
 * at that moment, and then ends the whole connection on a failed assertion
 * (`!channel->sent_close`) when the command it started anyway has output: dropbear 2022.82 to
 * 2024.85 (mkj/dropbear#321, fixed in 2024.86). A dropbear whose version cannot be read is taken
 * for one of those.
 */
export function startsNeedQuiet(software: string | undefined): boolean {
  if (!software || !/^dropbear/i.test(software)) return false;
  const v = /^dropbear[_-]?(\d{4})\.(\d+)/i.exec(software);
  if (!v) return true;
  const version = Number(v[1]) * 1000 + Number(v[2]);
  return version >= 2022_082 && version < 2024_086;
}

/**
 * The longest a channel start waits for short commands to end (a stream its reader left behind):
 * after that it starts anyway, at the risk `startsNeedQuiet` describes, rather than hang.
 */
export const QUIET_WAIT_MS = 30_000;

/** An exec channel, and its command's exit code. */
export interface ExecChannel {
  channel: ClientChannel;
  /**
   * The exit code (128+n after a signal) once the command exits; undefined when the channel
   * closes without one (dropbear can; a dropped connection does). Watched from the moment the
   * channel opens: an exit that arrives in the same packet as the last output is not missed.
   */
  exit: Promise<number | undefined>;
}

function watchExit(channel: ClientChannel): ExecChannel {
  const exit = new Promise<number | undefined>((resolve) => {
    channel.once("exit", (code: number | null, signalName?: string) => resolve(exitCodeOf(code, signalName)));
    channel.once("close", () => resolve(undefined));
  });
  return { channel, exit };
}

type Opener<T> = (done: (err: Error | undefined, channel: T) => void) => void;

/** One connection's channels: at most `maxOpen` at once, a refusal asked again with a growing pause. */
export class ChannelGate {
  private open = 0;
  private readonly queue: Array<() => void> = [];
  private readonly maxOpen: number;
  private readonly retry: ChannelRetry;
  private readonly signal?: AbortSignal;
  private readonly quietStarts: boolean;
  /** With quiet starts: the start under way (the next waits for it). */
  private lastStart: Promise<void> = Promise.resolve();
  /** With quiet starts: the exits of short commands still running. */
  private readonly ending = new Set<Promise<unknown>>();

  constructor(
    readonly client: Client,
    /** `user@host:port`, for messages. */
    readonly where: string,
    opts: GateOptions = {},
  ) {
    this.maxOpen = Math.max(1, opts.maxOpen ?? DEFAULT_MAX_CHANNELS);
    this.retry = opts.retry ?? DEFAULT_CHANNEL_RETRY;
    this.signal = opts.signal;
    this.quietStarts = opts.quietStarts ?? startsNeedQuiet(remoteSoftware(client));
  }

  /**
   * An exec channel running `command`. With `cleanup`, the build's signal does not stop it: for
   * killing a job and removing its scripts, which must happen after an abort too. A `lasting`
   * command (a job) may run for long: later channels do not wait for it to end.
   */
  exec(command: string, opts: { cleanup?: boolean; lasting?: boolean } = {}): Promise<ExecChannel> {
    return this.opened<ExecChannel>(
      (done) => this.client.exec(command, (err, channel) => done(err, err ? (undefined as never) : watchExit(channel))),
      (opened) => opened.channel,
      opts.cleanup ? undefined : this.signal,
      isChannelRefusal,
      opts.lasting ? undefined : (opened) => opened.exit,
    );
  }

  /**
   * An SFTP channel. `retryIf` decides which refusals are asked again: when probing for SFTP, a
   * server that refuses the subsystem has none, and that is an answer, not a refusal.
   */
  sftp(retryIf: (err: Error) => boolean = isChannelRefusal): Promise<SFTPWrapper> {
    return this.opened<SFTPWrapper>(
      (done) => {
        const before = channelIds(this.client);
        let mine: string | undefined;
        this.client.sftp((err, sftp) => {
          if (err && refusedSubsystem(err)) closeStranded(this.client, mine);
          done(err, sftp);
        });
        mine = [...channelIds(this.client)].find((id) => !before.has(id));
      },
      (sftp) => sftp,
      this.signal,
      retryIf,
    );
  }

  /** Holds a place from before the channel is asked for until it closes. */
  private async opened<T>(
    open: Opener<T>,
    channelOf: (opened: T) => ClientChannel | SFTPWrapper,
    signal: AbortSignal | undefined,
    retryIf: (err: Error) => boolean,
    /** For a short command: its exit, which later starts wait for (quiet starts). */
    exitOf?: (opened: T) => Promise<unknown>,
  ): Promise<T> {
    await this.place(signal);
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.open--;
      this.queue.shift()?.();
    };
    try {
      const start = async () => {
        const opened = await this.withRetries(open, signal, retryIf);
        channelOf(opened).once("close", release);
        // Noted before the next start may look: it waits for this command to end.
        const exit = this.quietStarts ? exitOf?.(opened) : undefined;
        if (exit) {
          this.ending.add(exit);
          void exit.finally(() => this.ending.delete(exit));
        }
        return opened;
      };
      return await (this.quietStarts ? this.quietly(start) : start());
    } catch (err) {
      release();
      throw err;
    }
  }

  /**
   * Runs `start` once the start before it is done and no short command is ending: on a server
   * that needs it (`startsNeedQuiet`), no process of the connection exits while a channel waits
   * for its command.
   */
  private async quietly<T>(start: () => Promise<T>): Promise<T> {
    const before = this.lastStart;
    let done!: () => void;
    this.lastStart = new Promise<void>((resolve) => (done = resolve));
    try {
      await before;
      if (this.ending.size > 0) {
        const ended = new AbortController();
        void Promise.all(this.ending).then(() => ended.abort());
        await sleep(QUIET_WAIT_MS, { signal: ended.signal });
        ended.abort();
      }
      return await start();
    } finally {
      done();
    }
  }

  private place(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(new DriverError("aborted"));
    if (this.open < this.maxOpen) {
      this.open++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const take = () => {
        signal?.removeEventListener("abort", giveUp);
        this.open++;
        resolve();
      };
      const giveUp = () => {
        const i = this.queue.indexOf(take);
        if (i >= 0) this.queue.splice(i, 1);
        reject(new DriverError("aborted"));
      };
      this.queue.push(take);
      signal?.addEventListener("abort", giveUp, { once: true });
    });
  }

  private async withRetries<T>(open: Opener<T>, signal: AbortSignal | undefined, retryIf: (err: Error) => boolean): Promise<T> {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        return await new Promise<T>((resolve, reject) => {
          // Throws at once on a connection that is gone ("Not connected"): final.
          open((err, channel) => (err ? reject(err) : resolve(channel)));
        });
      } catch (err) {
        const e = err as Error;
        if (!retryIf(e)) throw e;
        if (signal?.aborted) throw new DriverError("aborted");
        if (attempt >= this.retry.attempts) {
          const spent = formatDuration(Math.round((Date.now() - started) / 100) * 100);
          throw new DriverError(`${this.where} refused a channel (${attempt} ${attempt === 1 ? "try" : "tries"} in ${spent}): ${e.message}`);
        }
        await sleep(retryDelay(this.retry, attempt), { signal });
        if (signal?.aborted) throw new DriverError("aborted");
      }
    }
  }
}

/** Exit code of a channel's `exit` event: its code, or 128+n when a signal ended it. */
export function exitCodeOf(code: number | null | undefined, signalName?: string): number | undefined {
  if (typeof code === "number") return code;
  if (!signalName) return undefined;
  const name = (signalName.startsWith("SIG") ? signalName : `SIG${signalName}`) as NodeJS.Signals;
  return 128 + (os.constants.signals[name] ?? 9);
}

/** The server's software version from its identification line ("dropbear_2022.83"); ssh2 keeps it, not publicly. */
function remoteSoftware(client: Client): string | undefined {
  const v = (client as unknown as { _remoteVer?: unknown })._remoteVer;
  return typeof v === "string" ? v : undefined;
}

/** ssh2's table of a connection's channels (not public; absent, nothing is found). */
function channelTable(client: Client): Record<string, unknown> {
  return (client as unknown as { _chanMgr?: { _channels?: Record<string, unknown> } })._chanMgr?._channels ?? {};
}

function channelIds(client: Client): Set<string> {
  return new Set(Object.keys(channelTable(client)));
}

/**
 * The server answered the subsystem request with a failure (OpenSSH without a Subsystem line) and
 * keeps the channel open. Not a server that started the subsystem's program and saw it exit
 * (dropbear without sftp-server): that channel is the server's to close, and it does; a close
 * of ours crossing it can reach the server after it let the channel go, which dropbear answers by
 * dropping the connection.
 */
function refusedSubsystem(err: Error): boolean {
  return /^Unable to start subsystem/.test(err.message);
}

/**
 * ssh2 leaves the channel of a refused SFTP subsystem open on both sides (client.sftp): it is
 * closed here, or each refusal would keep one of the server's sessions for the connection's life.
 */
function closeStranded(client: Client, id: string | undefined): void {
  const channel = id === undefined ? undefined : (channelTable(client)[id] as { end?: () => void; outgoing?: { state?: string } } | undefined);
  if (typeof channel?.end === "function" && channel.outgoing?.state === "open") channel.end();
}
