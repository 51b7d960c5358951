// Addresses as configuration files and manifests write them: "host:port", "host", "[v6]:port",
// "[v6]" and ":port". Each caller says which parts it requires and how it words a bad one.

export interface HostPort {
  /** Without brackets; "" when the address leaves it out (":port"). */
  host: string;
  port?: number;
}

/** Splits an address into its host and port; undefined when it is not of that shape. An IPv6 host is written in brackets. */
export function splitHostPort(addr: string): HostPort | undefined {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(addr) ?? /^([^:[\]]*)(?::(\d+))?$/.exec(addr);
  if (!m) return undefined;
  return { host: m[1], port: m[2] === undefined ? undefined : Number(m[2]) };
}

/** A TCP port number: 1-65535, or 0-65535 when `zero` (a listener's "pick a free one"). */
export function isPort(port: number, zero = false): boolean {
  return Number.isInteger(port) && port >= (zero ? 0 : 1) && port <= 65535;
}

/**
 * Where a client connects for a server's address (`[database] addr`, `[redis] addr`): the host,
 * 127.0.0.1 when left out, and the port, `defaultPort` when left out. Anything else is taken
 * whole as a host name, for the connection to refuse with one clear line.
 */
export function serverAddress(addr: string, defaultPort: number): { host: string; port: number } {
  const a = splitHostPort(addr);
  if (!a) return { host: addr, port: defaultPort };
  return { host: a.host || "127.0.0.1", port: a.port ?? defaultPort };
}
