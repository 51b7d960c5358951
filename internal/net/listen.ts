// For `check`: whether a server of this worker (metrics, the web process) can listen where it is
// configured to. A port that is free, or taken by a djinn-worker server already running there,
// is fine; anything else is the line the server would stop with.
import net from "node:net";
import { EnvironmentError, systemReason } from "../errors/errors.js";
import { deadline } from "../timers/timers.js";
import { listenAddress } from "./address.js";

/** The Server header of every answer of a djinn-worker server: `check` tells it from another program on a taken port. */
export const SERVER_NAME = "djinn-worker";

/** How long `check` waits for the program on a taken port to answer. */
const PROBE_TIMEOUT_MS = 2000;

/**
 * "<what>: <addr> is free to listen on", "<what>: <addr> is served by a running djinn-worker"
 * (its answer to GET `path` names it), or the EnvironmentError the server would stop with.
 */
export async function checkListenAddr(addr: string, what: string, path: string): Promise<string> {
  const a = listenAddress(addr);
  if (!a) throw new EnvironmentError(`${what}: ${JSON.stringify(addr)} is not host:port with a port of 0-65535`);
  const { host, port } = a;
  const refused = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    const probe = net.createServer();
    probe.once("error", resolve);
    probe.listen(port, host, () => probe.close(() => resolve(undefined)));
  });
  if (!refused) return `${what}: ${addr} is free to listen on`;
  if (refused.code === "EADDRINUSE" && (await servedByWorker(host, port, path))) return `${what}: ${addr} is served by a running djinn-worker`;
  throw new EnvironmentError(`${what}: cannot listen on ${addr}: ${systemReason(refused.code) ?? refused.message}`);
}

async function servedByWorker(host: string | undefined, port: number, path: string): Promise<boolean> {
  const to = !host || host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "[::1]" : host.includes(":") ? `[${host}]` : host;
  const bound = deadline(PROBE_TIMEOUT_MS);
  try {
    const res = await fetch(`http://${to}:${port}${path}`, { signal: bound.signal });
    await res.body?.cancel();
    return res.headers.get("server") === SERVER_NAME;
  } catch {
    return false;
  } finally {
    bound.clear();
  }
}
