// /badge/<namespace>.svg: the status of a namespace's newest build, as an image for a README.
import type { Status } from "../runner/status.js";
import { escapeHtml } from "./html.js";

const COLOUR: Record<Status | "unknown", string> = {
  passed: "#2a7d2a",
  passed_with_failures: "#8a7d00",
  failed: "#c0392b",
  killed: "#6c3483",
  timed_out: "#a04000",
  running: "#2471a3",
  queued: "#7f8c8d",
  skipped: "#7f8c8d",
  unknown: "#7f8c8d",
};

/** A flat two-part badge: "build" and the status word. */
export function badgeSvg(status: Status | "unknown"): string {
  const word = status === "unknown" ? "no builds" : status.replace(/_/g, " ");
  // About 7 px a character at 11 px Verdana: close enough for these words.
  const left = 40;
  const right = word.length * 7 + 10;
  const w = left + right;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="20" role="img" aria-label="build: ${escapeHtml(word)}">
<title>build: ${escapeHtml(word)}</title>
<rect width="${left}" height="20" fill="#555"/><rect x="${left}" width="${right}" height="20" fill="${COLOUR[status]}"/>
<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">
<text x="${left / 2}" y="14">build</text><text x="${left + right / 2}" y="14">${escapeHtml(word)}</text></g></svg>
`;
}
