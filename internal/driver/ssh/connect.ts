// Reaching a machine over SSH: log in with a key, a password or Djinn's empty password, retrying
// while the machine boots (refused, reset, silent) until a deadline; a refused login is final.
import { readFile } from "node:fs/promises";
import net from "node:net";
import ssh2, { type ConnectConfig } from "ssh2";
import { formatDuration } from "../../timers/duration.js";
import { DriverError } from "../driver.js";
import { sleep } from "../../timers/timers.js";
import { fileReadReason } from "../../errors/errors.js";

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
}

const { Client, utils } = ssh2;
export type Client = InstanceType<typeof Client>;

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
      throw new DriverError(`cannot read SSH key ${file}: ${fileReadReason(err)}`);
    },
  );
}

/**
 * The cipher asked for first: chacha20-poly1305, as OpenSSH's client does. The machine encrypts
 * all that a cache or an artifact sends; ssh2's own order puts AES first (fast where the worker
 * has AES instructions), but dropbear has no AES-GCM, so the two agreed on AES-CTR with an HMAC,
 * which a machine without AES instructions (a TCG guest, many boards) sends at about two thirds of
 * chacha20-poly1305's speed (bench/cache.ts). A server without it still gets ssh2's order.
 */
export const FIRST_CIPHER = "chacha20-poly1305@openssh.com";

function connectConfig(target: SshTarget, key: Buffer | undefined, readyTimeout: number): ConnectConfig {
  const base: ConnectConfig = {
    host: target.host,
    // Taken out of ssh2's list, then put first (prepend alone leaves one already listed where it is).
    algorithms: { cipher: { remove: FIRST_CIPHER, prepend: FIRST_CIPHER } as unknown as NonNullable<ConnectConfig["algorithms"]>["cipher"] },
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
    await sleep(Math.min(opts.retryDelayMs ?? 250, Math.max(0, deadline - Date.now())), { signal: opts.signal });
  }
  throw new DriverError(`could not connect to ${where} within ${formatDuration(opts.timeoutMs)}${last ? `: ${last.message}` : ""}`);
}
