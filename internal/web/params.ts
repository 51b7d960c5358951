// The web's input: ids in paths and the list's query parameters. A bad one is a WebError with one
// line saying which and why, answered as 400 (JSON under /api/, a page elsewhere).
import { BUILD_STATUSES, type Status } from "../runner/status.js";
import type { ListFilter } from "./queries.js";

export class WebError extends Error {
  override name = "WebError";
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** `text` as a row id of `what` ("build", "job", "artifact"): a positive integer. */
export function parseId(text: string, what: string): number {
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) <= 0) throw new WebError(400, `${JSON.stringify(text)} is not a ${what} id (a positive integer)`);
  return Number(text);
}

/** One query parameter: undefined when absent or empty (a form's unset field), refused when given twice. */
function single(query: Record<string, unknown>, name: string): string | undefined {
  const v = query[name];
  if (v === undefined || v === "") return undefined;
  if (typeof v !== "string") throw new WebError(400, `query parameter ${name} given more than once`);
  return v;
}

/** The longest namespace a filter may name: longer is no namespace anyone submitted. */
const NAMESPACE_CHARS = 1000;

/** status, namespace and before from the query of / or /api/builds. */
export function parseFilter(query: unknown): ListFilter {
  const q = (query ?? {}) as Record<string, unknown>;
  const f: ListFilter = {};
  const status = single(q, "status");
  if (status !== undefined) {
    if (!(BUILD_STATUSES as readonly string[]).includes(status)) throw new WebError(400, `status ${JSON.stringify(status)} is not a build status (one of ${BUILD_STATUSES.join(", ")})`);
    f.status = status as Status;
  }
  const namespace = single(q, "namespace");
  if (namespace !== undefined) {
    if (namespace.length > NAMESPACE_CHARS) throw new WebError(400, `namespace is longer than ${NAMESPACE_CHARS} characters`);
    f.namespace = namespace;
  }
  const before = single(q, "before");
  if (before !== undefined) f.before = parseId(before, "build");
  return f;
}

/** Where an event stream starts: Last-Event-ID (a reconnect) over ?after= (the page's last row); 0 for the start. */
export function parseCursor(lastEventId: string | string[] | undefined, after: unknown): number {
  const text = typeof lastEventId === "string" && lastEventId !== "" ? lastEventId : typeof after === "string" && after !== "" ? after : "0";
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new WebError(400, `${JSON.stringify(text)} is not an output row id (a whole number)`);
  return Number(text);
}
