// An SMTP server for the daemon suites: the failure mail as the worker sent it.
import { SMTPServer } from "smtp-server";
import { freePort } from "./services.js";

/** An SMTP server in this process that keeps every message it receives. */
export async function startSmtp(): Promise<{ addr: string; messages: string[]; next(): Promise<string>; stop(): Promise<void> }> {
  const messages: string[] = [];
  const waiting: ((m: string) => void)[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onData(stream, _session, done) {
      let data = "";
      stream.on("data", (c) => (data += c));
      stream.on("end", () => {
        messages.push(data);
        waiting.shift()?.(data);
        done();
      });
    },
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  return {
    addr: `127.0.0.1:${port}`,
    messages,
    next: () => (messages.length ? Promise.resolve(messages[messages.length - 1]) : new Promise((r) => waiting.push(r))),
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}
