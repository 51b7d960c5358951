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
}

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

  constructor(
    readonly client: Client,
    /** `user@host:port`, for messages. */
    readonly where: string,
    opts: GateOptions = {},
  ) {
    this.maxOpen = Math.max(1, opts.maxOpen ?? DEFAULT_MAX_CHANNELS);
    this.retry = opts.retry ?? DEFAULT_CHANNEL_RETRY;
    this.signal = opts.signal;
  }

  /**
   * An exec channel running `command`. With `cleanup`, the build's signal does not stop it: for
   * killing a job and removing its scripts, which must happen after an abort too.
   */
  exec(command: string, opts: { cleanup?: boolean } = {}): Promise<ExecChannel> {
    return this.opened<ExecChannel>(
      (done) => this.client.exec(command, (err, channel) => done(err, err ? (undefined as never) : watchExit(channel))),
      (opened) => opened.channel,
      opts.cleanup ? undefined : this.signal,
      isChannelRefusal,
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
  private async opened<T>(open: Opener<T>, channelOf: (opened: T) => ClientChannel | SFTPWrapper, signal: AbortSignal | undefined, retryIf: (err: Error) => boolean): Promise<T> {
    await this.place(signal);
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.open--;
      this.queue.shift()?.();
    };
    try {
      const opened = await this.withRetries(open, signal, retryIf);
      channelOf(opened).once("close", release);
      return opened;
    } catch (err) {
      release();
      throw err;
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
