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

/** "host:port" with both parts (a server a client must be told exactly, e.g. smtp.addr); undefined otherwise. */
export function hostAndPort(addr: string): { host: string; port: number } | undefined {
  const a = splitHostPort(addr.trim());
  return a?.host && a.port !== undefined && isPort(a.port) ? { host: a.host, port: a.port } : undefined;
}

/** Where a listener binds: "host:port", "[v6]:port" or ":port" (every interface); port 0 picks a free one. Undefined otherwise. */
export function listenAddress(addr: string): { host: string | undefined; port: number } | undefined {
  const a = splitHostPort(addr.trim());
  return a?.port !== undefined && isPort(a.port, true) ? { host: a.host === "" ? undefined : a.host, port: a.port } : undefined;
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

/** Where a Docker client connects: a unix socket, or a host and port over plain HTTP or TLS. */
export type EngineAddress = { socketPath: string } | { host: string; port: number; protocol: "http" | "https" };

/**
 * A Docker Engine address as driver.toml's `[docker] host` writes it: unix:///path, tcp://host:port
 * or http(s)://host:port (tcp and http plain on 2375, https TLS on 2376 unless a port is given).
 * Undefined for anything else.
 */
export function engineAddress(url: string): EngineAddress | undefined {
  if (!/^(unix|tcp|http|https):\/\//.test(url)) return undefined;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.protocol === "unix:") return u.pathname ? { socketPath: u.pathname } : undefined;
  if (!u.hostname) return undefined;
  const protocol = u.protocol === "https:" ? "https" : "http";
  return { host: u.hostname, port: Number(u.port) || (protocol === "https" ? 2376 : 2375), protocol };
}
