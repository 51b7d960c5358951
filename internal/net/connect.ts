// Why a connection to a server (PostgreSQL, Redis) failed, as an operator would say it, and
// whether waiting may cure it.
import { systemReason } from "../errors/errors.js";

const UNAVAILABLE_CODES = new Set(["ECONNREFUSED", "ETIMEDOUT", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN", "ENOTFOUND", "EPIPE"]);

/**
 * A connection that failed because the server is not answering (yet): refused, timed out,
 * starting up, out of connections. Not a wrong password, database or address family: those stay
 * wrong however long one waits.
 */
export function serverUnavailable(err: unknown): boolean {
  const e = err as { code?: string; message?: string; errors?: { code?: string }[] };
  const code = e?.code ?? e?.errors?.[0]?.code;
  if (code && UNAVAILABLE_CODES.has(code)) return true;
  // PostgreSQL: cannot_connect_now (starting up, shutting down), too_many_connections, connection exceptions.
  if (code && (code === "57P03" || code === "53300" || code.startsWith("08"))) return true;
  // Redis loading its dataset; pg's own connect timeout and a server that hung up during the handshake.
  return /^LOADING |timeout expired|Connection terminated|connect ETIMEDOUT|Connection is closed/.test(e?.message ?? "");
}

/** A short reason for a failed connection, as an operator would say it. */
export function connectReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { code?: string };
  const nested = (e as { errors?: NodeJS.ErrnoException[] }).errors?.[0];
  const reason = systemReason(e.code ?? nested?.code);
  if (reason) return reason;
  const msg = (e.message || nested?.message || String(err)).split("\n")[0];
  return msg.replace(/^connect /, "");
}
