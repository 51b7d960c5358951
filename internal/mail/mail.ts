// Failure mail: one plain-text message per failed build to the addresses its manifest names.
import { readFileSync } from "node:fs";
import nodemailer, { type Transporter } from "nodemailer";
import type SMTPTransport from "nodemailer/lib/smtp-transport/index.js";
import type { Logger } from "pino";
import type { WorkerConfig } from "../config/config.js";
import { hostAndPort } from "../net/address.js";
import { EnvironmentError, systemReasonOf, fileReadReason } from "../errors/errors.js";
import type { Status } from "../runner/status.js";
import { sleep } from "../timers/timers.js";

export type SmtpConfig = NonNullable<WorkerConfig["smtp"]>;

export interface FailedBuild {
  id: string;
  status: Status;
  namespace?: string;
  notify: string[];
  /** Last lines of the build's output, already masked by the caller. */
  outputTail: string[];
  url?: string;
  /** What started it, when a push did: `pushed: github o/r refs/heads/main 1a2b3c by Name <a@b>: message`. */
  trigger?: string;
}

export interface MailMessage {
  from: string;
  to: string[];
  subject: string;
  text: string;
}

export interface MailerOptions {
  /** Further attempts after the first when the failure may be temporary (default 2: three tries). */
  retries?: number;
  /** Wait before the first retry; doubles for each later one (default 1000 ms). */
  retryDelayMs?: number;
  /** Bound on connecting, on the server's greeting and on any silent stretch of the session (default 10000 ms). */
  timeoutMs?: number;
}

/** Lines of output a failure mail carries. */
export const MAIL_TAIL_LINES = 15;

export function failureMessage(from: string, build: FailedBuild): MailMessage {
  const to = [...new Set(build.notify.map((a) => a.trim()).filter((a) => a !== ""))];
  // An entry may hold several lines; its own trailing newline does not make an extra blank one.
  const lines = build.outputTail.flatMap((l) => l.replace(/\r?\n$/, "").split(/\r?\n/));
  const tail = lines.slice(-MAIL_TAIL_LINES);
  const text = [
    `Build:     #${build.id}`,
    `Status:    ${build.status}`,
    `Namespace: ${build.namespace ?? "(none)"}`,
    ...(build.url ? [`URL:       ${build.url}`] : []),
    ...(build.trigger ? [`Trigger:   ${build.trigger.replace(/^pushed: /, "").replace(/[\r\n]+/g, " ")}`] : []),
    "",
    tail.length > 0 ? `Last ${tail.length} line${tail.length === 1 ? "" : "s"} of output:` : "No output.",
    ...(tail.length > 0 ? ["-----", ...tail, "-----"] : []),
    "",
  ].join("\n");
  return { from, to, subject: `Djinn CI - Build #${build.id} ${build.status}`, text };
}

/** A mail configuration that cannot work (bad address, unreadable CA) or a server that refuses: one line for the operator. */
export class MailError extends EnvironmentError {
  override name = "MailError";
}

/** "host:port" or "[v6]:port" → host and port, or a clear error naming smtp.addr. */
function parseSmtpAddr(addr: string): { host: string; port: number } {
  const a = hostAndPort(addr);
  if (!a) throw new MailError(`smtp.addr ${JSON.stringify(addr)} is not host:port (e.g. "127.0.0.1:25")`);
  return a;
}

interface SmtpError extends Error {
  code?: string;
  responseCode?: number;
  command?: string;
}

/** A failure that the same attempt would meet again: a 5xx reply, refused credentials, an untrusted certificate. */
function isPermanent(err: SmtpError): boolean {
  if (err.responseCode !== undefined && err.responseCode >= 500 && err.responseCode < 600) return true;
  if (err.code === "EAUTH" || err.code === "NoAuth") return true;
  // nodemailer replaces the TLS error's own code with ESOCKET; Node's verification messages all name the certificate.
  return (err.code === "ESOCKET" || err.code === "ETLS") && /certificate/i.test(err.message);
}

export class Mailer {
  readonly #cfg: SmtpConfig;
  readonly #log: Logger;
  readonly #transport: Transporter<SMTPTransport.SentMessageInfo>;
  readonly #host: string;
  readonly #port: number;
  readonly #retries: number;
  readonly #retryDelayMs: number;
  /** Every form in which the password could surface in an error text (raw, base64, AUTH PLAIN token). */
  readonly #secrets: string[];
  #closed = false;

  constructor(cfg: SmtpConfig, log: Logger, opts: MailerOptions = {}) {
    const { host, port } = parseSmtpAddr(cfg.addr);
    this.#cfg = cfg;
    this.#host = host;
    this.#port = port;
    this.#log = log.child({ component: "mail" });
    this.#retries = Math.max(0, opts.retries ?? 2);
    this.#retryDelayMs = Math.max(0, opts.retryDelayMs ?? 1000);
    const timeoutMs = opts.timeoutMs ?? 10_000;

    let ca: Buffer | undefined;
    if (cfg.ca) {
      try {
        ca = readFileSync(cfg.ca);
      } catch (err) {
        throw new MailError(`smtp.ca: cannot read ${cfg.ca}: ${fileReadReason(err)}`);
      }
    }
    const password = cfg.password ?? "";
    this.#secrets = password === "" ? [] : [password, Buffer.from(password).toString("base64"), Buffer.from(`\0${cfg.username ?? ""}\0${password}`).toString("base64")];

    const options: SMTPTransport.Options = {
      host,
      port,
      secure: false,
      connectionTimeout: timeoutMs,
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
      logger: false,
      debug: false,
    };
    if (ca) {
      // A CA means the operator wants mail encrypted: refuse to send if STARTTLS is missing or the certificate does not chain to it.
      options.requireTLS = true;
      options.tls = { ca, rejectUnauthorized: true };
    } else {
      // No CA: plain SMTP, as on a localhost relay. Not even opportunistic STARTTLS, whose unverifiable certificate would fail every send.
      options.ignoreTLS = true;
    }
    if (cfg.username) {
      options.auth = { user: cfg.username, pass: password };
      // Authenticate even when the server does not advertise AUTH, so a misconfiguration fails loudly instead of sending unauthenticated.
      // (forceAuth is a nodemailer option its type definitions lack.)
      Object.assign(options, { forceAuth: true });
    }
    this.#transport = nodemailer.createTransport(options);
  }

  /** How the connection is made, for check output and logs: never the password. */
  #mode(): string {
    return `${this.#cfg.ca ? "STARTTLS" : "plain"}, ${this.#cfg.username ? `AUTH as ${this.#cfg.username}` : "no AUTH"}`;
  }

  #scrub(text: string): string {
    let out = text;
    for (const s of this.#secrets) out = out.split(s).join("***");
    return out;
  }

  #describe(err: unknown): { message: string; code?: string; responseCode?: number; command?: string } {
    const e = err as SmtpError;
    const message = this.#scrub(e instanceof Error ? e.message : String(err));
    return { message, code: e.code, responseCode: e.responseCode, command: e.command === undefined ? undefined : this.#scrub(e.command) };
  }

  /**
   * Sends the failure mail for `build`. Never throws: on failure logs why and resolves false.
   * Each mail is one log line (sent, or not and why), on `buildLog` when the caller has a logger
   * for the build already.
   */
  async sendBuildFailure(build: FailedBuild, buildLog?: Logger): Promise<boolean> {
    const log = buildLog ?? this.#log.child({ build: build?.id });
    let message: MailMessage;
    try {
      message = failureMessage(this.#cfg.admin, build);
    } catch (err) {
      log.error({ error: this.#describe(err) }, "failure mail not sent: bad build record");
      return false;
    }
    if (message.to.length === 0) return false;
    if (this.#closed) {
      log.error("failure mail not sent: mailer is closed");
      return false;
    }
    const attempts = this.#retries + 1;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const info = await this.#transport.sendMail(message);
        const rejected = (info.rejected ?? []).map(String);
        if (rejected.length > 0) log.warn({ rejected }, "failure mail: some recipients were refused");
        log.info({ to: info.accepted?.map(String) ?? message.to }, "failure mail sent");
        return true;
      } catch (err) {
        const permanent = isPermanent(err as SmtpError);
        const last = permanent || attempt === attempts;
        log.error(
          { smtp: `${this.#cfg.addr} (${this.#mode()})`, attempt, attempts, error: this.#describe(err) },
          last ? "failure mail not sent" : "failure mail attempt failed, retrying",
        );
        if (last) return false;
        await sleep(this.#retryDelayMs * 2 ** (attempt - 1));
      }
    }
    return false;
  }

  /** Connects, negotiates STARTTLS and AUTH as configured, and quits: for `djinn-worker check`. */
  async verify(): Promise<string> {
    try {
      await this.#transport.verify();
    } catch (err) {
      const reason = systemReasonOf(err) ?? this.#describe(err).message;
      throw new MailError(`smtp: ${this.#cfg.addr} (${this.#mode()}) failed: ${reason}`);
    }
    return `smtp: ${this.#cfg.addr} ok (${this.#mode()})`;
  }

  close(): void {
    this.#closed = true;
    this.#transport.close();
  }
}
