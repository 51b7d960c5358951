// HTML as the web process writes it: every interpolated value is escaped unless it is already
// Html (built here, or ansi_up's output, which escapes what it is given). A build controls names,
// output, manifests and artifact names: none of it reaches a page unescaped.
import type { Status } from "../runner/status.js";

/** Markup that is safe to place as it is. */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ENTITIES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Text made safe for an element's content or a quoted attribute value. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c]);
}

type Value = Html | string | number | boolean | null | undefined | readonly Value[];

function render(v: Value): string {
  if (v === null || v === undefined || v === false) return "";
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return v.map(render).join("");
  return escapeHtml(String(v));
}

/** A template whose interpolations are escaped (arrays joined, null and false left out). */
export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1];
  return new Html(out);
}

/** A status as a word with its colour (the class), e.g. "passed with failures". */
export function statusLabel(status: Status, key?: string): Html {
  return html`<span class="status status-${status}" data-status="${status}"${key ? html` data-status-for="${key}"` : ""}>${status.replace(/_/g, " ")}</span>`;
}

/** "1h 2m", "3m 4s", "5s", "0.4s". */
export function formatDuration(ms: number): string {
  if (ms < 0) ms = 0;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1).replace(/\.0$/, "")}s`;
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return `${h}h ${m}m`;
  return m > 0 ? `${m}m ${s % 60}s` : `${s}s`;
}

/** How long something ran: to its end, or to now while it runs; "" before it started. */
export function runTime(started: Date | null, finished: Date | null, now = new Date()): string {
  if (!started) return "";
  return formatDuration((finished ?? now).getTime() - started.getTime());
}

/** A UTC time, machine-readable in `datetime`. */
export function timeTag(t: Date | null): Html {
  if (!t) return html``;
  const iso = t.toISOString();
  return html`<time datetime="${iso}">${iso.replace("T", " ").replace(/\.\d+Z$/, " UTC")}</time>`;
}

/** Who a page is for: a signed-in user with the form token of their session. */
export interface PageViewer {
  name: string;
  csrf: string;
}

/** A form that POSTs to `action`, carrying the viewer's CSRF token. */
export function postForm(action: string, viewer: PageViewer, button: string, cls: string): Html {
  return html`<form class="${cls}" method="post" action="${action}"><input type="hidden" name="csrf" value="${viewer.csrf}"><button type="submit">${button}</button></form>`;
}

/** A whole page around `body`; the script and the style sheet are files, as the Content-Security-Policy wants. */
export function page(title: string, body: Html, viewer?: PageViewer): Html {
  const who = viewer ? html`<span class="who">${viewer.name}</span> ${postForm("/sign-out", viewer, "Sign out", "sign-out")}` : html`<a class="sign-in" href="/sign-in">Sign in</a>`;
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} &middot; djinn-worker</title><link rel="stylesheet" href="/static/web.css"><script src="/static/web.js" defer></script></head>
<body><header class="top"><a href="/">djinn-worker builds</a><nav class="account">${who}</nav></header>
${body}
</body></html>
`;
}

export { formatBytes } from "../fs/size.js";
