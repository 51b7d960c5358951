// A TCP relay in front of a test server, to make it unreachable and back without touching the
// server itself: "closed" refuses connections, "open" relays, "blackhole" accepts and answers
// nothing (and freezes the connections already relayed), as a network that drops packets does.
import net from "node:net";
import { freePort } from "./services.js";

export type RelayMode = "closed" | "open" | "blackhole";

export class Relay {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private mode: RelayMode = "closed";

  private constructor(
    readonly port: number,
    private readonly target: number,
  ) {}

  static async create(targetPort: number, mode: RelayMode = "open"): Promise<Relay> {
    const r = new Relay(await freePort(), targetPort);
    await r.set(mode);
    return r;
  }

  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  async set(mode: RelayMode): Promise<void> {
    this.mode = mode;
    if (mode === "closed") {
      for (const s of this.sockets) s.destroy();
      await this.close();
      return;
    }
    if (mode === "blackhole") {
      // Connections already relayed stop carrying anything, in either direction.
      for (const s of this.sockets) {
        s.pause();
        s.unpipe();
      }
    }
    if (!this.server) {
      const server = net.createServer((client) => this.accept(client));
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(this.port, "127.0.0.1", () => resolve());
      });
      this.server = server;
    }
  }

  private accept(client: net.Socket): void {
    this.sockets.add(client);
    client.on("close", () => this.sockets.delete(client));
    client.on("error", () => undefined);
    if (this.mode === "blackhole") {
      client.pause();
      return;
    }
    const upstream = net.connect(this.target, "127.0.0.1");
    this.sockets.add(upstream);
    upstream.on("close", () => {
      this.sockets.delete(upstream);
      client.destroy();
    });
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  }

  private async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await this.close();
  }
}
