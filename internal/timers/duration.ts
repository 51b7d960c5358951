// Go's time.ParseDuration, so worker.toml timeouts mean what they mean in Djinn.
import { MAX_TIMER_MS } from "./timers.js";

const unitMs: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Parses a Go duration ("1h30m", "1.5h", "300ms", "-2s") into milliseconds; throws with the reason. */
export function parseDuration(text: string): number {
  if (text === "0") return 0;
  let s = text;
  let sign = 1;
  if (s.startsWith("-") || s.startsWith("+")) {
    if (s[0] === "-") sign = -1;
    s = s.slice(1);
  }
  if (s === "") throw new Error(`invalid duration "${text}"`);
  let total = 0;
  // µs and μs escaped: one non-ASCII character in a regular expression makes the release bundle's
  // whole script a two-byte string in memory (internal/release/bundle.ts).
  const part = /^([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)/;
  while (s !== "") {
    const m = part.exec(s);
    if (!m || m[1] === "" || m[1] === ".") {
      if (/^[0-9.]+$/.test(s)) throw new Error(`missing unit in duration "${text}" (units: ns, us, ms, s, m, h)`);
      throw new Error(`invalid duration "${text}" (expected e.g. "30m", "1h30m", "1.5h"; units: ns, us, ms, s, m, h)`);
    }
    total += parseFloat(m[1]) * unitMs[m[2]];
    s = s.slice(m[0].length);
  }
  return sign * total;
}

/**
 * Parses a duration that a timer will wait for: negative ones and ones longer than a timer holds
 * (MAX_TIMER_MS, about 596 h) are refused with the reason, rather than firing at once.
 */
export function parseTimerDuration(text: string, min = 0): number {
  const ms = parseDuration(text);
  const problem = timerDurationProblem(ms, min, JSON.stringify(text));
  if (problem) throw new Error(problem);
  return ms;
}

/** Why `ms` (written `shown`) cannot be a timer's duration of at least `min`, or undefined. */
export function timerDurationProblem(ms: number, min: number, shown: string): string | undefined {
  if (ms < 0 && min <= 0) return `must not be negative, got ${shown}`;
  if (ms < min) return `must be at least ${formatDuration(min)}, got ${shown}`;
  if (ms > MAX_TIMER_MS) return `must be at most ${formatDuration(MAX_TIMER_MS)} (the longest a timer can wait), got ${shown}`;
  return undefined;
}

/** Formats milliseconds the way Go prints a duration ("1h30m0s"), for summaries. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  const neg = ms < 0;
  let rest = Math.abs(ms);
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = rest / 1000;
  let out = "";
  if (h) out += `${h}h`;
  if (h || m) out += `${m}m`;
  out += `${Number(s.toFixed(3))}s`;
  return (neg ? "-" : "") + out;
}
