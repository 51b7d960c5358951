// Go's time.ParseDuration, so worker.toml timeouts mean what they mean in Djinn.
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
  const part = /^([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)/;
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
