// A real SSH server in this process, on 127.0.0.1, that refuses channels as a busy server does:
// it turns down channel opens ("(SSH) Channel open failure") and exec requests ("Unable to exec")
// when its policy says so, and never has more session channels open on a connection than its
// limit. What it runs, it runs for real: `sh -c` in a home directory of its own, SFTP by the
// system's sftp-server.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import ssh2, { type ServerChannel } from "ssh2";

const { Server, utils } = ssh2;

export const SFTP_SERVER = ["/usr/lib/openssh/sftp-server", "/usr/lib/sftp-server"].find((p) => existsSync(p));

/** What the server refuses; `n` counts from 1 over the server's life. */
export interface RefusalPolicy {
  /** Refuse the n-th session channel open. */
  refuseOpen?: (n: number) => boolean;
  /** Refuse the n-th exec request (the command never runs). */
  refuseExec?: (n: number, command: string) => boolean;
  /** Session channels open at once on one connection; one more is refused. */
  maxOpen?: number;
  /** Offer SFTP (the system's sftp-server); without it the subsystem is refused, as dropbear alone does. */
  sftp?: boolean;
  /**
   * Drop the n-th connection (counting from 1) when its SFTP subsystem starts, as a server whose
   * session process dies does: the sftp channel reports signal HUP, then the connection ends.
   */
  dropAtSftp?: (connection: number) => boolean;
  /** The n-th connection's SFTP subsystem starts and dies at once (signal HUP); the connection stays. */
  sftpDiesAt?: (connection: number) => boolean;
}

export interface Counts {
  connections: number;
  opens: number;
  refusedOpens: number;
  execs: number;
  refusedExecs: number;
  /** Most session channels ever open at once on one connection. */
  mostOpen: number;
  /** Commands that ran. */
  ran: string[];
  /** Channels closed while their command still ran (the client hung up on it). */
  closedWhileRunning: number;
  /** The cipher each connection agreed on (client to server). */
  ciphers: string[];
}

export interface RefusingServer {
  port: number;
  home: string;
  policy: RefusalPolicy;
  counts: Counts;
  /** Hangs up on every connection open now, as a machine might; new ones are still welcome. */
  dropConnections(): void;
  /** Called after every refusal (open or exec), with the counts so far. */
  onRefusal?: (counts: Counts) => void;
  close(): Promise<void>;
}

/**
 * An ed25519 host key ssh2 can read back: about 1 in 256 of the keys its generator makes it then
 * rejects as malformed (mscdex/ssh2#1513, a leading zero byte stripped from the public key).
 */
function parsableHostKey(): string {
  for (;;) {
    const pair = utils.generateKeyPairSync("ed25519");
    if (!(utils.parseKey(pair.private) instanceof Error) && !(utils.parseKey(pair.public) instanceof Error)) return pair.private;
  }
}

export async function startRefusingServer(policy: RefusalPolicy): Promise<RefusingServer> {
  const home = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "djinn-sshd-home-")));
  await fs.mkdir(path.join(home, "tmp"));
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, TMPDIR: path.join(home, "tmp"), LC_ALL: "C" };
  const counts: Counts = { connections: 0, opens: 0, refusedOpens: 0, execs: 0, refusedExecs: 0, mostOpen: 0, ran: [], closedWhileRunning: 0, ciphers: [] };
  const hostKey = parsableHostKey();
  const children = new Set<ReturnType<typeof spawn>>();
  const connections = new Set<{ end(): void }>();
  const server: RefusingServer = { port: 0, home, policy, counts, close: async () => undefined, dropConnections: () => undefined };
  const refused = () => server.onRefusal?.(counts);

  /** Runs `argv` with the channel as its stdio, and reports how it ended. */
  const run = (stream: ServerChannel, argv: string[]) => {
    const child = spawn(argv[0], argv.slice(1), { cwd: home, env, stdio: "pipe" });
    children.add(child);
    stream.once("close", () => {
      if (child.exitCode === null && child.signalCode === null) counts.closedWhileRunning++;
    });
    stream.pipe(child.stdin).on("error", () => undefined);
    child.stdout.pipe(stream, { end: false });
    child.stderr.pipe(stream.stderr, { end: false });
    child.on("close", (code, signal) => {
      children.delete(child);
      if (signal) stream.exit(signal.replace(/^SIG/, ""), false, "");
      else stream.exit(code ?? 0);
      stream.end();
      stream.close();
    });
  };

  const ssh = new Server({ hostKeys: [hostKey] }, (client) => {
    let open = 0;
    const connection = ++counts.connections;
    connections.add(client);
    client.on("close", () => connections.delete(client));
    client.on("authentication", (ctx) => ctx.accept());
    client.on("handshake", (agreed) => counts.ciphers.push(agreed.cs.cipher));
    client.on("error", () => undefined);
    client.on("session", (accept, reject) => {
      const n = ++counts.opens;
      if (policy.refuseOpen?.(n) || open >= (policy.maxOpen ?? Infinity)) {
        counts.refusedOpens++;
        reject();
        return refused();
      }
      const session = accept();
      open++;
      counts.mostOpen = Math.max(counts.mostOpen, open);
      // Sent when the client closes the channel, before anything it sends next is read.
      session.once("close", () => open--);
      session.on("exec", (acceptExec, rejectExec, info) => {
        const m = ++counts.execs;
        if (policy.refuseExec?.(m, info.command)) {
          counts.refusedExecs++;
          rejectExec();
          return refused();
        }
        counts.ran.push(info.command);
        run(acceptExec(), ["sh", "-c", info.command]);
      });
      session.on("subsystem", (acceptSub, rejectSub, info) => {
        if (info.name !== "sftp" || !policy.sftp || !SFTP_SERVER) return rejectSub();
        if (policy.sftpDiesAt?.(connection)) {
          const stream = acceptSub();
          stream.exit("HUP", false, "");
          stream.end();
          return stream.close();
        }
        if (policy.dropAtSftp?.(connection)) {
          const stream = acceptSub();
          stream.exit("HUP", false, "");
          stream.close();
          return client.end();
        }
        run(acceptSub(), [SFTP_SERVER]);
      });
    });
  });
  await new Promise<void>((resolve) => ssh.listen(0, "127.0.0.1", resolve));
  server.port = (ssh.address() as AddressInfo).port;
  server.dropConnections = () => {
    for (const client of connections) client.end();
  };
  server.close = async () => {
    for (const child of children) child.kill("SIGKILL");
    for (const client of connections) client.end();
    await new Promise<void>((resolve) => ssh.close(() => resolve()));
    await fs.rm(home, { recursive: true, force: true });
  };
  return server;
}
