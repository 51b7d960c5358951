// A free TCP port on 127.0.0.1: bound, read and released. Whoever uses it must expect to lose a
// race for it and retry.
import net from "node:net";

export function freeLocalPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}
