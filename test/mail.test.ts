import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import pino, { type Logger } from "pino";
import { Mailer, failureMessage, type FailedBuild } from "../internal/mail/mail.js";
import { requireService, which } from "./helpers/env.js";
import type { SMTPServerOptions } from "smtp-server";
import { startSmtpServer as startServer, type TestSmtpServer as TestServer } from "./helpers/smtp.js";
import { freeLocalPort as freePort } from "../internal/net/port.js";

const PASSWORD = "hunter2-Pa55w0rd-never-logged";
const ADMIN = "djinn@ci.example";
const skip = requireService("openssl", which("openssl") ? undefined : "the openssl CLI is needed to make a throwaway CA (apt-get install openssl)");

/** A pino logger whose lines are kept for the test to read. */
function capturedLogger(): { log: Logger; text: () => string; lines: () => Array<Record<string, unknown>> } {
  let buf = "";
  const sink = new Writable({
    write(chunk, _enc, cb) {
      buf += chunk.toString();
      cb();
    },
  });
  return {
    log: pino({ level: "debug" }, sink),
    text: () => buf,
    lines: () =>
      buf
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** The password must not surface raw, base64-encoded, or inside an AUTH PLAIN token. */
function assertNoPassword(text: string, user = "bob"): void {
  for (const form of [PASSWORD, Buffer.from(PASSWORD).toString("base64"), Buffer.from(`\0${user}\0${PASSWORD}`).toString("base64")]) {
    assert.ok(!text.includes(form), `log output contains the SMTP password (as ${JSON.stringify(form)})`);
  }
}


function build(over: Partial<FailedBuild> = {}): FailedBuild {
  return { id: "42", status: "failed", namespace: "acme/widgets", notify: ["alice@example.com", "bob@example.com"], outputTail: ["boom"], ...over };
}

const FAST = { retries: 2, retryDelayMs: 20, timeoutMs: 2000 };

describe("mail", { skip }, () => {
  let dir = "";
  const servers: TestServer[] = [];
  const mailers: Mailer[] = [];
  let caFile = "";
  let otherCaFile = "";
  let tlsKey: Buffer;
  let tlsCert: Buffer;
  let elsewhereKey: Buffer;
  let elsewhereCert: Buffer;

  const serve = async (opts?: SMTPServerOptions) => {
    const s = await startServer(opts);
    servers.push(s);
    return s;
  };
  const mailer = (cfg: Partial<Parameters<typeof failureMessage>[1]> & Record<string, unknown>, log: Logger, opts = FAST) => {
    const m = new Mailer({ admin: ADMIN, addr: "", ...cfg } as ConstructorParameters<typeof Mailer>[0], log, opts);
    mailers.push(m);
    return m;
  };

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "djinn-mail-"));
    const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    const makeCa = (name: string) =>
      ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", `/CN=${name}`,
        "-keyout", `${name}.key`, "-out", `${name}.crt`, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
    makeCa("test-ca");
    makeCa("other-ca");
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr");
    writeFileSync(path.join(dir, "server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
    ssl("x509", "-req", "-in", "server.csr", "-CA", "test-ca.crt", "-CAkey", "test-ca.key", "-CAcreateserial", "-days", "1", "-extfile", "server.ext", "-out", "server.crt");
    // Signed by the right CA but issued for another host: must fail the name check.
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=mail.elsewhere.test", "-keyout", "elsewhere.key", "-out", "elsewhere.csr");
    writeFileSync(path.join(dir, "elsewhere.ext"), "subjectAltName=DNS:mail.elsewhere.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
    ssl("x509", "-req", "-in", "elsewhere.csr", "-CA", "test-ca.crt", "-CAkey", "test-ca.key", "-CAcreateserial", "-days", "1", "-extfile", "elsewhere.ext", "-out", "elsewhere.crt");
    caFile = path.join(dir, "test-ca.crt");
    otherCaFile = path.join(dir, "other-ca.crt");
    tlsKey = readFileSync(path.join(dir, "server.key"));
    tlsCert = readFileSync(path.join(dir, "server.crt"));
    elsewhereKey = readFileSync(path.join(dir, "elsewhere.key"));
    elsewhereCert = readFileSync(path.join(dir, "elsewhere.crt"));
  });

  after(async () => {
    for (const m of mailers) m.close();
    await Promise.all(servers.map((s) => s.close()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("formats the failure mail: subject, recipients, build details and the last 15 lines", () => {
    const output = Array.from({ length: 40 }, (_, i) => `out-${String(i + 1).padStart(2, "0")}`);
    const msg = failureMessage(ADMIN, build({ outputTail: output, url: "https://ci.example/b/42", notify: ["a@x.org", " a@x.org ", "", "b@x.org"] }));
    assert.equal(msg.from, ADMIN);
    assert.equal(msg.subject, "Djinn CI - Build #42 failed");
    assert.deepEqual(msg.to, ["a@x.org", "b@x.org"], "recipients trimmed, deduplicated, blanks dropped");
    assert.match(msg.text, /^Build: +#42$/m);
    assert.match(msg.text, /^Status: +failed$/m);
    assert.match(msg.text, /^Namespace: +acme\/widgets$/m);
    assert.match(msg.text, /^URL: +https:\/\/ci\.example\/b\/42$/m);
    assert.ok(msg.text.includes(output.slice(-15).join("\n")), "the last 15 lines, in order");
    assert.ok(!msg.text.includes("out-25"), "nothing before the last 15 lines");

    const short = failureMessage(ADMIN, build({ namespace: undefined, outputTail: ["one\ntwo\n", "three"], status: "timed_out" }));
    assert.equal(short.subject, "Djinn CI - Build #42 timed_out");
    assert.match(short.text, /^Namespace: +\(none\)$/m);
    assert.ok(short.text.includes("-----\none\ntwo\nthree\n-----"), "embedded newlines count as lines");
    assert.ok(!/^URL:/m.test(short.text));
  });

  it("sends one mail from smtp.admin to every notify address with the build's details (plain, no AUTH)", async () => {
    // The server offers STARTTLS with its own untrusted certificate: with no smtp.ca the mailer must stay plain and still deliver.
    const server = await serve();
    const { log, text } = capturedLogger();
    const m = mailer({ addr: `127.0.0.1:${server.port}` }, log);
    const output = Array.from({ length: 40 }, (_, i) => `out-${String(i + 1).padStart(2, "0")}`);
    output[30] = "."; // a lone dot must survive SMTP's end-of-data convention
    assert.equal(await m.sendBuildFailure(build({ outputTail: output })), true);

    assert.equal(server.received.length, 1, "one mail for all recipients");
    const got = server.received[0]!;
    assert.equal(got.from, ADMIN);
    assert.deepEqual(got.to, ["alice@example.com", "bob@example.com"]);
    assert.equal(got.secure, false);
    assert.equal(got.user, undefined);
    assert.equal(got.headers.from, ADMIN);
    assert.equal(got.headers.to, "alice@example.com, bob@example.com");
    assert.equal(got.headers.subject, "Djinn CI - Build #42 failed");
    assert.match(got.body, /^Build: +#42$/m);
    assert.match(got.body, /^Status: +failed$/m);
    assert.match(got.body, /^Namespace: +acme\/widgets$/m);
    assert.ok(got.body.includes(output.slice(-15).join("\n")), `last 15 lines in order, got:\n${got.body}`);
    assert.ok(!got.body.includes("out-25"), "line 25 of 40 must not be sent");
    assert.match(text(), /failure mail sent/);
    assert.equal(await m.verify(), `smtp: 127.0.0.1:${server.port} ok (plain, no AUTH)`);
  });

  it("sends nothing, and does not connect, when the build has no notify addresses", async () => {
    const server = await serve();
    const m = mailer({ addr: `127.0.0.1:${server.port}` }, capturedLogger().log);
    assert.equal(await m.sendBuildFailure(build({ notify: [] })), false);
    assert.equal(await m.sendBuildFailure(build({ notify: ["", "  "] })), false);
    // A malformed record from the caller is logged, never thrown into the build's completion.
    assert.equal(await m.sendBuildFailure(build({ notify: undefined as unknown as string[] })), false);
    assert.equal(server.connections, 0);
    assert.equal(server.received.length, 0);
  });

  it("uses STARTTLS verified against smtp.ca when it is set", async () => {
    const server = await serve({ key: tlsKey, cert: tlsCert });
    const m = mailer({ addr: `127.0.0.1:${server.port}`, ca: caFile }, capturedLogger().log);
    assert.equal(await m.sendBuildFailure(build()), true);
    assert.equal(server.received.length, 1);
    assert.equal(server.received[0]!.secure, true, "the mail went over TLS");
    assert.equal(await m.verify(), `smtp: 127.0.0.1:${server.port} ok (STARTTLS, no AUTH)`);

    const byName = mailer({ addr: `localhost:${server.port}`, ca: caFile }, capturedLogger().log);
    assert.equal(await byName.verify(), `smtp: localhost:${server.port} ok (STARTTLS, no AUTH)`);
  });

  it("refuses to send when the server's certificate is not signed by smtp.ca", async () => {
    const server = await serve({ key: tlsKey, cert: tlsCert });
    const { log, lines } = capturedLogger();
    const m = mailer({ addr: `127.0.0.1:${server.port}`, ca: otherCaFile }, log);
    assert.equal(await m.sendBuildFailure(build()), false);
    assert.equal(server.received.length, 0);
    const errors = lines().filter((l) => l.level === 50);
    assert.equal(errors.length, 1, "an untrusted certificate is not retried");
    assert.match(JSON.stringify(errors[0]), /certificate|verify/i);
    await assert.rejects(m.verify(), new RegExp(`^MailError: smtp: 127\\.0\\.0\\.1:${server.port} \\(STARTTLS, no AUTH\\) failed: .*(certificate|verify)`, "i"));
  });

  it("refuses to send when the server's certificate, though signed by smtp.ca, names another host", async () => {
    const server = await serve({ key: elsewhereKey, cert: elsewhereCert });
    const { log, lines } = capturedLogger();
    const m = mailer({ addr: `127.0.0.1:${server.port}`, ca: caFile }, log);
    assert.equal(await m.sendBuildFailure(build()), false);
    assert.equal(server.received.length, 0);
    const errors = lines().filter((l) => l.level === 50);
    assert.equal(errors.length, 1);
    assert.match(JSON.stringify(errors[0]), /altnames|does not match/i);
  });

  it("refuses to send in the clear when smtp.ca is set but the server offers no STARTTLS", async () => {
    const server = await serve({ disabledCommands: ["STARTTLS"] });
    const m = mailer({ addr: `127.0.0.1:${server.port}`, ca: caFile }, capturedLogger().log, { ...FAST, retries: 0 });
    assert.equal(await m.sendBuildFailure(build()), false);
    assert.equal(server.received.length, 0);
  });

  it("authenticates with smtp.username and smtp.password over STARTTLS", async () => {
    const server = await serve({
      key: tlsKey,
      cert: tlsCert,
      onAuth(auth, _session, cb) {
        if (auth.username === "bob" && auth.password === PASSWORD) cb(null, { user: "bob" });
        else cb(new Error("Invalid username or password"));
      },
    });
    const { log, text } = capturedLogger();
    const m = mailer({ addr: `127.0.0.1:${server.port}`, ca: caFile, username: "bob", password: PASSWORD }, log);
    assert.equal(await m.sendBuildFailure(build()), true);
    assert.equal(server.received[0]!.user, "bob");
    assert.equal(server.received[0]!.secure, true);
    assert.equal(await m.verify(), `smtp: 127.0.0.1:${server.port} ok (STARTTLS, AUTH as bob)`);
    assertNoPassword(text());
  });

  it("returns false on a wrong password, logs why, and never logs the password", async () => {
    const server = await serve({
      allowInsecureAuth: true,
      onAuth(auth, _session, cb) {
        // A careless server that echoes the password in its refusal: the mailer must still keep it out of logs and errors.
        if (auth.username === "bob" && auth.password === "the-right-one") cb(null, { user: "bob" });
        else cb(new Error(`Invalid username or password (${auth.password})`));
      },
    });
    const { log, text, lines } = capturedLogger();
    const m = mailer({ addr: `127.0.0.1:${server.port}`, username: "bob", password: PASSWORD }, log);
    assert.equal(await m.sendBuildFailure(build()), false);
    assert.equal(server.received.length, 0);
    assert.equal(server.authCalls, 1, "refused credentials are not retried");
    const errors = lines().filter((l) => l.level === 50);
    assert.equal(errors.length, 1);
    assert.match(JSON.stringify(errors[0]), /535 Invalid username or password \(\*\*\*\)/);
    assert.equal(errors[0]!.build, "42");
    const verifyError = await m.verify().then(
      () => assert.fail("verify must reject"),
      (err: Error) => err.message,
    );
    assert.match(verifyError, /\(plain, AUTH as bob\) failed: .*535/);
    assertNoPassword(text() + verifyError);
  });

  it("fails AUTH loudly rather than sending unauthenticated when the server offers no AUTH", async () => {
    const server = await serve({ disabledCommands: ["AUTH"] });
    const { log, text } = capturedLogger();
    const m = mailer({ addr: `127.0.0.1:${server.port}`, username: "bob", password: PASSWORD }, log, { ...FAST, retries: 0 });
    assert.equal(await m.sendBuildFailure(build()), false);
    assert.equal(server.received.length, 0);
    assertNoPassword(text());
  });

  it("returns false after the bounded retries when nothing listens", { timeout: 10_000 }, async () => {
    const port = await freePort();
    const { log, lines, text } = capturedLogger();
    const m = mailer({ addr: `127.0.0.1:${port}`, username: "bob", password: PASSWORD }, log, { retries: 2, retryDelayMs: 20, timeoutMs: 2000 });
    assert.equal(await m.sendBuildFailure(build()), false);
    const errors = lines().filter((l) => l.level === 50);
    assert.deepEqual(errors.map((e) => e.attempt), [1, 2, 3], "three tries, then give up");
    assert.match(JSON.stringify(errors[2]), /ECONNREFUSED/);
    assert.equal(errors[2]!.msg, "failure mail not sent");
    assertNoPassword(text());
    await assert.rejects(m.verify(), /^MailError: smtp: 127\.0\.0\.1:\d+ \(.*\) failed: connection refused$/);
  });

  it("gives up within the timeout on a server that accepts but never greets", { timeout: 10_000 }, async () => {
    const sockets = new Set<net.Socket>();
    const blackHole = net.createServer((s) => sockets.add(s));
    await new Promise<void>((r) => blackHole.listen(0, "127.0.0.1", () => r()));
    try {
      const { log, lines } = capturedLogger();
      const m = mailer({ addr: `127.0.0.1:${(blackHole.address() as net.AddressInfo).port}` }, log, { retries: 1, retryDelayMs: 10, timeoutMs: 300 });
      assert.equal(await m.sendBuildFailure(build()), false);
      const errors = lines().filter((l) => l.level === 50);
      assert.equal(errors.length, 2, "a timeout is worth one more try");
      assert.match(JSON.stringify(errors[1]), /timeout|ETIMEDOUT/i);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => blackHole.close(() => r()));
    }
  });

  it("returns false without retrying when the server answers 5xx to RCPT", async () => {
    const server = await serve({
      onRcptTo(_address, _session, cb) {
        cb(Object.assign(new Error("Mailbox unavailable"), { responseCode: 550 }));
      },
    });
    const { log, lines } = capturedLogger();
    const m = mailer({ addr: `127.0.0.1:${server.port}` }, log);
    assert.equal(await m.sendBuildFailure(build()), false);
    assert.equal(server.received.length, 0);
    assert.equal(server.rcptCalls, 2, "one attempt: one RCPT per recipient");
    const errors = lines().filter((l) => l.level === 50);
    assert.equal(errors.length, 1);
    assert.match(JSON.stringify(errors[0]), /550/);
  });

  it("retries a temporary 4xx refusal and delivers once the server accepts", async () => {
    let refusals = 0;
    const server = await serve({
      onRcptTo(_address, _session, cb) {
        if (refusals++ < 1) cb(Object.assign(new Error("Try again later"), { responseCode: 451 }));
        else cb();
      },
    });
    const { log, lines } = capturedLogger();
    const m = mailer({ addr: `127.0.0.1:${server.port}` }, log);
    assert.equal(await m.sendBuildFailure(build({ notify: ["only@example.com"] })), true);
    assert.equal(server.received.length, 1);
    assert.equal(server.rcptCalls, 2);
    const entries = lines();
    assert.equal(entries.filter((l) => l.level === 50).length, 1);
    assert.equal(entries.at(-1)!.msg, "failure mail sent");
  });

  it("rejects a malformed smtp.addr or unreadable smtp.ca with a clear error", () => {
    const log = capturedLogger().log;
    assert.throws(() => new Mailer({ addr: "mail.example", admin: ADMIN }, log), /smtp\.addr "mail\.example" is not host:port/);
    assert.throws(() => new Mailer({ addr: "127.0.0.1:0", admin: ADMIN }, log), /smtp\.addr "127\.0\.0\.1:0" is not host:port/);
    const missing = path.join(dir, "no-such-ca.pem");
    assert.throws(() => new Mailer({ addr: "127.0.0.1:25", admin: ADMIN, ca: missing }, log), new RegExp(`smtp\\.ca: cannot read ${missing.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: no such file`));
  });
});
