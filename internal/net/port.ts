// A free TCP port on 127.0.0.1: bound, read and released. Whoever uses it must expect to lose a
// race for it and retry.
//
// Ports are taken below the kernel's ephemeral range: an ephemeral port can be handed to any
// outgoing connection at any moment, and a connection to 127.0.0.1:P can even connect to itself
// when the kernel picks P as its source port, so a "closed" ephemeral port may answer.
import { readFileSync } from "node:fs";
import net from "node:net";

function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (low > 0 && high >= low) return [low, high];
  } catch {
    // Not Linux: assume the IANA range.
  }
  return [49152, 65535];
}

function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(undefined));
    server.listen(port, "127.0.0.1", () => {
      const bound = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(bound));
    });
  });
}

export async function freeLocalPort(): Promise<number> {
  const [low] = ephemeralRange();
  const floor = 10_000;
  if (low - floor >= 1000) {
    for (let i = 0; i < 50; i++) {
      const port = await tryListen(floor + Math.floor(Math.random() * (low - floor)));
      if (port !== undefined) return port;
    }
  }
  const port = await tryListen(0);
  if (port === undefined) throw new Error("no free TCP port on 127.0.0.1");
  return port;
}
