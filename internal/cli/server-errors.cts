// Which server's client raised an error: the PostgreSQL and Redis clients' small error modules,
// loaded when a failure is classified. A command that talks to neither server (`run`) would
// otherwise pay their load at every start.
import type { DatabaseError } from "pg-protocol/dist/messages.js";
import type RedisErrors = require("redis-errors");

export type Server = "PostgreSQL" | "Redis";

/** "PostgreSQL" or "Redis" for an error its server sent or its client raised; undefined otherwise. */
export function serverOf(err: Error): Server | undefined {
  const { DatabaseError: PostgresError } = require("pg-protocol/dist/messages.js") as { DatabaseError: typeof DatabaseError };
  if (err instanceof PostgresError) return "PostgreSQL";
  const { RedisError } = require("redis-errors") as typeof RedisErrors;
  if (err instanceof RedisError) return "Redis";
  return undefined;
}
