// The suites' one SMTP server (smtp-server, in this process, on 127.0.0.1): every message it
// receives is kept, parsed and raw; options add STARTTLS, AUTH and refusals (the mail suite), and
// the daemon suites read the failure mail as the worker sent it.
import net from "node:net";
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from "smtp-server";

export interface Received {
  from: string | false;
  to: string[];
  secure: boolean;
  user?: string;
  headers: Record<string, string>;
  /** Decoded text body. */
  body: string;
  /** The message as it came over the wire. */
  raw: string;
}

export interface TestSmtpServer {
  port: number;
  addr: string;
  received: Received[];
  connections: number;
  rcptCalls: number;
  authCalls: number;
  /** The last message received, or the next one when none has come yet. */
  next(): Promise<Received>;
  close(): Promise<void>;
}

/** Headers (unfolded, lower-cased names) and the decoded text body of a raw single-part message. */
function parseMessage(raw: string): { headers: Record<string, string>; body: string } {
  const split = raw.indexOf("\r\n\r\n");
  const headers: Record<string, string> = {};
  for (const line of raw.slice(0, split).replace(/\r\n[ \t]+/g, " ").split("\r\n")) {
    const colon = line.indexOf(":");
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = raw.slice(split + 4);
  if (/quoted-printable/i.test(headers["content-transfer-encoding"] ?? "")) {
    body = Buffer.from(body.replace(/=\r\n/g, "").replace(/=([0-9A-F]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16))), "latin1").toString("utf8");
  }
  return { headers, body: body.replace(/\r\n/g, "\n") };
}

/** An SMTP server in this process (smtp-server) that keeps every message it receives; `opts` adds TLS, AUTH, refusals. */
export async function startSmtpServer(opts: SMTPServerOptions = {}): Promise<TestSmtpServer> {
  const state = { received: [] as Received[], connections: 0, rcptCalls: 0, authCalls: 0 };
  const waiting: ((m: Received) => void)[] = [];
  const server = new SMTPServer({
    authOptional: true,
    logger: false,
    onConnect(_session, cb) {
      state.connections++;
      cb();
    },
    onData(stream, session: SMTPServerSession, cb) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const raw = Buffer.concat(chunks).toString("utf8");
        const received: Received = {
          from: session.envelope.mailFrom && session.envelope.mailFrom.address,
          to: session.envelope.rcptTo.map((r) => r.address),
          secure: session.secure,
          user: session.user,
          ...parseMessage(raw),
          raw,
        };
        state.received.push(received);
        for (const w of waiting.splice(0)) w(received);
        cb();
      });
    },
    ...opts,
    onRcptTo(address, session, cb) {
      state.rcptCalls++;
      if (opts.onRcptTo) opts.onRcptTo(address, session, cb);
      else cb();
    },
    onAuth(auth, session, cb) {
      state.authCalls++;
      if (opts.onAuth) opts.onAuth(auth, session, cb);
      else cb(new Error("no AUTH on this server"));
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.server.address() as net.AddressInfo).port;
  const next = () => (state.received.length ? Promise.resolve(state.received[state.received.length - 1]!) : new Promise<Received>((r) => waiting.push(r)));
  return Object.assign(state, { port, addr: `127.0.0.1:${port}`, next, close: () => new Promise<void>((r) => server.close(() => r())) });
}

/** For the daemon suites: plain SMTP, no AUTH; the messages as they came over the wire. */
export async function startSmtp(): Promise<{ addr: string; messages: string[]; next(): Promise<string>; stop(): Promise<void> }> {
  const server = await startSmtpServer({ disabledCommands: ["STARTTLS", "AUTH"] });
  return {
    addr: server.addr,
    get messages() {
      return server.received.map((r) => r.raw);
    },
    next: async () => (await server.next()).raw,
    stop: () => server.close(),
  };
}
